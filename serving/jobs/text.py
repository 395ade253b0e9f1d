"""The plain-text accounts of job results that the CLI prints (and the demo, which
prints as it goes). Each function returns the lines joined by newlines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from features.tables import RawTables
    from serving.services.retention import PurgeResult
    from serving.services.weekly_lists import WeeklyRunResult


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


def export_summary(tables: RawTables) -> str:
    """Pupils, schools, years and rows of an export."""
    from features.summary import format_summary, summarize

    return format_summary(summarize(tables))


def metrics_table(summary: pd.DataFrame) -> str:
    """Model vs baselines, one line each."""
    cols = [
        ("auc", "ROC-AUC"),
        ("pr_auc", "PR-AUC"),
        ("brier", "Brier"),
        ("precision_at_k", "P@k"),
        ("recall_at_k", "R@k"),
        ("precision_at_k_class", "P@k class"),
        ("recall_at_k_class", "R@k class"),
        ("lift_over_ladder", "lift vs ladder"),
    ]
    header = f"{'model':<18}" + "".join(f"{title:>15}" for _, title in cols)
    lines = [header, "-" * len(header)]
    for name, row in summary.iterrows():
        cells = []
        for key, _ in cols:
            value = row.get(key)
            cells.append(f"{'—' if value is None or value != value else f'{value:.3f}':>15}")
        lines.append(f"{name:<18}" + "".join(cells))
    return "\n".join(lines)


def train_result(result: Any, config: Any) -> str:
    """A training run: its windows, the metrics table, fairness and the registered version."""
    split = result.split
    lines = [
        f"\ntest window {split.test_as_ofs[0]} .. {split.test_as_ofs[-1]} "
        f"({len(split.test_as_ofs)} weekly as_of dates, {result.n_rows['test']:,} rows, "
        f"{result.n_rows['test_positive']} dropouts within {config.horizon_days} days); "
        f"trained on {split.train_as_ofs[0]} .. {split.train_as_ofs[-1]} "
        f"({result.n_rows['train']:,} rows), calibrated on {split.calibration_as_ofs[0]} .. "
        f"{split.calibration_as_ofs[-1]}",
        f"k = {config.capacity_share:.0%} of each school (and class) per week\n",
    ]
    summary = result.evaluation.summary()
    lines.append(metrics_table(summary))
    model_p = summary.loc["lightgbm", "precision_at_k"]
    ladder_p = summary.loc["escalation_ladder", "precision_at_k"]
    if not model_p > ladder_p:
        lines.append(
            f"\nwarning: on this test window LightGBM's precision@k ({model_p:.3f}) does not "
            f"beat the written escalation ladder's ({ladder_p:.3f}). With this little history "
            "the rule is as good a list; more school years (or pupils) usually change that."
        )
    if result.disparities:
        lines.append("\nfairness (LightGBM at capacity; ratios outside 0.8-1.25):")
        lines.extend(f"  - {line}" for line in result.disparities)
    else:
        lines.append("\nfairness: no disparity ratio outside 0.8-1.25")
    lines.append(
        f"\nregistered version {result.version} as '{result.alias}': {result.alias_reason}"
        f"\nMLflow run {result.run_id}; data fingerprint {result.fingerprint}; "
        f"{result.train_seconds:.1f} s"
    )
    return "\n".join(lines)


def evaluation(result: dict[str, Any]) -> str:
    """`evaluate`'s result: the metrics table, per as_of rows and fairness findings."""
    import pandas as pd

    rows = {"lightgbm": result, **result["baselines"]}
    if result.get("served_list"):
        rows["ladder_then_lightgbm"] = result["served_list"]
    summary = pd.DataFrame(
        {
            k: {m: v for m, v in r.items() if isinstance(v, int | float) or v is None}
            for k, r in rows.items()
        }
    ).T
    lines = [
        f"{result['model']} version {result['version']} on {result['from']} .. {result['to']}: "
        f"{result['n_rows']:,} rows, {result['n_positive']} dropouts within "
        f"{result['horizon_days']} days\n",
        metrics_table(summary.astype(float)),
        "\nper as_of (LightGBM):",
        f"{'as_of':<12}{'rows':>8}{'dropouts':>10}{'AUC':>8}{'P@k':>8}{'R@k':>8}",
    ]
    for row in result["per_as_of"]:
        lines.append(
            f"{row['as_of']:<12}{row.get('n_students', 0):>8}{row.get('n_positive', 0):>10}"
            f"{_fmt(row.get('auc')):>8}{_fmt(row.get('precision_at_k')):>8}"
            f"{_fmt(row.get('recall_at_k')):>8}"
        )
    lines.extend(f"  fairness: {line}" for line in result["disparities"])
    return "\n".join(lines)


def visit_evaluation(result: dict[str, Any]) -> str:
    """`evaluate --with-interventions`' extra table."""
    lines = [
        f"\nwith interventions ({result['n_interventions']} recorded; a flagged pupil visited "
        f"within {result['horizon_days']} days who came back to school counts as caught):",
        f"{'':<26}{'P@k':>8}{'R@k':>8}{'P@k pooled':>12}{'R@k pooled':>12}",
    ]
    for title, key in (("dropouts only", ""), ("with visit-led returns", "_with_visits")):
        lines.append(
            f"{title:<26}{_fmt(result[f'precision_at_k{key}']):>8}"
            f"{_fmt(result[f'recall_at_k{key}']):>8}"
            f"{_fmt(result[f'precision_at_k{key}_pooled']):>12}"
            f"{_fmt(result[f'recall_at_k{key}_pooled']):>12}"
        )
    lines.append(
        f"{result['n_visit_led_returns']} visit-led returns, {result['n_caught_by_visit']} of "
        f"them flagged without a dropout label"
    )
    return "\n".join(lines)


def retrain_result(result: Any, fairness_row: str) -> str:
    """Champion and challenger side by side, the verdict and its reasons."""
    lines = [
        f"\nterm {result.term}: school days {result.term_start} .. {result.term_end}; "
        f"test as_ofs {result.test_from} .. {result.test_to} ({result.n_rows['test']:,} rows, "
        f"{result.n_rows['test_positive']} dropouts); challenger trained on "
        f"{result.n_rows['train']:,} rows before the term\n"
    ]
    champion = f"champion v{result.champion_version}" if result.champion_version else "champion"
    challenger = f"challenger v{result.version}"
    width = max(len(fairness_row), 10) + 2
    header = f"{'':<{width}}{champion:>16}{challenger:>16}"
    lines += [header, "-" * len(header)]
    for name, row in result.table.iterrows():

        def fmt(v: Any, name: Any = name) -> str:
            if v != v:
                return "—"
            return f"{v:.0f}" if name == fairness_row else f"{v:.3f}"

        lines.append(f"{name:<{width}}{fmt(row['champion']):>16}{fmt(row['challenger']):>16}")
    verdict = "PROMOTED to champion" if result.promoted else "kept as challenger"
    lines.append(f"\nversion {result.version} {verdict}:")
    lines.extend(f"  - {reason}" for reason in result.reasons)
    lines.append(f"MLflow run {result.run_id}")
    return "\n".join(lines)


def weekly(result: WeeklyRunResult) -> str:
    """The weekly batch: pupils scored, model version, list files written."""
    folders = sorted({f.parent for f in result.files})
    return (
        f"scored {result.n_students:,} pupils as of {result.as_of} with model version "
        f"{result.model_version} ({result.n_explained:,} explained) in {result.seconds:.1f} s\n"
        f"wrote {len(result.files)} list files under {folders[0] if folders else '-'}"
    )


def purge(done: PurgeResult, years: int) -> str:
    """The retention purge's counts."""
    return (
        f"retention ({years} years, before {done.cutoff}): "
        f"{done.notes_blanked} notes and {done.comments_blanked} comments blanked, "
        f"{done.audit_removed} audit rows removed"
    )
