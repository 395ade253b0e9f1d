"""Fit LightGBM, its calibrator and the baselines on one split."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.baselines import EscalationLadderBaseline, SingleFeatureRank, make_logistic_baseline
from models.calibration import fit_calibrator
from models.contract import FeatureContract
from models.gbm import fit_classifier, make_classifier
from models.risk_model import RiskModel
from training.matrices import SplitFrames

logger = logging.getLogger(__name__)

MODEL = "lightgbm"
BASELINES = ("escalation_ladder", "hardship_count", "logistic")
# What a teacher's list actually shows: ladder alerts first (3+ days, then 2, then 1),
# then everyone else by the model's risk_score. Evaluated beside the model alone.
SERVED = "ladder_then_lightgbm"


@dataclass
class FittedModels:
    """The packaged risk model and the fitted baselines of one split."""

    risk_model: RiskModel
    baselines: dict[str, Any]
    best_iteration: int
    fit_seconds: float
    params: dict[str, Any] = field(default_factory=dict)


def _xy(frame: pd.DataFrame, features: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    return frame.loc[:, list(features)].astype(np.float64), frame["label"].to_numpy()


def fit_models(
    frames: SplitFrames,
    *,
    contract: FeatureContract,
    seed: int = 0,
    n_jobs: int = 2,
    early_stopping_rounds: int = 100,
    gbm_overrides: dict[str, Any] | None = None,
    early_stop_on_calibration: bool = False,
    tune_seconds: int = 0,
) -> FittedModels:
    """Fit LightGBM on train (early stopping on the calibration period, which lies after
    train's last label window), calibrate it on the calibration period, fit baselines on
    train. With `early_stop_on_calibration` (a cohort split, whose calibration rows are
    held-out students rather than a later period) the number of trees is chosen on the
    calibration rows directly, not on a later slice of the training period."""
    features = list(contract.feature_names)
    X_train, y_train = _xy(frames.train, features)
    X_cal, y_cal = _xy(frames.calibration, features)
    if y_train.sum() == 0:
        raise ValueError(
            "the training period holds no dropout at all; train on a longer period "
            "(an earlier --train-until needs more history before it)"
        )
    started = time.perf_counter()
    inner_train, inner_valid = (
        (None, None)
        if early_stop_on_calibration
        else early_stopping_fold(frames.train, horizon_days=contract.horizon_days)
    )

    def new_classifier(overrides: dict[str, Any]) -> Any:
        return make_classifier(
            features,
            y=y_train,
            monotone=contract.monotone,
            seed=seed,
            n_jobs=n_jobs,
            overrides=overrides,
        )

    overrides = dict(gbm_overrides or {})
    if tune_seconds > 0 and inner_train is not None and inner_valid is not None:
        overrides = {
            **overrides,
            **tune_params(
                lambda extra: new_classifier({**overrides, **extra}),
                inner_train,
                inner_valid,
                features,
                seconds=tune_seconds,
                seed=seed,
                early_stopping_rounds=early_stopping_rounds,
            ),
        }
    if inner_train is not None and inner_valid is not None:
        # Choose the number of trees on a later slice of the training period, then refit
        # on the whole period with that number.
        probe = fit_classifier(
            new_classifier(overrides),
            *_xy(inner_train, features),
            X_valid=_xy(inner_valid, features)[0],
            y_valid=_xy(inner_valid, features)[1],
            early_stopping_rounds=early_stopping_rounds,
        )
        n_trees = max(10, int(probe.best_iteration_ or probe.booster_.num_trees()))
        clf = fit_classifier(
            new_classifier({**overrides, "n_estimators": n_trees}), X_train, y_train
        )
    else:
        clf = fit_classifier(
            new_classifier(overrides),
            X_train,
            y_train,
            X_valid=X_cal,
            y_valid=y_cal,
            early_stopping_rounds=early_stopping_rounds,
        )
    calibrator = fit_calibrator(clf, X_cal, y_cal, order=frames.calibration["as_of"].to_numpy())
    fit_seconds = time.perf_counter() - started
    best = int(clf.booster_.num_trees())
    booster = clf.booster_
    return FittedModels(
        risk_model=RiskModel.from_parts(booster, calibrator, contract),
        baselines=fit_baselines(X_train, y_train, seed=seed),
        best_iteration=best,
        fit_seconds=fit_seconds,
        params={k: v for k, v in clf.get_params().items() if v is not None},
    )


def tune_params(
    make: Any,
    inner_train: pd.DataFrame,
    inner_valid: pd.DataFrame,
    features: Sequence[str],
    *,
    seconds: int,
    seed: int = 0,
    early_stopping_rounds: int = 100,
) -> dict[str, Any]:
    """Search LightGBM's tree-shape and regularisation parameters with Optuna (TPE, seeded)
    for `seconds`, by average precision on the later slice of the training period. Needs
    the optional dependency: pip install -e '.[tune]'."""
    try:
        import optuna
    except ImportError as exc:
        raise ValueError(
            "a hyper-parameter search (optuna_seconds > 0) needs Optuna: pip install -e '.[tune]'"
        ) from exc
    from sklearn.metrics import average_precision_score

    X_in, y_in = _xy(inner_train, features)
    X_va, y_va = _xy(inner_valid, features)

    def objective(trial: Any) -> float:
        # Trial 0 keeps the settings as given (no parameter suggested, so best_params is
        # {} when it wins): they are always one of the candidates.
        params = (
            {}
            if trial.number == 0
            else {
                "num_leaves": trial.suggest_int("num_leaves", 3, 31, log=True),
                "min_child_samples": trial.suggest_int("min_child_samples", 20, 2000, log=True),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
                "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 50.0, log=True),
                "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            }
        )
        clf = fit_classifier(
            make(params),
            X_in,
            y_in,
            X_valid=X_va,
            y_valid=y_va,
            early_stopping_rounds=early_stopping_rounds,
        )
        trial.set_user_attr("n_trees", int(clf.best_iteration_ or clf.booster_.num_trees()))
        proba = np.asarray(clf.predict_proba(X_va))[:, 1]
        return float(average_precision_score(y_va, proba))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, timeout=seconds, n_trials=None)
    logger.info(
        "Optuna: %d trials in %d s, best validation average precision %.4f",
        len(study.trials),
        seconds,
        study.best_value,
    )
    return dict(study.best_params)


def early_stopping_fold(
    train: pd.DataFrame, *, horizon_days: int, share: float = 0.3
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Split training rows in time for early stopping: the last `share` of the as_of dates
    validate; the inner training rows are those whose label window closes before the first
    validation as_of. (None, None) when either side would hold no dropout."""
    dates = np.sort(train["as_of"].unique())
    if len(dates) < 8:
        return None, None
    first_valid = dates[int(len(dates) * (1 - share))]
    gap = np.timedelta64(horizon_days, "D")
    inner = train.loc[train["as_of"] + gap <= first_valid]
    valid = train.loc[train["as_of"] >= first_valid]
    if inner["label"].sum() < 5 or valid["label"].sum() < 5:
        return None, None
    return inner, valid


def fit_baselines(X: pd.DataFrame, y: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """The rules a county could use today, and a logistic regression, fitted on (X, y)."""
    return {
        "escalation_ladder": EscalationLadderBaseline().fit(X, y),
        "hardship_count": SingleFeatureRank(feature="hardship_count").fit(X, y),
        "logistic": make_logistic_baseline(random_state=seed).fit(X, y),
    }


def score_frame(fitted: FittedModels, frame: pd.DataFrame) -> pd.DataFrame:
    """Ids, label and one probability column per model and baseline."""
    out = frame.loc[:, ["student_id", "as_of", "school_id", "class_id", "label"]].copy()
    out[MODEL] = fitted.risk_model.risk_scores(frame)
    X = frame.loc[:, list(fitted.risk_model.contract.feature_names)].astype(np.float64)  # type: ignore[union-attr]
    for name, estimator in fitted.baselines.items():
        out[name] = estimator.predict_proba(X)[:, 1]
    if "escalation_level" in frame.columns:
        out[SERVED] = frame["escalation_level"].to_numpy(dtype=float) + out[MODEL]
    return out
