"""A `DriftReport` as Markdown and figures (pure), and written to a folder or an MLflow
run (the I/O edges: `write_drift_report`, `log_drift_to_mlflow`)."""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from training.drift import DriftReport
from training.track import Store, connect, log_figures, log_frame

logger = logging.getLogger(__name__)

TOP_FEATURES = 15
REPORT_FILE = "report.md"
FEATURES_FILE = "features.csv"


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f} %"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(report: DriftReport, *, top: int = TOP_FEATURES) -> str:
    """The report as Markdown: windows, feed warnings, score shift, tiers, top features."""
    counts = report.severity_counts()
    lines = [
        f"# Drift report {report.date_from} .. {report.date_to}",
        "",
        f"- Recent window: {report.recent_as_ofs} weekly as_ofs, {report.date_from} .. "
        f"{report.date_to}, {report.recent_rows} student-weeks",
        f"- Reference window: {report.reference_as_ofs} weekly as_ofs, "
        f"{report.reference_from} .. {report.reference_to}, {report.reference_rows} "
        "student-weeks",
        f"- Features: {counts['major']} major (PSI > 0.25), {counts['moderate']} moderate "
        f"(0.1-0.25), {counts['stable']} stable (< 0.1)",
        "",
        "## Feed checks",
        "",
    ]
    if report.feed_warnings:
        lines += [f"- **{w.school_id}** ({w.check}): {w.message}" for w in report.feed_warnings]
    else:
        lines.append("No broken feeds found.")
    lines += ["", "## Model scores", ""]
    if report.score is None:
        lines.append("No model given.")
    else:
        s = report.score
        lines.append(
            f"risk_score PSI {_num(s.psi)} ({s.severity}); mean {_num(s.reference_mean)} "
            f"in the reference, {_num(s.recent_mean)} recently."
        )
    if report.tiers is not None:
        lines += ["", "Share of student-weeks per tier (capacity rule, per school and week):", ""]
        lines += _table(
            ["tier", "reference", "recent", "change"],
            [
                [str(r.tier), _pct(r.reference_share), _pct(r.recent_share), _pct(r.change)]
                for r in report.tiers.itertuples(index=False)
            ],
        )
    shown = report.features.head(top)
    lines += ["", f"## Features, largest PSI first (top {len(shown)})", ""]
    lines += _table(
        [
            "feature",
            "group",
            "PSI",
            "severity",
            "mean ref.",
            "mean recent",
            "missing ref.",
            "missing recent",
        ],
        [
            [
                f"`{r.feature}`",
                str(r.group),
                _num(r.psi),
                str(r.severity),
                _num(r.reference_mean),
                _num(r.recent_mean),
                _pct(r.reference_missing),
                _pct(r.recent_missing),
            ]
            for r in shown.itertuples(index=False)
        ],
    )
    lines += ["", f"All {len(report.features)} features are in `{FEATURES_FILE}`.", ""]
    return "\n".join(lines)


def plot_top_psi(report: DriftReport, *, top: int = TOP_FEATURES) -> Figure:
    """Horizontal bars of the `top` largest PSIs, with the 0.1 and 0.25 thresholds."""
    shown = report.features.dropna(subset=["psi"]).head(top).iloc[::-1]
    fig = Figure(figsize=(7, 0.35 * max(len(shown), 4) + 1.2))
    ax = fig.add_subplot()
    colours = {"stable": "#4c9a2a", "moderate": "#e0a800", "major": "#c0392b"}
    ax.barh(
        shown["feature"], shown["psi"], color=[colours.get(s, "grey") for s in shown["severity"]]
    )
    for x in (0.1, 0.25):
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("PSI")
    ax.set_title(f"Feature drift {report.date_from} .. {report.date_to}")
    fig.tight_layout()
    return fig


def plot_score_distribution(report: DriftReport) -> Figure | None:
    """Share of rows per risk_score bin (reference deciles), reference vs recent."""
    if report.score is None:
        return None
    bins = report.score.bins
    fig = Figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    x = list(range(len(bins)))
    ax.bar([i - 0.2 for i in x], bins["reference_share"], width=0.4, label="reference")
    ax.bar([i + 0.2 for i in x], bins["recent_share"], width=0.4, label="recent")
    ax.set_xticks(x, bins["bin"], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of student-weeks")
    ax.set_title(f"risk_score, PSI {_num(report.score.psi)}")
    ax.legend()
    fig.tight_layout()
    return fig


def drift_figures(report: DriftReport) -> dict[str, Figure]:
    figures = {"top_psi": plot_top_psi(report)}
    scores = plot_score_distribution(report)
    if scores is not None:
        figures["score_distribution"] = scores
    return figures


def feed_frame(report: DriftReport) -> pd.DataFrame:
    return pd.DataFrame(
        [(w.school_id, w.check, w.message) for w in report.feed_warnings],
        columns=["school_id", "check", "message"],
    )


def write_drift_report(report: DriftReport, out_dir: Path) -> Path:
    """Write report.md, features.csv, feed_warnings.csv and the PNGs into `out_dir`.

    Everything goes to a temporary sibling folder first, which then replaces `out_dir`,
    so a failure leaves the previous report intact. Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / REPORT_FILE).write_text(render_markdown(report), encoding="utf-8")
        report.features.to_csv(tmp / FEATURES_FILE, index=False)
        feed_frame(report).to_csv(tmp / "feed_warnings.csv", index=False)
        if report.tiers is not None:
            report.tiers.to_csv(tmp / "tiers.csv", index=False)
        for name, figure in drift_figures(report).items():
            figure.savefig(tmp / f"{name}.png", dpi=100)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('.', 1)[-1]}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote drift report %s .. %s to %s", report.date_from, report.date_to, out_dir)
    return out_dir


def _metric_key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def log_drift_to_mlflow(report: DriftReport, store: Store) -> str:
    """Log the report into a new MLflow run tagged ``baoxue.kind=drift``; return its id."""
    connect(store)
    run_name = f"drift {report.date_from}..{report.date_to}"
    with mlflow.start_run(run_name=run_name, tags={"baoxue.kind": "drift"}) as run:
        mlflow.log_params(
            {
                "date_from": str(report.date_from),
                "date_to": str(report.date_to),
                "reference_from": str(report.reference_from),
                "reference_to": str(report.reference_to),
            }
        )
        metrics = {
            f"psi_{_metric_key(r.feature)}": float(r.psi)
            for r in report.features.itertuples(index=False)
            if not math.isnan(r.psi)
        }
        metrics["feed_warnings"] = float(len(report.feed_warnings))
        metrics.update({f"features_{k}": float(v) for k, v in report.severity_counts().items()})
        if report.score is not None and not math.isnan(report.score.psi):
            metrics["psi_risk_score"] = report.score.psi
        mlflow.log_metrics(metrics)
        mlflow.log_text(render_markdown(report), f"drift/{REPORT_FILE}")
        log_frame(report.features, f"drift/{FEATURES_FILE}")
        log_frame(feed_frame(report), "drift/feed_warnings.csv")
        if report.tiers is not None:
            log_frame(report.tiers, "drift/tiers.csv")
        log_figures(drift_figures(report))
        run_id: str = run.info.run_id
    logger.info("logged drift report to MLflow run %s", run_id)
    return run_id
