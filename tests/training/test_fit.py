"""Fitting on hand-made frames: the early-stopping fold and the Optuna search."""

import numpy as np
import pandas as pd

from models.contract import FeatureContract
from training.fit import early_stopping_fold, fit_models
from training.matrices import SplitFrames


def frames(n_weeks: int = 30, per_week: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2024-09-02", periods=n_weeks, freq="7D")
    rows = []
    for w in weeks:
        absences = rng.poisson(0.5, per_week)
        p = 1 / (1 + np.exp(-(-5 + 0.9 * absences)))
        rows.append(
            pd.DataFrame(
                {
                    "student_id": [f"S{i:04d}" for i in range(per_week)],
                    "as_of": w,
                    "school_id": "A",
                    "class_id": "A1",
                    "unexcused_run": np.minimum(absences, 3),
                    "unexcused_30d": absences,
                    "hardship_count": rng.integers(0, 3, per_week),
                    "label": (rng.random(per_week) < p).astype(int),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


CONTRACT = FeatureContract(
    feature_names=("unexcused_run", "unexcused_30d", "hardship_count"),
    groups={
        "unexcused_run": "attendance",
        "unexcused_30d": "attendance",
        "hardship_count": "family_hardship",
    },
    reason_codes={
        "unexcused_run": "ABSENCE_STREAK",
        "unexcused_30d": "ABSENCE_RECENT",
        "hardship_count": "HARDSHIP",
    },
    catalog_version="test",
    horizon_days=28,
)


def test_early_stopping_fold_keeps_a_horizon_gap():
    frame = frames()
    inner, valid = early_stopping_fold(frame, horizon_days=28)
    assert inner is not None and valid is not None
    gap = valid["as_of"].min() - inner["as_of"].max()
    assert gap >= pd.Timedelta(days=28)


def test_early_stopping_fold_refuses_without_dropouts():
    frame = frames()
    frame["label"] = 0
    assert early_stopping_fold(frame, horizon_days=28) == (None, None)


def test_optuna_search_runs_within_its_budget_and_is_used():
    frame = frames()
    train = frame[frame["as_of"] < "2025-02-01"]
    cal = frame[frame["as_of"] >= "2025-03-01"]
    split = SplitFrames(train=train, calibration=cal, test=cal)
    fitted = fit_models(split, contract=CONTRACT, seed=1, tune_seconds=4)
    searched = {"num_leaves", "min_child_samples", "learning_rate", "reg_lambda"}
    assert searched <= set(fitted.params)
    assert 0 < fitted.risk_model.risk_scores(cal).mean() < 1
