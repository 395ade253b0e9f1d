"""Reason codes -> what a teacher can do about them, and the written escalation ladder.

Pure: no I/O, no clock. Two independent outputs for a scored student:

* `suggest_actions` turns the model's top reasons (ranked reason groups, each voiced by a
  reason code) into at most three suggested actions, drawn only from help that exists in
  these schools (DOMAIN.md, "What help exists"): home visit (家访), phone call, proxy
  parent (代理家长), subsidies (资助, 两免一补), one-to-one peer tutoring (一帮一),
  counselling (心理辅导), home-delivered teaching (送教上门), vocational school (职业中学)
  and a weekly check-in by the named responsible adult (包保责任人).
* `ladder_alert` applies the written ladder (1 day unexcused: contact the family today;
  2 days: home visit; 3 days: suspected dropout, report within the hour). It depends only
  on the absence run, never on the risk score, so it fires even for a student the model
  ranks low.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Protocol

MAX_ACTIONS = 3
OVER_AGE_GRADES = (8, 9)  # junior grades where an over-age student is drawn to work
LOW_SCORE_SHARE = 0.6  # below this share of the maximum score a student is "behind"

HARDSHIP_FLAGS = ("poverty_registered", "dibao", "tekun")
HARDSHIP_CODES = ("POVERTY", "DIBAO", "TEKUN", "HARDSHIP_MULTIPLE")
GRADE_CODES = ("GRADES_LOW", "GRADES_FALLING", "SUBJECTS_FAILED", "GRADES_RANK_LOW")
_HARDSHIP_CODES = frozenset(HARDSHIP_CODES)
_GRADE_CODES = frozenset(GRADE_CODES)
_AGE_CODES = frozenset(("OVER_AGE", "GRADE_LEVEL", "TRANSITION_YEAR"))


@dataclass(frozen=True)
class Action:
    """One suggested action: a stable code and the sentence in Chinese and English."""

    code: str
    text_zh: str
    text_en: str


@dataclass(frozen=True)
class LadderAlert:
    """The written escalation ladder's instruction for a student's absence run.

    ``due`` is a stable code: ``today``, ``within_2_days`` or ``within_1_hour``.
    """

    level: int
    unexcused_run: int
    action_zh: str
    action_en: str
    due: str


class ReasonLike(Protocol):
    """What `suggest_actions` reads of a reason (`models.explain.Reason` or a rendered one)."""

    @property
    def group(self) -> str: ...

    @property
    def reason_code(self) -> str: ...

    @property
    def feature(self) -> str: ...

    @property
    def value(self) -> Any: ...


# -- the actions ------------------------------------------------------------------------

HOME_VISIT = Action(
    "HOME_VISIT",
    "2天内家访，了解缺勤原因并劝导按时到校",
    "Home visit within 2 days to find out why the student is absent",
)
TERM_START_CALL = Action(
    "TERM_START_CALL_VISIT",
    "立即电话联系家长确认是否返校，未返校的当周家访",
    "Phone the parents now to confirm the return to school; visit the home this week"
    " if the student has not returned",
)
PHONE_GUARDIAN = Action(
    "PHONE_GUARDIAN",
    "电话联系监护人，了解请假、迟到或缺考的原因",
    "Phone the guardian about the leave, late arrivals or missed exams",
)
PROXY_PARENT = Action(
    "PROXY_PARENT",
    "指定代理家长，并与在外务工的父母电话沟通",
    "Assign a proxy parent (代理家长) and phone the parents working away",
)
PHONE_PARENTS_AWAY = Action(
    "PHONE_PARENTS_AWAY",
    "与在外务工的家长电话沟通，约定定期联系",
    "Phone the parent working away and agree on regular contact",
)
PROXY_PARENT_COUNSEL = Action(
    "PROXY_PARENT_COUNSELLING",
    "指定代理家长并安排心理辅导",
    "Assign a proxy parent and arrange psychological counselling",
)
SUBSIDY_AND_TUTORING = Action(
    "SUBSIDY_AND_TUTORING",
    "落实资助政策（两免一补、生活补助），并安排一帮一结对学习帮扶",
    "Make sure the family receives its subsidies (两免一补) and pair the student with a"
    " tutor (一帮一)",
)
SUBSIDY = Action(
    "SUBSIDY",
    "核实并落实资助政策（两免一补、生活补助、营养餐）",
    "Check the family receives every subsidy it is entitled to (两免一补, living"
    " allowance, nutrition meals)",
)
SEND_TEACHING = Action(
    "SEND_TEACHING",
    "评估是否需要送教上门或随班就读支持，并联系残联",
    "Assess whether home-delivered teaching (送教上门) or in-class support is needed;"
    " contact the disabled persons' federation",
)
VOCATIONAL = Action(
    "VOCATIONAL_TALK",
    "与学生和家长谈职业中学（中职）的升学路径，劝其完成义务教育",
    "Talk with the student and parents about vocational school (职业中学) after"
    " completing compulsory education",
)
RETURNEE_CHECKIN = Action(
    "RETURNEE_CHECKIN",
    "包保责任人每周与学生谈心一次，关注是否再次辍学",
    "The responsible adult (包保责任人) checks in with the student every week",
)
PEER_TUTORING = Action(
    "PEER_TUTORING",
    "安排一帮一结对学习帮扶",
    "Pair the student with a peer tutor (一帮一)",
)
TALK = Action(
    "TALK_AND_COUNSEL",
    "班主任谈心谈话，需要时安排心理辅导",
    "The homeroom teacher talks with the student; arrange counselling if needed",
)

ACTIONS: dict[str, Action] = {
    # reason codes
    "ABSENCE_RECENT": HOME_VISIT,
    "ABSENCE_STREAK": HOME_VISIT,
    "ABSENCE_TREND": HOME_VISIT,
    "ABSENCE_TERM": HOME_VISIT,
    "ABSENCE_TERM_CHANGE": HOME_VISIT,
    "TERM_START_ABSENCE": TERM_START_CALL,
    "LEAVE_RECENT": PHONE_GUARDIAN,
    "LATE_RECENT": PHONE_GUARDIAN,
    "EXAMS_MISSED": PHONE_GUARDIAN,
    "GRADES_LOW": PEER_TUTORING,
    "GRADES_FALLING": PEER_TUTORING,
    "SUBJECTS_FAILED": PEER_TUTORING,
    "GRADES_RANK_LOW": PEER_TUTORING,
    "POVERTY": SUBSIDY,
    "DIBAO": SUBSIDY,
    "TEKUN": SUBSIDY,
    "HARDSHIP_MULTIPLE": SUBSIDY,
    "SINGLE_PARENT": PHONE_GUARDIAN,
    "ORPHAN": PROXY_PARENT_COUNSEL,
    "DISABILITY": SEND_TEACHING,
    "LEFT_BEHIND_BOTH": PROXY_PARENT,
    "GUARDIAN_GRANDPARENTS": PROXY_PARENT,
    "GUARDIAN_RELATIVES": PROXY_PARENT,
    "GUARDIAN_OTHER": PROXY_PARENT,
    "LEFT_BEHIND_ONE": PHONE_PARENTS_AWAY,
    "BOARDING": TALK,
    "MIGRANT_CHILD": TALK,
    "OVER_AGE": TALK,  # grades 8-9: VOCATIONAL (see suggest_actions)
    "GRADE_LEVEL": TALK,
    "TRANSITION_YEAR": TALK,
    "SCHOOL_CHANGE": TALK,
    "NEW_AT_SCHOOL": TALK,
    "RETURNED_DROPOUT": RETURNEE_CHECKIN,
    "PAST_DROPOUT": RETURNEE_CHECKIN,
    "SUSPENDED_BEFORE": RETURNEE_CHECKIN,
    "TRANSFERRED_IN": TALK,
    "SHORT_HISTORY": PHONE_GUARDIAN,  # few school days on record: find out where they were
    "SEX": TALK,
    # reason groups: the fallback for a code not listed (e.g. EXTRA_* attributes)
    "attendance": HOME_VISIT,
    "grades": PEER_TUTORING,
    "family_hardship": SUBSIDY,
    "left_behind_guardian": PHONE_PARENTS_AWAY,
    "transition_age": TALK,
    "history": RETURNEE_CHECKIN,
    "other": TALK,
}


def _present(values: Mapping[str, float | int | None], name: str) -> bool:
    value = values.get(name)
    if value is None:
        return False
    v = float(value)
    return not math.isnan(v) and v > 0


def _has_hardship(values: Mapping[str, float | int | None], codes: Set[str]) -> bool:
    """Family hardship: a hardship reason, or a hardship flag among the values."""
    if not _HARDSHIP_CODES.isdisjoint(codes):
        return True
    return any(_present(values, f) for f in HARDSHIP_FLAGS)


def _grades_weak(values: Mapping[str, float | int | None], codes: Set[str]) -> bool:
    """Low or falling grades: a grades reason, or the values say so."""
    if not _GRADE_CODES.isdisjoint(codes):
        return True
    share = values.get("latest_score_share")
    change = values.get("score_share_change")
    low = share is not None and not math.isnan(float(share)) and float(share) < LOW_SCORE_SHARE
    falling = change is not None and not math.isnan(float(change)) and float(change) < 0
    return low or falling or _present(values, "subjects_failed_latest")


def action_for(
    reason: ReasonLike,
    *,
    grade_level: int | None,
    values: Mapping[str, float | int | None],
    codes: Set[str],
) -> Action:
    """The action for one reason, given the student's grade, values and all reason codes."""
    code = reason.reason_code
    if code in _HARDSHIP_CODES and _grades_weak(values, codes):
        return SUBSIDY_AND_TUTORING
    if code in _GRADE_CODES and _has_hardship(values, codes):
        return SUBSIDY_AND_TUTORING
    if code in _AGE_CODES and (
        grade_level in OVER_AGE_GRADES and _present(values, "years_over_age")
    ):
        return VOCATIONAL
    if code == "LEFT_BEHIND_ONE" and _present(values, "guardian_grandparents"):
        return PROXY_PARENT
    return ACTIONS.get(code) or ACTIONS.get(reason.group) or TALK


def suggest_actions(
    reasons: Sequence[ReasonLike],
    *,
    grade_level: int | None,
    values: Mapping[str, float | int | None],
) -> list[Action]:
    """At most three actions for a student's reasons, in the reasons' order, no repeats.

    Parameters
    ----------
    reasons : the student's top reasons, strongest first (`models.explain.Reason`)
    grade_level : the student's year, 1-9 (None when unknown)
    values : the student's feature values (a snapshot row), used for the combinations:
        hardship with low or falling grades -> subsidy and tutoring; over-age in grade
        8-9 -> vocational school; one parent away with grandparents -> proxy parent.
    """
    codes = frozenset(r.reason_code for r in reasons)
    out: list[Action] = []
    for reason in reasons:
        action = action_for(reason, grade_level=grade_level, values=values, codes=codes)
        if action not in out:
            out.append(action)
        if len(out) >= MAX_ACTIONS:
            break
    return out


def reason_values(reasons: Sequence[ReasonLike]) -> dict[str, float | int | None]:
    """The reasons' own feature values, the `values` the services pass to
    `suggest_actions`: the batch, a list read back from the database and the API then
    suggest the same actions for the same reasons."""
    out: dict[str, float | int | None] = {}
    for r in reasons:
        value = r.value
        out[r.feature] = float(value) if isinstance(value, int | float) else None
    return out


# -- the written ladder -----------------------------------------------------------------

LADDER: dict[int, tuple[str, str, str]] = {
    1: (
        "旷课1天：班主任今天联系家长并报告学校",
        "1 day absent without leave: the homeroom teacher contacts the family today and"
        " reports to the school",
        "today",
    ),
    2: (
        "连续旷课2天：学校2天内家访",
        "2 days absent without leave: the school visits the home within 2 days",
        "within_2_days",
    ),
    3: (
        "连续旷课3天及以上：按疑似辍学处理，1小时内报告学校，并通知乡镇政府",
        "3 or more days absent without leave: suspected dropout (疑似辍学); report to the"
        " school within the hour and notify the township",
        "within_1_hour",
    ),
}
LADDER_MAX = max(LADDER)


def _whole(value: float | int | None) -> int:
    if value is None:
        return 0
    v = float(value)
    return 0 if math.isnan(v) else max(int(v), 0)


def ladder_alert(
    escalation_level: float | int | None, unexcused_run: float | int | None
) -> LadderAlert | None:
    """The ladder's instruction for a student's current run of unexcused absences.

    The level is ``escalation_level`` (the snapshot's ``min(unexcused_run, 3)``), or
    derived from ``unexcused_run`` when the level is missing; None at level 0.
    """
    run = _whole(unexcused_run)
    level = min(_whole(escalation_level) or run, LADDER_MAX)
    if level <= 0:
        return None
    zh, en, due = LADDER[level]
    return LadderAlert(
        level=level, unexcused_run=max(run, level), action_zh=zh, action_en=en, due=due
    )
