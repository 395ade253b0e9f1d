"""run_experiment: the one place that wires features, labels, splits, fit, evaluation,
fairness and MLflow together. `evaluate_registered` scores a registered model on a window.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.catalog import CATALOG_VERSION, catalog_for
from features.tables import RawTables, fingerprint
from models.contract import ContractMismatch, FeatureContract
from training import track
from training.config import TrainingConfig
from training.evaluate import (
    EvaluationResult,
    evaluate_scores,
    flag_top_k,
    plot_pr_curves,
    plot_reliability,
)
from training.fairness import DEFAULT_GROUPS, disparities, fairness_audit, plot_fairness
from training.fit import (
    BASELINES,
    MODEL,
    SERVED,
    FittedModels,
    fit_baselines,
    fit_models,
    score_frame,
)
from training.matrices import (
    SplitFrames,
    enrolment_start,
    labelled_snapshots,
    observed_until,
    school_days,
    split_frames,
    with_groups,
)
from training.splits import CohortSplit, Split, cohort_split, temporal_split, weekly_as_ofs

logger = logging.getLogger(__name__)

StepCallback = Callable[[str], None]
BASELINE_HISTORY_WEEKS = 30


def noop(_: str) -> None:
    """A `StepCallback` that says nothing (the default)."""
    return None


# --------------------------------------------------------------------------- pure parts


def build_contract(snapshot: pd.DataFrame, *, horizon_days: int) -> FeatureContract:
    """The model's feature contract from the catalog entries of the snapshot's columns."""
    specs = catalog_for(snapshot)
    return FeatureContract(
        feature_names=tuple(s.name for s in specs),
        groups={s.name: s.group for s in specs},
        reason_codes={s.name: s.reason_code for s in specs},
        monotone={s.name: int(s.monotone) for s in specs if getattr(s, "monotone", 0)},
        catalog_version=CATALOG_VERSION,
        horizon_days=horizon_days,
    )


def observable_as_ofs(
    tables: RawTables, config: TrainingConfig, *, start: date | None = None, end: date | None = None
) -> list[date]:
    """Weekly as_of dates in school weeks whose label window closes inside the export."""
    return observable_weeks(
        school_days(tables), observed_until(tables), config, start=start, end=end
    )


def observable_weeks(
    days: Sequence[date],
    last: date,
    config: TrainingConfig,
    *,
    start: date | None = None,
    end: date | None = None,
) -> list[date]:
    """`observable_as_ofs` from the export's school days and its last school day (what a
    partitioned export gives without holding its tables in one process)."""
    weeks = weekly_as_ofs(
        list(days),
        every_days=config.as_of_every_days,
        weekday=config.as_of_weekday,
        start=start,
        end=end,
    )
    if config.horizon_to_enrolment_end:
        return [d for d in weeks if d <= last]
    return [d for d in weeks if d + config.horizon <= last + timedelta(days=1)]


def default_test_from(as_ofs: Sequence[date], tables: RawTables) -> date:
    """The first as_of of the last school year that has observable as_ofs; when that leaves
    too little to train on, the as_of at 70 % of the observable period."""
    return default_test_from_years(as_ofs, tables.enrolments["school_year"].unique())


def default_test_from_years(as_ofs: Sequence[date], school_years: Any) -> date:
    """`default_test_from` given the export's enrolment school years."""
    years = sorted({int(y) for y in school_years})
    for year in reversed(years):
        start = date(year, 8, 1)
        later = [d for d in as_ofs if d >= start]
        earlier = [d for d in as_ofs if d < start]
        if later and len(earlier) >= 30:
            return later[0]
    return as_ofs[int(len(as_ofs) * 0.7)]


@dataclass(frozen=True)
class Prepared:
    frame: pd.DataFrame  # labelled snapshots for every as_of used
    split: Split | CohortSplit
    contract: FeatureContract
    enrolment_starts: pd.Series | None = None  # aligned to frame; for a cohort split

    def frames(self) -> SplitFrames:
        """The train, calibration and test rows of the split."""
        return split_frames(self.frame, self.split, enrolment_starts=self.enrolment_starts)


def make_split(
    as_ofs: Sequence[date], config: TrainingConfig, *, test_from: date, test_to: date | None
) -> Split | CohortSplit:
    """The split `config.split` asks for, with the test window [test_from, test_to]."""
    if config.split == "cohort":
        return cohort_split(
            as_ofs,
            horizon=config.horizon,
            cohort_from=test_from,
            test_to=test_to,
            calibration_share=config.calibration_share,
            seed=config.seed,
        )
    return temporal_split(
        as_ofs,
        horizon=config.horizon,
        test_from=test_from,
        test_to=test_to,
        calibration_weeks=config.calibration_weeks,
    )


def choose_split(
    as_ofs: Sequence[date], school_years: Any, config: TrainingConfig
) -> Split | CohortSplit:
    """The split of the observable weekly `as_ofs` that `config` asks for (the test window
    from `config.train_until`, by default the start of the last school year), or a
    ValueError saying what the export lacks."""
    if len(as_ofs) < 12:
        raise ValueError(
            f"the export covers only {len(as_ofs)} weeks with observable "
            f"{config.horizon_days}-day outcomes; training needs at least 12"
        )
    test_from = config.train_until or default_test_from_years(as_ofs, school_years)
    try:
        return make_split(as_ofs, config, test_from=test_from, test_to=config.test_to)
    except ValueError as exc:
        raise ValueError(
            f"{exc} The export's observable weeks run {as_ofs[0]} .. {as_ofs[-1]}; training "
            f"needs history whose {config.horizon_days}-day outcomes are known before a "
            "calibration period and the test window (export more school years, or move the "
            "test window with --train-until)."
        ) from exc


def used_as_ofs(split: Split | CohortSplit) -> list[date]:
    """Every as_of the split trains, calibrates or tests on, sorted."""
    return sorted({*split.train_as_ofs, *split.calibration_as_ofs, *split.test_as_ofs})


def prepare(tables: RawTables, config: TrainingConfig, on_step: StepCallback = noop) -> Prepared:
    """Weekly as_ofs, the split, labelled snapshots and the feature contract."""
    split = choose_split(
        observable_as_ofs(tables, config), tables.enrolments["school_year"].unique(), config
    )
    used = used_as_ofs(split)
    on_step(f"building snapshots for {len(used)} weekly as_of dates")
    frame = labelled_snapshots(
        tables,
        as_ofs=used,
        horizon=config.horizon,
        horizon_to_enrolment_end=config.horizon_to_enrolment_end,
    )
    contract = build_contract(frame, horizon_days=config.horizon_days)
    starts = enrolment_start(tables, frame) if isinstance(split, CohortSplit) else None
    return Prepared(frame=frame, split=split, contract=contract, enrolment_starts=starts)


@dataclass(frozen=True)
class Outcome:
    """A fitted split and its evaluation on the test window."""

    fitted: FittedModels
    test_scores: pd.DataFrame  # ids, label, one column per model, flagged, group columns
    evaluation: EvaluationResult
    fairness: pd.DataFrame
    disparities: list[str]
    n_rows: dict[str, int]


def fit_and_evaluate(
    tables: RawTables,
    prepared: Prepared,
    config: TrainingConfig,
    on_step: StepCallback = noop,
) -> Outcome:
    """Fit on train + calibration, evaluate model and baselines on test (no I/O)."""
    frames = prepared.frames()
    on_step(
        f"fitting LightGBM and baselines on {len(frames.train):,} rows "
        f"({int(frames.train['label'].sum())} dropouts)"
    )
    fitted = fit_models(
        frames,
        contract=prepared.contract,
        seed=config.seed,
        n_jobs=config.n_jobs,
        early_stopping_rounds=config.early_stopping_rounds,
        gbm_overrides=config.gbm,
        early_stop_on_calibration=isinstance(prepared.split, CohortSplit),
        tune_seconds=config.optuna_seconds,
    )
    on_step(f"evaluating on {len(frames.test):,} test rows")
    scores, evaluation, audit = score_and_audit(
        fitted, frames.test, tables.students, capacity_share=config.capacity_share
    )
    return outcome_of(
        fitted,
        scores,
        evaluation,
        audit,
        n_train=len(frames.train),
        n_calibration=len(frames.calibration),
        train_positive=int(frames.train["label"].sum()),
    )


def outcome_of(
    fitted: FittedModels,
    scores: pd.DataFrame,
    evaluation: EvaluationResult,
    audit: pd.DataFrame,
    *,
    n_train: int,
    n_calibration: int,
    train_positive: int,
) -> Outcome:
    """The `Outcome` of a fit evaluated on its test rows (`audit_scores`' results) and
    the row counts of the other parts, in memory or counted on the cluster."""
    return Outcome(
        fitted=fitted,
        test_scores=scores,
        evaluation=evaluation,
        fairness=audit,
        disparities=disparities(audit),
        n_rows={
            "train": int(n_train),
            "calibration": int(n_calibration),
            "test": len(scores),
            "train_positive": int(train_positive),
            "test_positive": int(scores["label"].sum()),
        },
    )


def score_and_audit(
    fitted: FittedModels, test: pd.DataFrame, students: pd.DataFrame, *, capacity_share: float
) -> tuple[pd.DataFrame, EvaluationResult, pd.DataFrame]:
    """Score labelled test rows with the model, the baselines and the served list; evaluate
    them at capacity; audit the model's flags by group. Returns (scores, evaluation, audit)."""
    return audit_scores(
        with_groups(score_frame(fitted, test), students), capacity_share=capacity_share
    )


def audit_scores(
    scores: pd.DataFrame, *, capacity_share: float
) -> tuple[pd.DataFrame, EvaluationResult, pd.DataFrame]:
    """Evaluate `score_frame`'s columns at capacity and audit the model's flags by the
    fairness groups (`with_groups`' columns, already attached). Needs only ids, label,
    scores and groups, not features, so the Dask path collects just these.
    Returns (scores with ``flagged``, evaluation, audit)."""
    scores = scores.copy()
    evaluation = evaluate_scores(
        scores,
        score_columns=[MODEL, *BASELINES, *([SERVED] if SERVED in scores.columns else [])],
        capacity_share=capacity_share,
        probability_columns=[MODEL, *BASELINES],
    )
    scores["flagged"] = flag_top_k(scores, score=MODEL, share=capacity_share)
    groups = [g for g in DEFAULT_GROUPS if g in scores.columns and scores[g].notna().any()]
    audit = fairness_audit(scores, flagged="flagged", label="label", groups=groups)
    return scores, evaluation, audit


def precision_at_k_of(model: Any, test_frame: pd.DataFrame, share: float) -> float:
    """Precision@k of any RiskModel on labelled test rows (for champion comparisons)."""
    scored = test_frame.loc[:, ["student_id", "as_of", "school_id", "class_id", "label"]].copy()
    scored["candidate"] = model.risk_scores(test_frame)
    return precision_at_k_scored(scored, share)


def precision_at_k_scored(scored: pd.DataFrame, share: float) -> float:
    """Precision@k of a ``candidate`` score column beside ids and label."""
    result = evaluate_scores(scored, score_columns=["candidate"], capacity_share=share)
    return float(result["candidate"].summary["precision_at_k"])


# --------------------------------------------------------------------------- with MLflow


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    alias: str
    alias_reason: str
    evaluation: EvaluationResult
    fairness: pd.DataFrame
    disparities: list[str]
    split: Split | CohortSplit
    n_rows: dict[str, int]
    train_seconds: float
    fingerprint: str


def _metric_name(model: str, key: str) -> str:
    return f"{key}.{model}"


def log_metrics(evaluation: EvaluationResult) -> None:
    """Each model's numeric summary metrics as ``<metric>.<model>`` on the active run."""
    metrics: dict[str, float] = {}
    for model, result in evaluation.models.items():
        for key, value in result.summary.items():
            if isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
                metrics[_metric_name(model, key)] = float(value)
    mlflow.log_metrics(metrics)


def _shap_summary_figure(model: Any, test_frame: pd.DataFrame, seed: int) -> Any:
    """A global SHAP summary (beeswarm) drawn with the shap package on a test sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    X = model.contract.matrix(test_frame)
    sample = X.sample(n=min(2000, len(X)), random_state=seed) if len(X) else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap's note on LightGBM output shape
        values = model.tree_explainer.shap_values(sample)
    plt.figure()
    shap.summary_plot(values, sample, show=False, max_display=20)
    figure = plt.gcf()
    figure.set_size_inches(9, 8)
    figure.tight_layout()
    return figure


ChampionPrecision = Callable[[Any], float]


def _choose_alias(
    client: Any,
    store: track.Store,
    outcome: Outcome,
    champion_precision: ChampionPrecision,
) -> tuple[str, str, float | None]:
    """champion if the new model beats the current champion on this test window by
    precision@k (or there is none / it cannot score this data); challenger otherwise.
    `champion_precision(model)` is a model's precision@k on the same test rows."""
    new_p = float(outcome.evaluation[MODEL].summary["precision_at_k"])
    current = track.alias_version(client, store.model_name, track.CHAMPION)
    if current is None:
        return track.CHAMPION, "no champion yet", None
    try:
        champion, version = track.load_risk_model(store.model_name, track.CHAMPION)
        old_p = champion_precision(champion)
    except ContractMismatch as exc:
        return (
            track.CHAMPION,
            f"the champion (version {current.version}) cannot score this data: {exc}",
            None,
        )
    if new_p > old_p:
        return (
            track.CHAMPION,
            f"precision@k {new_p:.3f} beats champion version {version} ({old_p:.3f}) "
            "on the same test window",
            old_p,
        )
    return (
        track.CHALLENGER,
        f"precision@k {new_p:.3f} does not beat champion version {version} ({old_p:.3f}) "
        "on the same test window; champion kept",
        old_p,
    )


def run_experiment(
    tables: RawTables,
    config: TrainingConfig,
    *,
    store: track.Store,
    on_step: StepCallback = noop,
) -> TrainResult:
    """Train, evaluate, audit, log to MLflow, register, and move the alias if earned."""
    started = time.perf_counter()
    prepared = prepare(tables, config, on_step)
    outcome = fit_and_evaluate(tables, prepared, config, on_step)
    test_frame = prepared.frames().test
    return log_and_register(
        outcome,
        config,
        store=store,
        split=prepared.split,
        contract=prepared.contract,
        snapshot_columns=prepared.frame.head(0),
        test_sample=test_frame,
        champion_precision=lambda model: precision_at_k_of(
            model, test_frame, config.capacity_share
        ),
        digest=fingerprint(tables),
        started=started,
        on_step=on_step,
    )


def log_and_register(
    outcome: Outcome,
    config: TrainingConfig,
    *,
    store: track.Store,
    split: Split | CohortSplit,
    contract: FeatureContract,
    snapshot_columns: pd.DataFrame,
    test_sample: pd.DataFrame,
    champion_precision: ChampionPrecision,
    digest: str,
    started: float,
    on_step: StepCallback = noop,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Log a fitted and evaluated split to MLflow, register the model, and give it the
    alias it earns (`_choose_alias`). Shared by the in-memory and the Dask pipeline.

    `snapshot_columns` is any frame with the labelled snapshot's columns (the feature
    catalog is logged from it); `test_sample` holds labelled test rows for the SHAP summary
    (up to 2,000 of them are drawn) and the input example; `champion_precision` scores the
    current champion on the whole test window; `started` is the `time.perf_counter()` at
    which the run began."""
    client = track.connect(store)
    on_step("logging the run and the model to MLflow")
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                **{k: v for k, v in config.model_dump(mode="json").items() if k != "gbm"},
                **{f"gbm.{k}": v for k, v in outcome.fitted.params.items()},
                "best_iteration": outcome.fitted.best_iteration,
                "data_fingerprint": digest,
                "catalog_version": CATALOG_VERSION,
                "n_features": len(contract.feature_names),
                "train_from": split.train_as_ofs[0].isoformat(),
                "train_to": split.train_as_ofs[-1].isoformat(),
                "split": config.split,
                "calibration_from": split.calibration_as_ofs[0].isoformat(),
                "test_from": split.test_as_ofs[0].isoformat(),
                "test_to": split.test_as_ofs[-1].isoformat(),
                "calibration_method": outcome.fitted.risk_model.calibrator.method,  # type: ignore[union-attr]
                **{f"rows.{k}": v for k, v in outcome.n_rows.items()},
            }
        )
        mlflow.set_tags({"data_fingerprint": digest, "baoxue.kind": "train", **(tags or {})})
        log_metrics(outcome.evaluation)
        track.log_json(outcome.evaluation.to_dict(), "evaluation.json")
        track.log_frame(outcome.fairness, "fairness.csv")
        track.log_json(outcome.disparities, "fairness_disparities.json")
        track.log_json([s.__dict__ for s in catalog_for(snapshot_columns)], "feature_catalog.json")
        scores = outcome.test_scores
        figures = {
            "pr_curves": plot_pr_curves(
                scores, score_columns=[MODEL, *BASELINES], capacity_share=config.capacity_share
            ),
            "reliability": plot_reliability(
                scores["label"], {name: scores[name] for name in (MODEL, "logistic")}
            ),
            "fairness": plot_fairness(outcome.fairness),
            "shap_summary": _shap_summary_figure(
                outcome.fitted.risk_model, test_sample, config.seed
            ),
        }
        track.log_figures(figures)
        example = test_sample.loc[
            :, ["student_id", "as_of", "school_id", "class_id", *contract.feature_names]
        ].head(5)
        _, version = track.log_risk_model(
            outcome.fitted.risk_model, input_example=example, model_name=store.model_name
        )
        alias, reason, old_p = _choose_alias(client, store, outcome, champion_precision)
        track.set_alias(client, store.model_name, alias, version)
        mlflow.set_tags({"baoxue.alias": alias, "baoxue.alias_reason": reason})
        if old_p is not None:
            mlflow.log_metric("precision_at_k.champion_before", old_p)
        seconds = time.perf_counter() - started
        mlflow.log_metric("train_seconds", seconds)
    return TrainResult(
        run_id=run.info.run_id,
        version=version,
        alias=alias,
        alias_reason=reason,
        evaluation=outcome.evaluation,
        fairness=outcome.fairness,
        disparities=outcome.disparities,
        split=split,
        n_rows=outcome.n_rows,
        train_seconds=seconds,
        fingerprint=digest,
    )


def evaluate_registered(
    tables: RawTables,
    config: TrainingConfig,
    *,
    store: track.Store,
    ref: str,
    date_from: date,
    date_to: date,
    on_step: StepCallback = noop,
) -> dict[str, Any]:
    """Score a registered model on every weekly as_of in [date_from, date_to] whose labels
    are observable, beside baselines fitted on what was known before date_from."""
    track.connect(store)
    model, version = track.load_risk_model(store.model_name, ref)
    contract = model.contract
    assert contract is not None
    all_as_ofs = observable_as_ofs(tables, config)
    test = [d for d in all_as_ofs if date_from <= d <= date_to]
    if not test:
        raise ValueError(
            f"no weekly as_of between {date_from} and {date_to} has an observable "
            f"{config.horizon_days}-day outcome in this export (it ends {observed_until(tables)})"
        )
    eval_config = config.model_copy(update={"horizon_days": contract.horizon_days})
    split = make_split(
        all_as_ofs,
        eval_config,
        test_from=date_from if config.split == "cohort" else test[0],
        test_to=test[-1],
    )
    # The baselines learn only a monotone map from their rule to a probability (and the
    # logistic regression a few dozen weights): the last BASELINE_HISTORY_WEEKS weeks of
    # history are plenty and keep evaluation from rebuilding every snapshot since the start.
    # A cohort split fits them on the earlier cohorts at every date, as training does.
    history = sorted({*split.train_as_ofs, *split.calibration_as_ofs})
    if not isinstance(split, CohortSplit):
        history = history[-BASELINE_HISTORY_WEEKS:]
    used = sorted({*history, *split.test_as_ofs})
    on_step(f"building snapshots for {len(used)} weekly as_of dates")
    frame = labelled_snapshots(
        tables,
        as_ofs=used,
        horizon=eval_config.horizon,
        horizon_to_enrolment_end=eval_config.horizon_to_enrolment_end,
    )
    contract.check(frame, catalog_version=CATALOG_VERSION)
    starts = enrolment_start(tables, frame) if isinstance(split, CohortSplit) else None
    frames = split_frames(frame, split, enrolment_starts=starts)
    on_step(
        "fitting the baselines on the earlier cohorts"
        if isinstance(split, CohortSplit)
        else "fitting the baselines on the history before the window"
    )
    history = pd.concat([frames.train, frames.calibration], ignore_index=True)
    X_hist = history.loc[:, list(contract.feature_names)].astype(np.float64)
    fitted = FittedModels(
        risk_model=model,
        baselines=fit_baselines(X_hist, history["label"].to_numpy(), seed=config.seed),
        best_iteration=0,
        fit_seconds=0.0,
    )
    on_step(f"scoring {len(frames.test):,} rows")
    scores, evaluation, audit = score_and_audit(
        fitted, frames.test, tables.students, capacity_share=config.capacity_share
    )
    result = evaluation[MODEL].to_dict()
    return {
        "model": store.model_name,
        "version": version,
        "from": test[0].isoformat(),
        "to": test[-1].isoformat(),
        "horizon_days": contract.horizon_days,
        "capacity_share": config.capacity_share,
        **result,
        "baselines": {name: evaluation[name].to_dict() for name in BASELINES},
        "served_list": (evaluation[SERVED].to_dict() if SERVED in evaluation.models else None),
        "fairness": audit.replace({np.nan: None}).to_dict(orient="records"),
        "disparities": disparities(audit),
    }
