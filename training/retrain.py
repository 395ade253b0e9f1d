"""Retrain once a term: a challenger against the champion on the term that just ended.

`baoxue retrain DIR --term YYYY-T` names the newest complete school term:

* ``YYYY-1`` is the autumn term (秋季学期) that starts in September of YYYY
  (e.g. 2024-1: September 2024 .. January 2025);
* ``YYYY-2`` is the spring term (春季学期) of the school year YYYY, i.e. the term that starts
  after the Spring Festival of YYYY+1 and runs to July (e.g. 2024-2: February .. July 2025).

Terms are not exported; they come from the calendar (`features.school_calendar`): a break of
14 days or more without school ends a term. The term's window runs from its first to its
last school day over all schools.

The challenger trains on everything known before the term: `train_until` is the term's
first weekly as_of, so every training and calibration label window closes before the term
starts. Both the challenger and the current champion are then scored on the same rows (the
term's weekly as_ofs whose outcomes are observable in the export) with the same metrics and
the same fairness audit. The challenger is promoted (alias ``champion``) only if

1. its precision@k beats the champion's on that window, and
2. no fairness ratio that the champion kept inside 0.8-1.25 leaves that band for it
   (a ratio already outside for the champion does not block: the challenger inherits,
   rather than causes, that gap).

Otherwise it is registered with the alias ``challenger`` and the champion stays. Every
reason is a sentence, logged to MLflow with both models' metrics and the side-by-side table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import mlflow
import numpy as np
import pandas as pd

from features.catalog import CATALOG_VERSION
from features.school_calendar import school_terms
from features.tables import RawTables, fingerprint
from models.contract import ContractMismatch, FeatureContract
from training import track
from training.config import TrainingConfig
from training.evaluate import evaluate_scores, flag_top_k
from training.fairness import DEFAULT_GROUPS, METRICS, disparities, fairness_audit
from training.fit import MODEL
from training.matrices import school_days, with_groups
from training.pipeline import (
    Outcome,
    StepCallback,
    fit_and_evaluate,
    log_metrics,
    noop,
    observable_weeks,
    prepare,
)
from training.splits import CohortSplit, Split

BOUNDS = (0.8, 1.25)
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("auc", "AUC"),
    ("pr_auc", "PR-AUC"),
    ("brier", "Brier"),
    ("precision_at_k", "P@k"),
    ("recall_at_k", "R@k"),
)
FAIRNESS_ROW = "fairness ratios outside 0.8-1.25"
SCORED_IDS = ("student_id", "as_of", "school_id", "class_id", "label")
_TERM = re.compile(r"^\s*(\d{4})-([12])\s*$")


# --------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class Term:
    year: int  # the school year, e.g. 2024 for 2024/25
    half: int  # 1 = autumn (from September of `year`), 2 = spring (Feb-Jul of `year` + 1)

    def __str__(self) -> str:
        return f"{self.year}-{self.half}"

    def describe(self) -> str:
        if self.half == 1:
            return f"autumn term {self.year} (from September {self.year})"
        return f"spring term of school year {self.year}/{(self.year + 1) % 100:02d}"


def parse_term(text: str) -> Term:
    """``"2024-1"`` -> Term(2024, 1). Raises ValueError with the expected form."""
    match = _TERM.match(str(text))
    if not match:
        raise ValueError(
            f"--term must be YYYY-1 (the autumn term starting in September of YYYY) or YYYY-2 "
            f"(the spring term of school year YYYY, February-July of YYYY+1); got {text!r}"
        )
    return Term(int(match.group(1)), int(match.group(2)))


def term_window(tables: RawTables, term: Term | str) -> tuple[date, date]:
    """The term's first and last school day (over all schools) from the calendar."""
    return term_window_of(school_terms(tables.calendar), term)


def term_window_of(terms: pd.DataFrame, term: Term | str) -> tuple[date, date]:
    """`term_window` from the schools' terms (`features.school_calendar.school_terms`'
    frame, of the whole export or the union of its partitions')."""
    term = parse_term(term) if isinstance(term, str) else term
    starts = pd.to_datetime(terms["term_start"])
    if term.half == 1:
        wanted = (terms["term_kind"] == "september") & (starts.dt.year == term.year)
    else:
        wanted = (terms["term_kind"] == "spring") & (starts.dt.year == term.year + 1)
    chosen = terms.loc[wanted]
    if chosen.empty:
        found = sorted({_term_name(s, k) for s, k in zip(starts, terms["term_kind"], strict=True)})
        raise ValueError(
            f"the export's calendar has no {term.describe()} ({term}); it has the terms "
            f"{', '.join(t for t in found if t) or 'none'}"
        )
    return (
        pd.Timestamp(chosen["term_start"].min()).date(),
        pd.Timestamp(chosen["term_end"].max()).date(),
    )


def term_test_as_ofs(
    as_ofs: Sequence[date],
    term: Term,
    window: tuple[date, date],
    *,
    config: TrainingConfig,
    observed_until: date,
) -> list[date]:
    """The term's observable weekly as_ofs (`as_ofs`), or a ValueError saying none is."""
    if not as_ofs:
        start, end = window
        raise ValueError(
            f"no weekly as_of of term {term} ({start} .. {end}) has an observable "
            f"{config.horizon_days}-day outcome in this export (it ends "
            f"{observed_until}); retrain on an earlier term"
        )
    return list(as_ofs)


def term_config(config: TrainingConfig, test: Sequence[date]) -> TrainingConfig:
    """`config` with the test window set to the term's observable as_ofs: the challenger
    trains on everything whose label window closes before the term."""
    return config.model_copy(update={"train_until": test[0], "test_to": test[-1]})


@dataclass(frozen=True)
class TermPlan:
    """What a retrain compares on: the term, its window, its observable weekly as_ofs
    and the config the challenger trains with (`term_config`)."""

    term: Term
    window: tuple[date, date]
    test_as_ofs: list[date]
    config: TrainingConfig


def plan_term(
    terms: pd.DataFrame, days: Sequence[date], term: Term | str, config: TrainingConfig
) -> TermPlan:
    """The `TermPlan` from the schools' terms (`features.school_calendar.school_terms`)
    and every school day (sorted; the last is the last day observed), of the whole
    export or the union of its partitions'."""
    term = parse_term(term) if isinstance(term, str) else term
    if not days:
        raise ValueError("the export has no calendar days")
    window = term_window_of(terms, term)
    test = term_test_as_ofs(
        observable_weeks(days, days[-1], config, start=window[0], end=window[1]),
        term,
        window,
        config=config,
        observed_until=days[-1],
    )
    return TermPlan(term=term, window=window, test_as_ofs=test, config=term_config(config, test))


def _term_name(start: pd.Timestamp, kind: str) -> str:
    if kind == "september":
        return f"{start.year}-1"
    if kind == "spring":
        return f"{start.year - 1}-2"
    return ""


# --------------------------------------------------------------------------- pure decision


def score_model(
    model: Any, test: pd.DataFrame, students: pd.DataFrame, *, capacity_share: float
) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics at capacity and the fairness audit of one model's flagged list on
    labelled test rows (the same code for the challenger and the champion)."""
    scored = test.loc[:, list(SCORED_IDS)].copy()
    scored[MODEL] = model.risk_scores(test)
    return summarise_scored(with_groups(scored, students), capacity_share=capacity_share)


def summarise_scored(
    scored: pd.DataFrame, *, capacity_share: float
) -> tuple[dict[str, float], pd.DataFrame]:
    """`score_model` on rows already scored: ids (`SCORED_IDS`), the model's ``lightgbm``
    score and the fairness-group columns (`training.matrices.with_groups`'), sorted as
    the labelled rows. The Dask path gathers just these from the workers."""
    evaluation = evaluate_scores(
        scored, score_columns=[MODEL], capacity_share=capacity_share, probability_columns=[MODEL]
    )
    scored = scored.copy()
    scored["flagged"] = flag_top_k(scored, score=MODEL, share=capacity_share)
    groups = [g for g in DEFAULT_GROUPS if g in scored.columns and scored[g].notna().any()]
    audit = fairness_audit(scored, flagged="flagged", label="label", groups=groups)
    summary = {
        k: float(v)
        for k, v in evaluation[MODEL].summary.items()
        if isinstance(v, int | float | np.integer | np.floating)
    }
    return summary, audit


def _inside(value: float, bounds: tuple[float, float]) -> bool:
    return not math.isnan(value) and bounds[0] <= value <= bounds[1]


def fairness_gate(
    champion_audit: pd.DataFrame,
    challenger_audit: pd.DataFrame,
    bounds: tuple[float, float] = BOUNDS,
) -> list[str]:
    """One sentence per ratio the champion kept inside `bounds` that the challenger's list
    moves outside. Ratios the champion already had outside (or could not compute) never
    block. Empty list: the gate passes."""
    key = ["group", "value"]
    ratios = [f"{m}_ratio" for m in METRICS]
    merged = champion_audit.loc[:, [*key, "reference", *ratios]].merge(
        challenger_audit.loc[:, [*key, *ratios]], on=key, suffixes=("_champion", "_challenger")
    )
    sentences = []
    for row in merged.to_dict(orient="records"):
        for metric in METRICS:
            old = float(row[f"{metric}_ratio_champion"])
            new = float(row[f"{metric}_ratio_challenger"])
            if _inside(old, bounds) and not math.isnan(new) and not _inside(new, bounds):
                sentences.append(
                    f"{metric} for {row['group']}={row['value']} leaves the "
                    f"{bounds[0]}-{bounds[1]} band: {new:.2f}× that of {row['reference']} "
                    f"(the champion's list: {old:.2f}×)"
                )
    return sentences


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    gate: list[str],
    *,
    champion_version: str | None = None,
) -> tuple[bool, list[str]]:
    """(promote?, reasons). Promote when there is no champion, or when the challenger beats
    it on precision@k and the fairness gate passes."""
    if champion is None:
        return True, ["there is no champion yet, so the new model becomes the champion"]
    new_p, old_p = challenger["precision_at_k"], champion["precision_at_k"]
    name = f"champion version {champion_version}" if champion_version else "the champion"
    reasons = []
    wins = new_p > old_p
    if wins:
        reasons.append(
            f"precision@k {new_p:.3f} beats {name} ({old_p:.3f}) on the same term window"
        )
    else:
        reasons.append(
            f"precision@k {new_p:.3f} does not beat {name} ({old_p:.3f}) on the same term window"
        )
    if gate:
        reasons.append(
            f"{len(gate)} fairness ratio(s) that {name} kept inside 0.8-1.25 leave the band: "
            + "; ".join(gate)
        )
    else:
        reasons.append(f"no fairness ratio that {name} kept inside 0.8-1.25 leaves the band")
    promote = wins and not gate
    reasons.append(
        "the new model is promoted to champion"
        if promote
        else f"{name} is kept; the new model is registered as challenger"
    )
    return promote, reasons


def comparison_table(
    challenger: dict[str, float],
    challenger_audit: pd.DataFrame,
    champion: dict[str, float] | None,
    champion_audit: pd.DataFrame | None,
) -> pd.DataFrame:
    """Metrics by row, `champion` and `challenger` columns (NaN where there is no champion)."""
    rows: dict[str, dict[str, float]] = {}
    for key, title in TABLE_METRICS:
        rows[title] = {
            "champion": float(champion.get(key, math.nan)) if champion else math.nan,
            "challenger": float(challenger.get(key, math.nan)),
        }
    rows[FAIRNESS_ROW] = {
        "champion": float(len(disparities(champion_audit)))
        if champion_audit is not None
        else math.nan,
        "challenger": float(len(disparities(challenger_audit))),
    }
    return pd.DataFrame.from_dict(rows, orient="index")[["champion", "challenger"]]


def table_markdown(table: pd.DataFrame) -> str:
    """The side-by-side table as a Markdown table (no extra dependency)."""

    def cell(row: str, value: float) -> str:
        if value != value:
            return "—"
        return f"{value:.0f}" if row == FAIRNESS_ROW else f"{value:.3f}"

    lines = ["| metric | champion | challenger |", "|---|---:|---:|"]
    for name, row in table.iterrows():
        lines.append(
            f"| {name} | {cell(str(name), row['champion'])} | "
            f"{cell(str(name), row['challenger'])} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- with MLflow


@dataclass(frozen=True)
class RetrainResult:
    term: str
    term_start: date
    term_end: date
    test_from: date
    test_to: date
    run_id: str
    version: str  # the challenger's registered version
    champion_version: str | None  # the champion it was compared with
    promoted: bool
    alias: str
    reasons: list[str]
    table: pd.DataFrame
    challenger_disparities: list[str]
    champion_disparities: list[str]
    fairness_blocks: list[str]
    n_rows: dict[str, int]


class SplitOf(Protocol):
    """What `decide_and_register` reads of a prepared split (in memory or on Dask)."""

    @property
    def split(self) -> Split | CohortSplit: ...

    @property
    def contract(self) -> FeatureContract: ...


# `score_on_test(model)`: (summary, audit) of a model on the term's labelled test rows
# (`score_model`/`summarise_scored`), after checking its contract against those rows
# (ContractMismatch when it cannot score them).
ScoreOnTest = Callable[[Any], tuple[dict[str, float], pd.DataFrame]]


def retrain(
    tables: RawTables,
    config: TrainingConfig,
    *,
    store: track.Store,
    term: Term | str,
    on_step: StepCallback = noop,
) -> RetrainResult:
    """Train a challenger on everything before `term`, compare it with the champion on the
    term, register it, and promote it only if it wins on precision@k and fairness."""
    plan = plan_term(school_terms(tables.calendar), school_days(tables), term, config)
    config = plan.config
    prepared = prepare(tables, config, on_step)
    outcome = fit_and_evaluate(tables, prepared, config, on_step)
    test_frame = prepared.frames().test

    def score_on_test(model: Any) -> tuple[dict[str, float], pd.DataFrame]:
        assert model.contract is not None
        model.contract.check(test_frame, catalog_version=CATALOG_VERSION)
        return score_model(model, test_frame, tables.students, capacity_share=config.capacity_share)

    return decide_and_register(
        outcome,
        plan,
        store=store,
        prepared=prepared,
        test_example=test_frame,
        score_on_test=score_on_test,
        digest=fingerprint(tables),
        on_step=on_step,
    )


def decide_and_register(
    outcome: Outcome,
    plan: TermPlan,
    *,
    store: track.Store,
    prepared: SplitOf,
    test_example: pd.DataFrame,
    score_on_test: ScoreOnTest,
    digest: str,
    on_step: StepCallback = noop,
    tags: dict[str, str] | None = None,
) -> RetrainResult:
    """Score the challenger (`outcome`'s model) and the current champion on the term's
    test rows (`score_on_test`), decide with the fairness gate, log both and the decision
    to MLflow, register the challenger and give it its alias. Shared by the in-memory
    `retrain` and `training.distributed_retrain.retrain_dask`.

    `test_example` holds labelled test rows (its first five are the model's input
    example); `prepared` gives the split and the contract (`training.pipeline.prepare`'s
    or `prepare_dask`'s); `tags` are added to the run's (e.g. ``baoxue.backend``)."""
    term, config, split, contract = plan.term, plan.config, prepared.split, prepared.contract
    start, end = plan.window
    test = list(plan.test_as_ofs)
    on_step("scoring the challenger and the champion on the term")
    new_summary, new_audit = score_on_test(outcome.fitted.risk_model)
    client = track.connect(store)
    current = track.alias_version(client, store.model_name, track.CHAMPION)
    old_summary: dict[str, float] | None = None
    old_audit: pd.DataFrame | None = None
    champion_version = str(current.version) if current is not None else None
    unusable: str | None = None
    if current is not None:
        try:
            champion, champion_version = track.load_risk_model(store.model_name, track.CHAMPION)
            old_summary, old_audit = score_on_test(champion)
        except ContractMismatch as exc:
            unusable = f"the champion (version {champion_version}) cannot score this data: {exc}"
    gate = fairness_gate(old_audit, new_audit) if old_audit is not None else []
    if unusable:
        promote, reasons = True, [unusable, "the new model is promoted to champion"]
    else:
        promote, reasons = decide(new_summary, old_summary, gate, champion_version=champion_version)
    alias = track.CHAMPION if promote else track.CHALLENGER
    table = comparison_table(new_summary, new_audit, old_summary, old_audit)
    on_step("logging the comparison and the model to MLflow")
    with mlflow.start_run(run_name=f"retrain {term}") as run:
        mlflow.set_tags(
            {
                "baoxue.kind": "retrain",
                "baoxue.term": str(term),
                "baoxue.decision": "promote" if promote else "keep",
                "baoxue.alias": alias,
                "baoxue.alias_reason": " ".join(reasons),
                "data_fingerprint": digest,
                **(tags or {}),
            }
        )
        mlflow.log_params(
            {
                **{k: v for k, v in config.model_dump(mode="json").items() if k != "gbm"},
                "term": str(term),
                "term_start": start.isoformat(),
                "term_end": end.isoformat(),
                "train_from": split.train_as_ofs[0].isoformat(),
                "train_to": split.train_as_ofs[-1].isoformat(),
                "test_from": test[0].isoformat(),
                "test_to": test[-1].isoformat(),
                "champion_version": champion_version or "none",
                "data_fingerprint": digest,
                "catalog_version": CATALOG_VERSION,
                **{f"rows.{k}": v for k, v in outcome.n_rows.items()},
            }
        )
        log_metrics(outcome.evaluation)  # key.lightgbm etc.: the registered version's metrics
        for who, summary in (("challenger", new_summary), ("champion", old_summary)):
            if summary:
                mlflow.log_metrics(
                    {f"{key}.{who}": value for key, value in summary.items() if np.isfinite(value)}
                )
        track.log_frame(table.reset_index(names="metric"), "comparison.csv")
        mlflow.log_text(table_markdown(table), "comparison.md")
        track.log_json(outcome.evaluation.to_dict(), "evaluation.json")
        track.log_frame(new_audit, "fairness_challenger.csv")
        if old_audit is not None:
            track.log_frame(old_audit, "fairness_champion.csv")
        track.log_json(
            {
                "term": str(term),
                "promote": promote,
                "alias": alias,
                "champion_version": champion_version,
                "reasons": reasons,
                "fairness_blocks": gate,
            },
            "decision.json",
        )
        example = test_example.loc[
            :, ["student_id", "as_of", "school_id", "class_id", *contract.feature_names]
        ].head(5)
        _, version = track.log_risk_model(
            outcome.fitted.risk_model, input_example=example, model_name=store.model_name
        )
        track.set_alias(client, store.model_name, alias, version)
    return RetrainResult(
        term=str(term),
        term_start=start,
        term_end=end,
        test_from=test[0],
        test_to=test[-1],
        run_id=run.info.run_id,
        version=version,
        champion_version=champion_version,
        promoted=promote,
        alias=alias,
        reasons=reasons,
        table=table,
        challenger_disparities=disparities(new_audit),
        champion_disparities=disparities(old_audit) if old_audit is not None else [],
        fairness_blocks=gate,
        n_rows=outcome.n_rows,
    )
