"""Score students with the champion: risk, reasons a teacher can read, what to do.

The one scoring step behind both the weekly batch (`serving.services.weekly_lists`) and
the API (`POST /v1/score`, a student's page). No HTTP here: domain errors carry a
``code`` and a sentence a teacher understands, and `serving/api/errors.py` maps them.

A scored student carries the calibrated ``risk_score``, the raw ``margin`` (log-odds),
the SHAP ``base_value`` and, when explained, the per-group contributions (which add up
with the base value to the margin), the top three reasons rendered in Chinese and
English with the student's own value, up to three suggested actions
(`models.reasons.suggest_actions`) and the written ladder's alert, which depends only on
the absence run and is computed for every student, explained or not.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import CATALOG_VERSION, render_reason
from features.snapshot import build_snapshot
from features.tables import RawTables
from models.explain import Reason, group_contributions
from models.reasons import Action, LadderAlert, ladder_alert, reason_values, suggest_actions
from serving.registry import LoadedModel, NoChampionModel

logger = logging.getLogger(__name__)

__all__ = [
    "Action",
    "LadderAlert",
    "NoChampionModel",
    "ReasonOut",
    "ScoredStudent",
    "StudentNotFound",
    "render",
    "score_records",
    "score_snapshot",
]


class StudentNotFound(LookupError):
    """A student asked for is not enrolled and active on the as_of date.

    The message names no student; ``student_ids`` lists the ids asked for that were not
    found (the caller sent them, so it may echo them back).
    """

    code = "student_not_found"

    def __init__(self, message: str, student_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.student_ids = tuple(student_ids)


@dataclass(frozen=True)
class ReasonOut:
    """One reason, rendered: the group's log-odds contribution and its sentence."""

    group: str
    reason_code: str
    feature: str
    value: float
    contribution: float
    text_zh: str
    text_en: str


@dataclass(frozen=True)
class ScoredStudent:
    """One student's score for one as_of.

    ``reasons`` and ``actions`` are empty and ``contributions`` is empty when the
    student was not explained; ``ladder`` is set whenever the absence run calls for it.
    ``contributions`` maps each reason group to its summed SHAP value (log-odds):
    ``base_value + sum(contributions.values()) == margin``.
    """

    student_id: str
    as_of: dt.date
    school_id: str
    class_id: str
    grade_level: int
    risk_score: float
    margin: float
    base_value: float
    reasons: tuple[ReasonOut, ...]
    actions: tuple[Action, ...]
    ladder: LadderAlert | None
    model_version: str
    contributions: dict[str, float] = field(default_factory=dict)

    @property
    def explained(self) -> bool:
        return bool(self.contributions)


def render(reason: Reason) -> ReasonOut:
    """A model reason with its Chinese and English sentence (the student's own value)."""
    return ReasonOut(
        group=reason.group,
        reason_code=reason.reason_code,
        feature=reason.feature,
        value=reason.value,
        contribution=reason.contribution,
        text_zh=render_reason(reason.feature, reason.value, "zh"),
        text_en=render_reason(reason.feature, reason.value, "en"),
    )


def _explain_mask(snapshot: pd.DataFrame, explain: bool | Collection[str]) -> np.ndarray:
    if explain is True:
        return np.ones(len(snapshot), dtype=bool)
    if explain is False:
        return np.zeros(len(snapshot), dtype=bool)
    wanted = {str(s) for s in explain}
    return snapshot["student_id"].astype(str).isin(wanted).to_numpy()


def _column(snapshot: pd.DataFrame, name: str) -> np.ndarray:
    if name not in snapshot.columns:
        return np.full(len(snapshot), np.nan)
    return snapshot[name].to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class _Explained:
    base_value: float
    reasons: tuple[ReasonOut, ...]
    actions: tuple[Action, ...]
    contributions: dict[str, float]


def _explain_rows(
    loaded: LoadedModel, rows: pd.DataFrame, grade_levels: np.ndarray
) -> list[_Explained]:
    """Reasons, actions and group contributions for each row of `rows`."""
    model = loaded.model
    assert model.contract is not None
    contrib, reasons = model.explain(rows)
    groups = group_contributions(contrib, model.contract.feature_names, model.contract.groups)
    group_names = [str(c) for c in groups.columns]
    group_values = groups.to_numpy(dtype=np.float64)
    out: list[_Explained] = []
    for i, student_reasons in enumerate(reasons):
        grade = int(grade_levels[i]) if np.isfinite(grade_levels[i]) else None
        actions = suggest_actions(
            student_reasons, grade_level=grade, values=reason_values(student_reasons)
        )
        out.append(
            _Explained(
                base_value=float(contrib[i, -1]),
                reasons=tuple(render(r) for r in student_reasons),
                actions=tuple(actions),
                contributions=dict(zip(group_names, group_values[i].tolist(), strict=True)),
            )
        )
    return out


def _base_value(loaded: LoadedModel, snapshot: pd.DataFrame) -> float:
    """The SHAP base value (the same for every row of a tree model)."""
    if snapshot.empty:
        return float("nan")
    contrib, _ = loaded.model.explain(snapshot.iloc[:1])
    return float(contrib[0, -1])


def score_snapshot(
    loaded: LoadedModel, snapshot: pd.DataFrame, *, explain: bool | Collection[str] = True
) -> list[ScoredStudent]:
    """Score every row of a snapshot (`features.snapshot.build_snapshot`), in row order.

    Parameters
    ----------
    loaded : the champion (`serving.registry.load_champion`)
    snapshot : snapshot rows (schema `features.schemas` snapshot); checked against the
        model's contract and catalog version
    explain : True explains everyone, False no one, a collection of student_ids only them

    Raises
    ------
    models.contract.ContractMismatch
        when the snapshot lacks a feature or has another catalog version (names them).
    """
    model = loaded.model
    assert model.contract is not None
    model.contract.check(snapshot, catalog_version=CATALOG_VERSION)
    snapshot = snapshot.reset_index(drop=True)
    scored = model.score(snapshot, explain=False)
    mask = _explain_mask(snapshot, explain)
    grade_levels = _column(snapshot, "grade_level")
    explained: dict[int, _Explained] = {}
    if mask.any():
        positions = np.flatnonzero(mask)
        rows = _explain_rows(loaded, snapshot.iloc[positions], grade_levels[positions])
        explained = dict(zip(positions.tolist(), rows, strict=True))
    base_value = (
        next(iter(explained.values())).base_value if explained else _base_value(loaded, snapshot)
    )
    escalation = _column(snapshot, "escalation_level")
    runs = _column(snapshot, "unexcused_run")
    # ladder_alert is None unless the level or the run is at least 1 (NaN counts as 0):
    # ask it only for those, a few percent of a county.
    alerted = (np.nan_to_num(escalation) >= 1) | (np.nan_to_num(runs) >= 1)
    as_ofs = pd.to_datetime(snapshot["as_of"]).dt.date.tolist()
    grades = np.where(np.isfinite(grade_levels), grade_levels, 0).astype(np.int64).tolist()
    out: list[ScoredStudent] = []
    # Plain lists: iterating Arrow-backed string columns costs ~25 us a value.
    for i, (student_id, school_id, class_id, risk, margin) in enumerate(
        zip(
            snapshot["student_id"].astype(str).tolist(),
            snapshot["school_id"].astype(str).tolist(),
            snapshot["class_id"].astype(str).tolist(),
            scored["risk_score"].to_numpy(dtype=np.float64).tolist(),
            scored["margin"].to_numpy(dtype=np.float64).tolist(),
            strict=True,
        )
    ):
        extra = explained.get(i)
        out.append(
            ScoredStudent(
                student_id=student_id,
                as_of=as_ofs[i],
                school_id=school_id,
                class_id=class_id,
                grade_level=grades[i],
                risk_score=risk,
                margin=margin,
                base_value=extra.base_value if extra else base_value,
                reasons=extra.reasons if extra else (),
                actions=extra.actions if extra else (),
                ladder=ladder_alert(escalation[i], runs[i]) if alerted[i] else None,
                model_version=loaded.version,
                contributions=extra.contributions if extra else {},
            )
        )
    logger.info(
        "scored %d students (%d explained) with model version %s",
        len(out),
        len(explained),
        loaded.version,
    )
    return out


def score_records(
    loaded: LoadedModel,
    tables: RawTables,
    *,
    as_of: dt.date,
    student_ids: Sequence[str] | None = None,
) -> list[ScoredStudent]:
    """Score pushed records (the contract's raw tables) as of a date, with reasons.

    Builds the snapshot from `tables` exactly as the weekly batch does, so a student's
    score here equals the batch's for the same records and as_of. With `student_ids`,
    returns those students (in that order, explained); otherwise everyone enrolled.

    Raises
    ------
    StudentNotFound
        when an id in `student_ids` is not enrolled and active on `as_of`.
    features.validation.InputTableError, models.contract.ContractMismatch
        for records or features that do not fit.
    """
    snapshot = build_snapshot(tables, as_of=as_of)
    if student_ids is None:
        return score_snapshot(loaded, snapshot, explain=True)
    wanted = list(dict.fromkeys(str(s) for s in student_ids))
    enrolled = set(snapshot["student_id"].astype(str))
    missing = [s for s in wanted if s not in enrolled]
    if missing:
        raise StudentNotFound(
            f"{len(missing)} of the students asked for are not enrolled on {as_of.isoformat()}"
            " in the records sent.",
            missing,
        )
    rows = snapshot[snapshot["student_id"].astype(str).isin(set(wanted))]
    by_id = {s.student_id: s for s in score_snapshot(loaded, rows, explain=True)}
    return [by_id[s] for s in wanted]


def to_dict(student: ScoredStudent) -> dict[str, Any]:
    """A JSON-ready dict of a scored student (dates as ISO text)."""
    from dataclasses import asdict

    data = asdict(student)
    data["as_of"] = student.as_of.isoformat()
    return data
