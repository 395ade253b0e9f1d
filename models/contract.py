"""FeatureContract: what a fitted model expects of a snapshot.

The contract travels with the model (as `contract.json` in the registry) so that a model
never scores a snapshot built by different feature code without saying so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# The scoring contract's output columns (`models.risk_model.RiskModel.score`), here so that
# serving can read them without importing the model (and MLflow with it).
N_REASONS = 3
PASS_THROUGH = ("student_id", "as_of", "school_id", "class_id")  # copied from the snapshot
CONTRIBUTION_PREFIX = "contribution:"  # a reason group's summed SHAP value, per row
# reason_<k>_<column>: (column, `models.explain.Reason` attribute, value when absent)
REASON_FIELDS: tuple[tuple[str, str, float | None], ...] = (
    ("group", "group", None),
    ("code", "reason_code", None),
    ("feature", "feature", None),
    ("value", "value", float("nan")),
    ("contribution", "contribution", float("nan")),
)


class ContractMismatch(ValueError):
    """A snapshot does not match the model's feature contract."""

    def __init__(self, missing: Sequence[str], changed: Sequence[str], catalog: str | None):
        self.missing = list(missing)
        self.changed = list(changed)
        parts = []
        if catalog:
            parts.append(catalog)
        if self.missing:
            parts.append(f"missing features: {', '.join(self.missing)}")
        if self.changed:
            parts.append(f"features with a non-numeric type: {', '.join(self.changed)}")
        super().__init__(
            "the data does not match the model's feature contract: " + "; ".join(parts)
        )


@dataclass(frozen=True)
class FeatureContract:
    """Names, order, groups and reason codes of the model's features.

    Attributes
    ----------
    feature_names : the model's input columns, in order
    groups : feature -> reason group (catalog)
    reason_codes : feature -> reason_code (catalog)
    monotone : feature -> +1/-1/0 (catalog hint used for LightGBM)
    catalog_version : the feature catalog version the model was trained with
    horizon_days : label horizon the model predicts
    """

    feature_names: tuple[str, ...]
    groups: dict[str, str]
    reason_codes: dict[str, str]
    catalog_version: str
    horizon_days: int
    monotone: dict[str, int] = field(default_factory=dict)

    def check(self, snapshot: pd.DataFrame, *, catalog_version: str | None = None) -> None:
        """Raise ContractMismatch naming every missing or non-numeric feature."""
        missing = [f for f in self.feature_names if f not in snapshot.columns]
        changed = [
            f
            for f in self.feature_names
            if f in snapshot.columns
            and not (
                pd.api.types.is_numeric_dtype(snapshot[f])
                or pd.api.types.is_bool_dtype(snapshot[f])
            )
        ]
        catalog = None
        if catalog_version is not None and catalog_version != self.catalog_version:
            catalog = (
                f"feature catalog version {catalog_version} differs from the model's "
                f"{self.catalog_version}"
            )
        if missing or changed or catalog:
            raise ContractMismatch(missing, changed, catalog)

    def matrix(self, snapshot: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: the contract's columns in order, as float64."""
        self.check(snapshot)
        return snapshot.loc[:, list(self.feature_names)].astype(np.float64)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> FeatureContract:
        data: dict[str, Any] = json.loads(text)
        data["feature_names"] = tuple(data["feature_names"])
        return cls(**data)
