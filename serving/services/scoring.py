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
from models.contract import CONTRIBUTION_PREFIX, N_REASONS, REASON_FIELDS
from models.explain import Reason
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
    "ladder_levels",
    "score_snapshot",
    "scored_students",
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


def _column(snapshot: pd.DataFrame, name: str) -> np.ndarray:
    if name not in snapshot.columns:
        return np.full(len(snapshot), np.nan)
    return snapshot[name].to_numpy(dtype=np.float64, na_value=np.nan)


def _reasons(scored: pd.DataFrame) -> list[tuple[Reason, ...]]:
    """The reasons of each row of `RiskModel.score`'s frame (empty where not explained)."""
    columns = {
        (k, name): scored[f"reason_{k + 1}_{name}"].tolist()
        for k in range(N_REASONS)
        for name, _, _ in REASON_FIELDS
    }
    out: list[tuple[Reason, ...]] = []
    for i, explained in enumerate(scored["explained"].tolist()):
        reasons: list[Reason] = []
        for k in range(N_REASONS) if explained else ():
            group = columns[(k, "group")][i]
            if not isinstance(group, str):  # None or NaN (a string column's missing)
                break
            reasons.append(
                Reason(
                    group=group,
                    reason_code=columns[(k, "code")][i],
                    feature=columns[(k, "feature")][i],
                    value=columns[(k, "value")][i],
                    contribution=columns[(k, "contribution")][i],
                )
            )
        out.append(tuple(reasons))
    return out


def _ladders(snapshot: pd.DataFrame) -> list[LadderAlert | None]:
    """The written ladder's alert for each snapshot row (None without one)."""
    escalation = _column(snapshot, "escalation_level")
    runs = _column(snapshot, "unexcused_run")
    # ladder_alert is None unless the level or the run is at least 1 (NaN counts as 0):
    # ask it only for those, a few percent of a county.
    alerted = (np.nan_to_num(escalation) >= 1) | (np.nan_to_num(runs) >= 1)
    return [
        ladder_alert(escalation[i], runs[i]) if alert else None
        for i, alert in enumerate(alerted.tolist())
    ]


def ladder_levels(snapshot: pd.DataFrame) -> list[int]:
    """The written ladder's level of each snapshot row (0 without an alert)."""
    return [alert.level if alert else 0 for alert in _ladders(snapshot)]


def scored_students(
    loaded: LoadedModel, snapshot: pd.DataFrame, scored: pd.DataFrame
) -> list[ScoredStudent]:
    """`RiskModel.score`'s rows as `ScoredStudent`s, in row order: reasons rendered,
    actions suggested for the explained rows, the ladder's alert from the snapshot's
    absence run for every row. `snapshot` and `scored` are aligned row by row."""
    snapshot = snapshot.reset_index(drop=True)
    explained = scored["explained"].to_numpy(dtype=bool)
    groups = [c for c in scored.columns if str(c).startswith(CONTRIBUTION_PREFIX)]
    group_names = [str(c)[len(CONTRIBUTION_PREFIX) :] for c in groups]
    group_values = scored.loc[explained, groups].to_numpy(dtype=np.float64).tolist()
    group_rows = dict(zip(np.flatnonzero(explained).tolist(), group_values, strict=True))
    reasons = _reasons(scored)
    grade_levels = _column(snapshot, "grade_level")
    ladders = _ladders(snapshot)
    as_ofs = pd.to_datetime(snapshot["as_of"]).dt.date.tolist()
    grades = np.where(np.isfinite(grade_levels), grade_levels, 0).astype(np.int64).tolist()
    out: list[ScoredStudent] = []
    # Plain lists: iterating Arrow-backed string columns costs ~25 us a value.
    for i, (student_id, school_id, class_id, risk, margin, base_value) in enumerate(
        zip(
            snapshot["student_id"].astype(str).tolist(),
            snapshot["school_id"].astype(str).tolist(),
            snapshot["class_id"].astype(str).tolist(),
            scored["risk_score"].to_numpy(dtype=np.float64).tolist(),
            scored["margin"].to_numpy(dtype=np.float64).tolist(),
            scored["base_value"].to_numpy(dtype=np.float64).tolist(),
            strict=True,
        )
    ):
        contributions: dict[str, float] = {}
        actions: tuple[Action, ...] = ()
        if i in group_rows:
            contributions = dict(zip(group_names, group_rows[i], strict=True))
            grade = int(grade_levels[i]) if np.isfinite(grade_levels[i]) else None
            actions = tuple(
                suggest_actions(reasons[i], grade_level=grade, values=reason_values(reasons[i]))
            )
        out.append(
            ScoredStudent(
                student_id=student_id,
                as_of=as_ofs[i],
                school_id=school_id,
                class_id=class_id,
                grade_level=grades[i],
                risk_score=risk,
                margin=margin,
                base_value=base_value,
                reasons=tuple(render(r) for r in reasons[i]),
                actions=actions,
                ladder=ladders[i],
                model_version=loaded.version,
                contributions=contributions,
            )
        )
    return out


def score_snapshot(
    loaded: LoadedModel, snapshot: pd.DataFrame, *, explain: bool | Collection[str] = True
) -> list[ScoredStudent]:
    """Score every row of a snapshot (`features.snapshot.build_snapshot`), in row order.

    Parameters
    ----------
    loaded : the champion (`serving.registry.load_champion`)
    snapshot : snapshot rows (schema `features.schemas` snapshot); the model checks them
        against its contract and catalog version
    explain : True explains everyone, False no one, a collection of student_ids only them

    Raises
    ------
    models.contract.ContractMismatch
        when the snapshot lacks a feature or has another catalog version (names them).
    """
    scored = loaded.model.score(snapshot, explain=explain, catalog_version=CATALOG_VERSION)
    out = scored_students(loaded, snapshot, scored)
    logger.info(
        "scored %d students (%d explained) with model version %s",
        len(out),
        int(scored["explained"].sum()),
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
