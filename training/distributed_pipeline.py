"""`run_experiment` on a Dask cluster: `baoxue train` with ``compute.backend = "dask"``.

The in-memory pipeline (`training.pipeline.run_experiment`) reads the whole export,
builds every labelled snapshot and fits in one process. Here no process holds the
pupils' training rows:

* the export is split into school partitions (`features.distributed.partition_export`);
* the school days and school years that choose the weekly as_ofs and the split come from
  one small task per partition (`training.distributed.export_calendar`);
* the labelled rows of every as_of in the split are built per partition on the workers
  and stay there (`labelled_snapshots_dask`, with the fairness-group columns beside them);
* LightGBM is fitted with `lightgbm.dask`. The number of trees is chosen as the in-memory
  fit chooses it (early stopping on average precision on a later slice of the training
  period, then a refit on the whole period), but `lightgbm.dask` cannot stop early, so a
  probe grows every tree and its validation curve is measured on the cluster from margin
  histograms (`validation_curve_dask`);
* only narrow columns come back to this process: the calibration rows' margin, label and
  as_of (about 40 bytes a row) to fit the calibrator; the test rows' ids, label, the
  model's and the baselines' scores and the group columns (about 140 bytes a row, against
  530 for a labelled row with its features), to evaluate at capacity and audit fairness
  exactly as in memory (`training.pipeline.audit_scores`); the champion's scores on the
  test rows, to choose the alias; 2,000 test rows for the SHAP summary.
* The baselines (escalation ladder, hardship count, logistic regression) are fitted in
  this process on a uniform sample of at most `BASELINE_SAMPLE_ROWS` training rows (all of
  them when there are fewer, as in the tests, so they equal the in-memory baselines).

Logging, registering and the alias are `training.pipeline.log_and_register`, shared with
the in-memory path. A cohort split (courses) and an Optuna search are not available here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from models.calibration import fit_calibrator
from models.contract import FeatureContract
from models.risk_model import RiskModel
from training import track
from training.config import TrainingConfig
from training.distributed import (
    best_n_trees,
    carried_groups,
    dask_classifier_params,
    default_n_estimators,
    export_calendar,
    fit_lightgbm_dask,
    gather,
    labelled_snapshots_dask,
    truncate,
    validation_curve_dask,
)
from training.fit import FittedModels, fit_baselines, score_frame
from training.pipeline import (
    Outcome,
    StepCallback,
    TrainResult,
    audit_scores,
    build_contract,
    choose_split,
    log_and_register,
    noop,
    observable_weeks,
    outcome_of,
    precision_at_k_scored,
    used_as_ofs,
)
from training.splits import Split

logger = logging.getLogger(__name__)

BASELINE_SAMPLE_ROWS = 200_000  # training rows the baselines are fitted on, at most
SHAP_SAMPLE_ROWS = 2_000  # test rows drawn for the SHAP summary plot
EARLY_STOPPING_SHARE = 0.3  # as training.fit.early_stopping_fold
EARLY_STOPPING_MIN_DATES = 8
EARLY_STOPPING_MIN_POSITIVES = 5
IDS = ["student_id", "as_of", "school_id", "class_id", "label"]


class MarginModel(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier whose decision function is a margin already computed: the ``margin``
    column of its input. It lets `models.calibration.fit_calibrator` calibrate margins
    that the workers computed, with the same scikit-learn code as in memory."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> MarginModel:
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(X["margin"], dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])


@dataclass(frozen=True)
class DaskPrepared:
    """The split and its labelled rows, held on the cluster."""

    split: Split
    contract: FeatureContract
    columns: pd.DataFrame  # no rows: the labelled frame's columns and dtypes
    train: Any  # dask.dataframe.DataFrame
    calibration: Any
    test: Any
    observed_until: dt.date


def _rows_at(frame: Any, as_ofs: Sequence[dt.date]) -> Any:
    return frame[frame["as_of"].isin([pd.Timestamp(d) for d in as_ofs])]


def prepare_dask(
    parts_dir: Path,
    partitions: Sequence[int],
    config: TrainingConfig,
    *,
    client: Any,
    on_step: StepCallback = noop,
    calendar: tuple[Sequence[dt.date], set[int]] | None = None,
) -> DaskPrepared:
    """`training.pipeline.prepare` on a partitioned export: the same weekly as_ofs, split
    and labelled rows, built per partition and left on the workers. `calendar` is
    `export_calendar`'s (school days, school years), when the caller has read it."""
    if config.split != "temporal":
        raise ValueError(
            "the cohort split is not available with compute.backend = dask (it draws "
            "held-out students over the whole export); train it with backend pandas"
        )
    if config.optuna_seconds > 0:
        raise ValueError(
            "a hyper-parameter search (optuna_seconds) is not available with "
            "compute.backend = dask; search with backend pandas on a county, then set "
            "the found parameters in [training.gbm]"
        )
    days, years = calendar or export_calendar(parts_dir, partitions=partitions)
    days = sorted(days)
    if not days:
        raise ValueError("the partitioned export has no calendar days")
    last = days[-1]
    split = choose_split(observable_weeks(days, last, config), years, config)
    assert isinstance(split, Split)
    used = used_as_ofs(split)
    on_step(
        f"building snapshots for {len(used)} weekly as_of dates "
        f"in {len(partitions)} partitions on the cluster"
    )
    labelled = labelled_snapshots_dask(
        parts_dir,
        partitions=partitions,
        as_ofs=used,
        horizon=config.horizon,
        observed_until=last,
        horizon_to_enrolment_end=config.horizon_to_enrolment_end,
        group_columns=True,
        client=client,
    )
    columns = labelled._meta
    return DaskPrepared(
        split=split,
        contract=build_contract(columns, horizon_days=config.horizon_days),
        columns=columns,
        train=_rows_at(labelled, split.train_as_ofs),
        calibration=_rows_at(labelled, split.calibration_as_ofs),
        test=_rows_at(labelled, split.test_as_ofs),
        observed_until=last,
    )


def early_stopping_fold_dask(train: Any, *, horizon_days: int) -> tuple[Any, Any] | None:
    """`training.fit.early_stopping_fold` on rows held on the cluster: the last 30 % of
    the as_of dates validate, the inner rows are those whose label window closes before
    them; None when either side would hold fewer than 5 dropouts."""
    from dask.base import compute

    dates = np.sort(train["as_of"].unique().compute().to_numpy())
    if len(dates) < EARLY_STOPPING_MIN_DATES:
        return None
    first_valid = pd.Timestamp(dates[int(len(dates) * (1 - EARLY_STOPPING_SHARE))])
    gap = pd.Timedelta(days=horizon_days)
    inner = train[train["as_of"] + gap <= first_valid]
    valid = train[train["as_of"] >= first_valid]
    inner_pos, valid_pos = compute(inner["label"].sum(), valid["label"].sum())  # type: ignore[no-untyped-call]
    if inner_pos < EARLY_STOPPING_MIN_POSITIVES or valid_pos < EARLY_STOPPING_MIN_POSITIVES:
        return None
    return inner, valid


def _margins(part: pd.DataFrame, booster: Any, names: list[str]) -> pd.DataFrame:
    out = part.loc[:, ["as_of", "student_id", "label"]].reset_index(drop=True)
    X = part.loc[:, names].astype(np.float64)
    out["margin"] = booster.predict(X, raw_score=True) if len(part) else np.zeros(0)
    return out


def fit_models_dask(prepared: DaskPrepared, config: TrainingConfig, *, client: Any) -> FittedModels:
    """`training.fit.fit_models` with LightGBM on the cluster (see the module docstring)."""
    from dask.base import compute

    contract = prepared.contract
    names = list(contract.feature_names)
    overrides = dict(config.gbm or {})
    patience = config.early_stopping_rounds
    every = max(1, patience // 20)
    started = time.perf_counter()

    def fit(rows: Any, extra: dict[str, Any] | None = None) -> Any:
        return fit_lightgbm_dask(
            rows,
            feature_names=names,
            client=client,
            monotone=contract.monotone,
            seed=config.seed,
            overrides={**overrides, **(extra or {})},
        )

    fold = early_stopping_fold_dask(prepared.train, horizon_days=contract.horizon_days)
    if fold is not None:
        inner, valid = fold
        probe = fit(inner)
        trees, curve = validation_curve_dask(probe, valid, feature_names=names, every=every)
        n_trees = max(10, best_n_trees(trees, curve, patience=patience))
        booster = fit(prepared.train, {"n_estimators": n_trees})
    else:
        probe = fit(prepared.train)
        trees, curve = validation_curve_dask(
            probe, prepared.calibration, feature_names=names, every=every
        )
        n_trees = best_n_trees(trees, curve, patience=patience)
        booster = truncate(probe, n_trees)
    logger.info(
        "lightgbm.dask: %d trees chosen of at most %d", n_trees, default_n_estimators(overrides)
    )
    calibration = gather(prepared.calibration, _margins, booster, names)
    calibration = calibration.sort_values(["as_of", "student_id"], kind="stable")
    calibrator = fit_calibrator(
        MarginModel().fit(calibration),
        calibration.loc[:, ["margin"]].reset_index(drop=True),
        calibration["label"].to_numpy(),
        order=calibration["as_of"].to_numpy(),
    )
    fit_seconds = time.perf_counter() - started
    n_train, positives = compute(prepared.train.shape[0], prepared.train["label"].sum())  # type: ignore[no-untyped-call]
    share = min(1.0, BASELINE_SAMPLE_ROWS / max(int(n_train), 1))
    sample_rows = prepared.train.loc[:, ["as_of", "student_id", "label", *names]]
    if share < 1.0:
        sample_rows = sample_rows.sample(frac=share, random_state=config.seed)
    sample = sample_rows.compute().sort_values(["as_of", "student_id"], kind="stable")
    logger.info("baselines fitted on %d of %d training rows", len(sample), n_train)
    params = dask_classifier_params(
        names,
        positives=int(positives),
        negatives=int(n_train) - int(positives),
        monotone=contract.monotone,
        seed=config.seed,
        overrides={**overrides, "n_estimators": n_trees},
    )
    return FittedModels(
        risk_model=RiskModel.from_parts(booster, calibrator, contract),
        baselines=fit_baselines(
            sample.loc[:, names].astype(np.float64), sample["label"].to_numpy(), seed=config.seed
        ),
        best_iteration=int(booster.num_trees()),
        fit_seconds=fit_seconds,
        params={k: v for k, v in params.items() if v is not None},
    )


def _test_scores(part: pd.DataFrame, fitted: FittedModels) -> pd.DataFrame | None:
    """`score_frame` on one partition's test rows, with its group columns (None for a
    partition without test rows: LightGBM refuses to predict on none)."""
    if part.empty:
        return None
    return carried_groups(score_frame(fitted, part.reset_index(drop=True)), part)


def _candidate_scores(part: pd.DataFrame, model: Any) -> pd.DataFrame:
    scored = part.loc[:, IDS].reset_index(drop=True)
    scored["candidate"] = model.risk_scores(part) if len(part) else np.zeros(0)
    return scored


def evaluate_dask(prepared: DaskPrepared, fitted: FittedModels, config: TrainingConfig) -> Outcome:
    """Score the test rows on the cluster, then evaluate and audit the narrow scores here
    (`training.pipeline.audit_scores`, as in memory)."""
    from dask.base import compute

    raw = gather(prepared.test, _test_scores, fitted)
    raw = raw.sort_values(["as_of", "student_id"], kind="stable").reset_index(drop=True)
    scores, evaluation, audit = audit_scores(raw, capacity_share=config.capacity_share)
    n_train, train_pos, n_cal = compute(  # type: ignore[no-untyped-call]
        prepared.train.shape[0], prepared.train["label"].sum(), prepared.calibration.shape[0]
    )
    return outcome_of(
        fitted,
        scores,
        evaluation,
        audit,
        n_train=int(n_train),
        n_calibration=int(n_cal),
        train_positive=int(train_pos),
    )


def sample_test_rows(prepared: DaskPrepared, *, n_rows: int, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` labelled test rows drawn on the cluster (all when there are fewer)."""
    share = min(1.0, rows / max(n_rows, 1))
    frame = prepared.test if share >= 1.0 else prepared.test.sample(frac=share, random_state=seed)
    sample: pd.DataFrame = frame.compute()
    return sample.sort_values(["as_of", "student_id"], kind="stable").reset_index(drop=True)


def export_digest(export_dir: Path) -> str:
    """A short content hash of an export's files (names and bytes, read in 1 MiB chunks,
    so no table is held in memory). Unlike `features.tables.fingerprint` it depends on
    the file format and row order; Dask runs log it with the tag
    ``baoxue.fingerprint_kind = files``."""
    digest = hashlib.sha256()
    root = Path(export_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(str(relative.as_posix()).encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def run_experiment_dask(
    export_dir: Path,
    config: TrainingConfig,
    *,
    store: track.Store,
    client: Any,
    parts_dir: Path,
    schools_per_partition: int,
    on_step: StepCallback = noop,
) -> TrainResult:
    """`training.pipeline.run_experiment` on the cluster of `client`: split the export
    into `parts_dir`, build and label per partition, fit with `lightgbm.dask`, evaluate,
    audit, log, register and set the alias as the in-memory run does."""
    from features.distributed import partition_export

    started = time.perf_counter()
    on_step(f"splitting the export into partitions of {schools_per_partition} schools")
    partitions = partition_export(
        Path(export_dir), Path(parts_dir), schools_per_partition=schools_per_partition
    )
    prepared = prepare_dask(parts_dir, partitions, config, client=client, on_step=on_step)
    on_step("fitting LightGBM on the cluster (lightgbm.dask) and the baselines")
    fitted = fit_models_dask(prepared, config, client=client)
    on_step("scoring the test window on the cluster")
    outcome = evaluate_dask(prepared, fitted, config)
    sample = sample_test_rows(
        prepared, n_rows=outcome.n_rows["test"], rows=SHAP_SAMPLE_ROWS, seed=config.seed
    )

    def champion_precision(model: Any) -> float:
        # a champion whose contract does not fit raises ContractMismatch on the worker,
        # which reaches `_choose_alias` here as in memory
        scored = gather(prepared.test, _candidate_scores, model)
        return precision_at_k_scored(scored, config.capacity_share)

    return log_and_register(
        outcome,
        config,
        store=store,
        split=prepared.split,
        contract=prepared.contract,
        snapshot_columns=prepared.columns,
        test_sample=sample,
        champion_precision=champion_precision,
        digest=export_digest(Path(export_dir)),
        started=started,
        on_step=on_step,
        tags={
            "baoxue.backend": "dask",
            "baoxue.fingerprint_kind": "files",
            "baoxue.partitions": str(len(partitions)),
        },
    )
