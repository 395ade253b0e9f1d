"""Calibrate a fitted classifier on a later period, so risk_score is a probability.

Both isotonic and sigmoid (Platt) calibration are fitted with scikit-learn's
`CalibratedClassifierCV(FrozenEstimator(model))` on the earlier half of the calibration
period and compared by Brier score on the later half; the winner is refitted on the whole
period. The result is a small `Calibrator` that maps the model's raw margin (log-odds,
what scikit-learn calibrates when the model has `decision_function`, as LightGBM's
classifier does) to a calibrated probability, and serialises to JSON (no pickles in the
registry).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss

logger = logging.getLogger(__name__)

Method = Literal["isotonic", "sigmoid", "identity"]


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from the model's raw margin (log-odds) to a calibrated risk_score."""

    method: Method
    x: tuple[float, ...] = ()  # isotonic thresholds (margin)
    y: tuple[float, ...] = ()  # isotonic values
    a: float = 0.0  # sigmoid: p = 1 / (1 + exp(a * margin + b))
    b: float = 0.0
    brier: dict[str, float] = field(default_factory=dict)  # validation Brier per method

    def apply(self, margin: np.ndarray) -> np.ndarray:
        raw = np.asarray(margin, dtype=float)
        if self.method == "isotonic":
            out = np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "sigmoid":
            out = 1.0 / (1.0 + np.exp(self.a * raw + self.b))
        else:
            out = 1.0 / (1.0 + np.exp(-raw))
        return np.asarray(out, dtype=np.float64)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data: dict[str, Any] = json.loads(text)
        data["x"] = tuple(data.get("x", ()))
        data["y"] = tuple(data.get("y", ()))
        return cls(**data)


def model_margin(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The input scikit-learn's calibration sees: decision_function, else log-odds of
    predict_proba."""
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X), dtype=float)
    p = np.clip(model.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


def _fit_method(model: Any, X: pd.DataFrame, y: np.ndarray, method: str) -> Calibrator:
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method=method)
    calibrated.fit(X, y)
    inner = calibrated.calibrated_classifiers_[0].calibrators[0]
    if method == "isotonic":
        return Calibrator(
            method="isotonic",
            x=tuple(float(v) for v in inner.X_thresholds_),
            y=tuple(float(v) for v in inner.y_thresholds_),
        )
    return Calibrator(method="sigmoid", a=float(inner.a_), b=float(inner.b_))


def fit_calibrator(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    order: np.ndarray | None = None,
    method: Literal["isotonic", "sigmoid"] | None = None,
) -> Calibrator:
    """Choose isotonic or sigmoid by Brier on the later half of the calibration rows.

    Parameters
    ----------
    model : fitted classifier with predict_proba
    X, y : the calibration period's rows and labels
    order : a sort key of the rows in time (e.g. as_of); the earlier half fits, the later
        half validates. Without it, rows are taken in the given order.
    method : fit this method on every row instead of choosing (no validation Brier)
    """
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        logger.warning("calibration period has a single class; leaving probabilities as they are")
        return Calibrator(method="identity")
    if method is not None:
        return _fit_method(model, X, y, method)
    idx = np.argsort(order, kind="stable") if order is not None else np.arange(len(y))
    half = len(idx) // 2
    early, late = idx[:half], idx[half:]
    scores: dict[str, float] = {}
    if len(np.unique(y[early])) == 2 and len(np.unique(y[late])) == 2:
        for name in ("isotonic", "sigmoid"):
            candidate = _fit_method(model, X.iloc[early], y[early], name)
            raw = model_margin(model, X.iloc[late])
            scores[name] = float(brier_score_loss(y[late], candidate.apply(raw)))
        best = min(scores, key=lambda m: scores[m])
    else:
        best = "sigmoid"
    final = _fit_method(model, X, y, best)
    logger.info("calibration: %s (validation Brier %s)", best, scores)
    return Calibrator(method=final.method, x=final.x, y=final.y, a=final.a, b=final.b, brier=scores)
