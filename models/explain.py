"""SHAP contributions -> per-student reasons, grouped the way a teacher thinks.

LightGBM's `pred_contrib` gives exact TreeSHAP values in log-odds (the same numbers as
shap's TreeExplainer on the booster, computed in C++ without copying the model). Each
row's contributions plus the base value add up to the model's raw margin. Contributions
are summed into the catalog's reason groups (attendance, grades, family hardship, ...),
the groups ranked by how much they raise the risk, and each group is voiced by its
strongest feature, with the student's own value filled into the sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Reason:
    """One reason a student is on the list."""

    group: str
    reason_code: str
    feature: str
    value: float
    contribution: float  # log-odds the whole group adds to this student's margin


SMALL_BATCH = 512


def threads_for(n_rows: int) -> dict[str, Any]:
    """`booster.predict` keywords for `n_rows`: one thread for a few rows (a page or an API
    call). LightGBM's OpenMP team costs more than a few rows' work, and a server's
    concurrent requests would each start one (one row: 67 us at p99 with one thread, 8 ms
    with the default, as issue #8 measured); the weekly batch keeps every core."""
    return {"num_threads": 1} if n_rows <= SMALL_BATCH else {}


def contributions(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """TreeSHAP contributions, shape (n, n_features + 1); the last column is the base value."""
    return np.asarray(
        booster.predict(X, pred_contrib=True, **threads_for(len(X))), dtype=np.float64
    )


def group_contributions(
    contrib: np.ndarray, feature_names: Sequence[str], groups: Mapping[str, str]
) -> pd.DataFrame:
    """Sum each row's feature contributions per reason group (base value left out)."""
    names = list(feature_names)
    frame = pd.DataFrame(contrib[:, : len(names)], columns=names)
    group_of = [groups.get(n, "other") for n in names]
    return frame.T.groupby(group_of, sort=True).sum().T


def _is_present(value: float, feature: str) -> bool:
    """A 0/absent value of an indicator cannot voice a reason ('not boarding')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return not (value == 0 and not feature.endswith(("_share", "_pct", "_percentile")))


def top_reasons(
    X: pd.DataFrame,
    contrib: np.ndarray,
    *,
    groups: Mapping[str, str],
    reason_codes: Mapping[str, str],
    n: int = 3,
) -> list[list[Reason]]:
    """Up to `n` reasons per row: the groups that raise the risk most, each voiced by its
    strongest risk-raising feature whose value is present."""
    names = list(X.columns)
    values = X.to_numpy(dtype=np.float64)
    feat = contrib[:, : len(names)]
    group_of = np.array([groups.get(c, "other") for c in names])
    unique_groups = sorted(set(group_of.tolist()))
    group_idx = {g: np.flatnonzero(group_of == g) for g in unique_groups}
    sums = np.column_stack([feat[:, group_idx[g]].sum(axis=1) for g in unique_groups])
    result: list[list[Reason]] = []
    for i in range(len(X)):
        reasons: list[Reason] = []
        for gi in np.argsort(-sums[i], kind="stable"):
            if sums[i, gi] <= 0 or len(reasons) >= n:
                break
            members = group_idx[unique_groups[gi]]
            order = members[np.argsort(-feat[i, members], kind="stable")]
            for j in order:
                if feat[i, j] <= 0:
                    break
                if _is_present(values[i, j], names[j]):
                    reasons.append(
                        Reason(
                            group=unique_groups[gi],
                            reason_code=reason_codes.get(names[j], names[j].upper()),
                            feature=names[j],
                            value=float(values[i, j]),
                            contribution=float(sums[i, gi]),
                        )
                    )
                    break
        result.append(reasons)
    return result
