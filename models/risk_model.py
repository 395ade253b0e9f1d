"""RiskModel: the whole scoring step as one MLflow pyfunc.

What the registry holds is not a bare booster but: the feature contract, the LightGBM
booster (as text), the calibrator (as JSON) and the explainer settings. `predict` takes a
snapshot frame (`features.snapshot.build_snapshot`), checks it against the contract, and
returns one row per student with the calibrated `risk_score`, its `rank`, the raw margin
and the top reasons (reason group, reason_code, feature, value, contribution).

Logged "from code": MLflow executes `models/risk_model_entry.py` at load time, which
imports this class from the installed package and hands MLflow a fresh instance (so the
loaded object *is* a `models.risk_model.RiskModel`, not a copy of the class defined by
re-executing this file); `load_context` rebuilds everything from the artifacts, so
nothing is unpickled. Reasons come from the uncalibrated booster's log-odds SHAP values;
calibration is monotone, so the order of students agrees.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from models.calibration import Calibrator
from models.contract import (
    CONTRIBUTION_PREFIX,
    N_REASONS,
    PASS_THROUGH,
    REASON_FIELDS,
    FeatureContract,
)
from models.explain import (
    contributions,
    group_contributions,
    threads_for,
    top_reasons,
)

ARTIFACT_BOOSTER = "booster"
ARTIFACT_CALIBRATION = "calibration"
ARTIFACT_CONTRACT = "contract"


class RiskModel(PythonModel):
    """Snapshot in, calibrated risk and reasons out.

    Build it from fitted parts (`RiskModel.from_parts`) in process, or let MLflow build it
    from artifacts (`load_context`).
    """

    def __init__(self) -> None:
        self.booster: lgb.Booster | None = None
        self.calibrator: Calibrator | None = None
        self.contract: FeatureContract | None = None
        self._tree_explainer: Any = None

    @classmethod
    def from_parts(
        cls, booster: lgb.Booster, calibrator: Calibrator, contract: FeatureContract
    ) -> RiskModel:
        model = cls()
        model.booster, model.calibrator, model.contract = booster, calibrator, contract
        return model

    @classmethod
    def from_dir(cls, folder: Path) -> RiskModel:
        """Load from a folder holding the three artifacts (the service's cache)."""
        return cls.from_parts(
            lgb.Booster(model_file=str(folder / "booster.txt")),
            Calibrator.from_json((folder / "calibration.json").read_text(encoding="utf-8")),
            FeatureContract.from_json((folder / "contract.json").read_text(encoding="utf-8")),
        )

    def save_parts(self, folder: Path) -> dict[str, str]:
        """Write the three artifacts into `folder`; return the MLflow artifacts mapping."""
        assert self.booster and self.calibrator and self.contract
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "booster.txt"))
        (folder / "calibration.json").write_text(self.calibrator.to_json(), encoding="utf-8")
        (folder / "contract.json").write_text(self.contract.to_json(), encoding="utf-8")
        return {
            ARTIFACT_BOOSTER: str(folder / "booster.txt"),
            ARTIFACT_CALIBRATION: str(folder / "calibration.json"),
            ARTIFACT_CONTRACT: str(folder / "contract.json"),
        }

    # -- MLflow hooks ----------------------------------------------------------------

    def load_context(self, context: Any) -> None:
        artifacts = context.artifacts
        self.booster = lgb.Booster(model_file=artifacts[ARTIFACT_BOOSTER])
        self.calibrator = Calibrator.from_json(
            Path(artifacts[ARTIFACT_CALIBRATION]).read_text(encoding="utf-8")
        )
        self.contract = FeatureContract.from_json(
            Path(artifacts[ARTIFACT_CONTRACT]).read_text(encoding="utf-8")
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        explain = True if params is None else bool(params.get("explain", True))
        return self.score(model_input, explain=explain)

    # -- the scoring step ------------------------------------------------------------

    @property
    def tree_explainer(self) -> Any:
        """shap's TreeExplainer on the booster, built on first use (global plots)."""
        if self._tree_explainer is None:
            import shap

            self._tree_explainer = shap.TreeExplainer(self.booster)
        return self._tree_explainer

    def margin(self, snapshot: pd.DataFrame) -> np.ndarray:
        assert self.booster and self.contract
        X = self.contract.matrix(snapshot)
        return np.asarray(
            self.booster.predict(X, raw_score=True, **threads_for(len(X))), dtype=np.float64
        )

    def risk_scores(self, snapshot: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of dropout within the horizon, one per row."""
        assert self.calibrator
        return np.asarray(
            np.clip(self.calibrator.apply(self.margin(snapshot)), 0.0, 1.0), dtype=np.float64
        )

    def explain(self, snapshot: pd.DataFrame) -> tuple[np.ndarray, list[list[Any]]]:
        """Exact SHAP contributions (n, features + 1) and the top reasons per row."""
        assert self.booster and self.contract
        X = self.contract.matrix(snapshot)
        contrib = contributions(self.booster, X)
        reasons = top_reasons(
            X,
            contrib,
            groups=self.contract.groups,
            reason_codes=self.contract.reason_codes,
            n=N_REASONS,
        )
        return contrib, reasons

    def score(
        self,
        snapshot: pd.DataFrame,
        *,
        explain: bool | Collection[str] = True,
        catalog_version: str | None = None,
    ) -> pd.DataFrame:
        """Check the snapshot against the contract, score every row, explain those asked.

        Parameters
        ----------
        snapshot : snapshot rows (`features.snapshot.build_snapshot`)
        explain : True explains every row, False none, a collection of student_ids only
            their rows; the SHAP values are computed once, for those rows only
        catalog_version : the feature catalog the snapshot was built with; checked
            against the contract's when given (`models.contract.ContractMismatch`)

        Returns
        -------
        pd.DataFrame
            One row per snapshot row, in order: the ids of `PASS_THROUGH` present,
            ``risk_score`` (calibrated), ``margin`` (log-odds), ``rank`` (1 = riskiest,
            ties by student_id), ``base_value`` (SHAP's, the same for every row; NaN
            for an empty snapshot), ``explained`` (bool), and for explained rows the top
            `N_REASONS` reasons as ``reason_<k>_{group,code,feature,value,contribution}``
            (None/NaN past a row's last reason and on rows not explained) and each
            reason group's summed contribution as ``contribution:<group>`` (NaN on rows
            not explained): ``base_value + sum(contribution:*) == margin``.
        """
        assert self.booster and self.calibrator and self.contract
        self.contract.check(snapshot, catalog_version=catalog_version)
        X = self.contract.matrix(snapshot)
        margin = np.asarray(
            self.booster.predict(X, raw_score=True, **threads_for(len(X))), dtype=np.float64
        )
        risk = np.clip(self.calibrator.apply(margin), 0.0, 1.0)
        out = snapshot.loc[:, [c for c in PASS_THROUGH if c in snapshot.columns]].copy()
        out["risk_score"] = risk
        out["margin"] = margin
        order = np.lexsort((out["student_id"].astype(str).to_numpy(), -margin))
        rank = np.empty(len(out), dtype=np.int64)
        rank[order] = np.arange(1, len(out) + 1)
        out["rank"] = rank
        mask = _explain_mask(out, explain)
        for column, values in self._explanations(X, mask).items():
            out[column] = values
        return out.reset_index(drop=True)

    def reason_groups(self) -> list[str]:
        """The reason groups of the contract's features, sorted (``contribution:<group>``)."""
        assert self.contract
        groups = self.contract.groups
        return sorted({groups.get(name, "other") for name in self.contract.feature_names})

    def _explanations(self, X: pd.DataFrame, mask: np.ndarray) -> dict[str, Any]:
        """`score`'s explanation columns: SHAP values of the rows in `mask` (one
        `pred_contrib` call), the base value from the first of them (or from the first
        row when none is asked for)."""
        assert self.contract
        n = len(X)
        positions = np.flatnonzero(mask)
        columns: dict[str, Any] = {}
        if positions.size:
            rows = X.iloc[positions]
            contrib = contributions(self.booster, rows)  # type: ignore[arg-type]
        else:
            rows, contrib = X.iloc[:0], np.empty((0, len(X.columns) + 1))
        if positions.size:
            base = float(contrib[0, -1])
        elif n:
            base = float(contributions(self.booster, X.iloc[:1])[0, -1])  # type: ignore[arg-type]
        else:
            base = float("nan")
        base_value = np.full(n, base)
        base_value[positions] = contrib[:, -1]
        columns["base_value"] = base_value
        columns["explained"] = mask
        reasons = top_reasons(
            rows,
            contrib,
            groups=self.contract.groups,
            reason_codes=self.contract.reason_codes,
            n=N_REASONS,
        )
        at = positions.tolist()
        for k in range(N_REASONS):
            for name, attribute, missing in REASON_FIELDS:
                column = np.full(n, missing, dtype=object if missing is None else np.float64)
                for i, student_reasons in zip(at, reasons, strict=True):
                    if len(student_reasons) > k:
                        column[i] = getattr(student_reasons[k], attribute)
                columns[f"reason_{k + 1}_{name}"] = column
        grouped = group_contributions(contrib, self.contract.feature_names, self.contract.groups)
        for group in self.reason_groups():
            column = np.full(n, np.nan)
            if group in grouped.columns:
                column[positions] = grouped[group].to_numpy(dtype=np.float64)
            columns[CONTRIBUTION_PREFIX + group] = column
        return columns


def _explain_mask(scored: pd.DataFrame, explain: bool | Collection[str]) -> np.ndarray:
    if explain is True:
        return np.ones(len(scored), dtype=bool)
    if explain is False:
        return np.zeros(len(scored), dtype=bool)
    wanted = {str(s) for s in explain}
    return np.asarray(scored["student_id"].astype(str).isin(wanted).to_numpy(), dtype=bool)
