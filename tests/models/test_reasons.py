"""Reason codes -> actions, and the written escalation ladder."""

from __future__ import annotations

import math

import pytest

from features.catalog import CATALOG, REASON_GROUPS
from models.explain import Reason
from models.reasons import (
    ACTIONS,
    LADDER,
    MAX_ACTIONS,
    Action,
    ladder_alert,
    reason_values,
    suggest_actions,
)


def reason(code: str, feature: str, value: float = 1.0, group: str | None = None) -> Reason:
    groups = {s.reason_code: s.group for s in CATALOG}
    return Reason(group or groups.get(code, "other"), code, feature, value, 0.5)


def codes(reasons: list[Reason], grade_level: int | None = 7) -> list[str]:
    actions = suggest_actions(reasons, grade_level=grade_level, values=reason_values(reasons))
    return [a.code for a in actions]


def test_every_catalog_reason_code_and_group_has_an_action() -> None:
    for spec in CATALOG:
        assert isinstance(ACTIONS[spec.reason_code], Action), spec.reason_code
    for group in REASON_GROUPS:
        assert isinstance(ACTIONS[group], Action), group
    for action in ACTIONS.values():
        assert action.code and action.text_zh and action.text_en


def test_an_unknown_code_falls_back_to_its_group() -> None:
    extra = Reason("other", "EXTRA_SOMETHING", "extra_something", 3.0, 0.2)
    assert codes([extra]) == ["TALK_AND_COUNSEL"]


@pytest.mark.parametrize(
    ("reasons", "grade_level", "expected"),
    [
        ([reason("ABSENCE_STREAK", "unexcused_run", 2)], 7, ["HOME_VISIT"]),
        ([reason("ABSENCE_RECENT", "unexcused_30d", 6)], 3, ["HOME_VISIT"]),
        (
            [reason("TERM_START_ABSENCE", "missed_after_spring_start", 4)],
            5,
            ["TERM_START_CALL_VISIT"],
        ),
        ([reason("LEFT_BEHIND_BOTH", "left_behind_both_parents_away")], 4, ["PROXY_PARENT"]),
        ([reason("GUARDIAN_GRANDPARENTS", "guardian_grandparents")], 4, ["PROXY_PARENT"]),
        (
            [
                reason("POVERTY", "poverty_registered"),
                reason("GRADES_FALLING", "score_share_change", -0.2),
            ],
            6,
            ["SUBSIDY_AND_TUTORING"],
        ),
        ([reason("DIBAO", "dibao")], 6, ["SUBSIDY"]),
        ([reason("GRADES_LOW", "latest_score_share", 0.3)], 6, ["PEER_TUTORING"]),
        ([reason("OVER_AGE", "years_over_age", 2.0)], 9, ["VOCATIONAL_TALK"]),
        ([reason("OVER_AGE", "years_over_age", 2.0)], 8, ["VOCATIONAL_TALK"]),
        ([reason("OVER_AGE", "years_over_age", 2.0)], 5, ["TALK_AND_COUNSEL"]),
        ([reason("RETURNED_DROPOUT", "dropout_returns", 1)], 8, ["RETURNEE_CHECKIN"]),
        ([reason("DISABILITY", "disability")], 3, ["SEND_TEACHING"]),
    ],
)
def test_reasons_map_to_the_help_that_exists(
    reasons: list[Reason], grade_level: int, expected: list[str]
) -> None:
    assert codes(reasons, grade_level) == expected


def test_actions_follow_the_reasons_order_without_repeats_and_at_most_three() -> None:
    reasons = [
        reason("ABSENCE_RECENT", "unexcused_30d", 5),
        reason("ABSENCE_STREAK", "unexcused_run", 2),  # the same action again
        reason("RETURNED_DROPOUT", "dropout_returns", 1),
        reason("DISABILITY", "disability"),
        reason("GRADES_LOW", "latest_score_share", 0.2),
    ]
    assert codes(reasons) == ["HOME_VISIT", "RETURNEE_CHECKIN", "SEND_TEACHING"]
    assert len(codes(reasons)) <= MAX_ACTIONS
    assert codes([]) == []


def test_hardship_known_from_the_values_turns_grades_help_into_subsidy_and_tutoring() -> None:
    grades = [reason("GRADES_LOW", "latest_score_share", 0.3)]
    actions = suggest_actions(grades, grade_level=6, values={"tekun": 1.0})
    assert [a.code for a in actions] == ["SUBSIDY_AND_TUTORING"]


@pytest.mark.parametrize(
    ("level", "run", "expected_level", "due"),
    [
        (1, 1, 1, "today"),
        (2, 2, 2, "within_2_days"),
        (3, 3, 3, "within_1_hour"),
        (3, 7, 3, "within_1_hour"),
    ],
)
def test_ladder_follows_the_written_rules(
    level: int, run: int, expected_level: int, due: str
) -> None:
    alert = ladder_alert(level, run)
    assert alert is not None
    assert (alert.level, alert.unexcused_run, alert.due) == (expected_level, run, due)
    assert alert.action_zh == LADDER[expected_level][0]
    assert alert.action_en == LADDER[expected_level][1]


def test_level_three_is_a_suspected_dropout_reported_within_the_hour() -> None:
    alert = ladder_alert(3, 4)
    assert alert is not None
    assert "疑似辍学" in alert.action_zh and "1小时内" in alert.action_zh
    assert "乡镇" in alert.action_zh
    assert "家访" in LADDER[2][0] and "今天" in LADDER[1][0]


@pytest.mark.parametrize(("level", "run"), [(0, 0), (None, None), (math.nan, math.nan), (0, -1)])
def test_no_alert_without_an_absence_run(level: float | None, run: float | None) -> None:
    assert ladder_alert(level, run) is None


def test_level_is_derived_from_the_run_when_missing() -> None:
    alert = ladder_alert(None, 5)
    assert alert is not None and alert.level == 3 and alert.unexcused_run == 5


def _reference_actions(reasons: list[Reason], grade_level: int | None) -> list[str]:
    """The rules as first written (sets rebuilt per call), to compare the faster code with."""
    values = reason_values(reasons)
    codes = {r.reason_code for r in reasons}

    def present(name: str) -> bool:
        v = values.get(name)
        return v is not None and not math.isnan(float(v)) and float(v) > 0

    hardship = bool(codes & {"POVERTY", "DIBAO", "TEKUN", "HARDSHIP_MULTIPLE"}) or any(
        present(f) for f in ("poverty_registered", "dibao", "tekun")
    )
    share, change = values.get("latest_score_share"), values.get("score_share_change")
    weak = (
        bool(codes & {"GRADES_LOW", "GRADES_FALLING", "SUBJECTS_FAILED", "GRADES_RANK_LOW"})
        or (share is not None and not math.isnan(share) and share < 0.6)
        or (change is not None and not math.isnan(change) and change < 0)
        or present("subjects_failed_latest")
    )
    out: list[str] = []
    for r in reasons:
        code = r.reason_code
        if code in {"POVERTY", "DIBAO", "TEKUN", "HARDSHIP_MULTIPLE"} and weak:
            action = "SUBSIDY_AND_TUTORING"
        elif code in {"GRADES_LOW", "GRADES_FALLING", "SUBJECTS_FAILED", "GRADES_RANK_LOW"} and (
            hardship
        ):
            action = "SUBSIDY_AND_TUTORING"
        elif code in {"OVER_AGE", "GRADE_LEVEL", "TRANSITION_YEAR"} and (
            grade_level in (8, 9) and present("years_over_age")
        ):
            action = "VOCATIONAL_TALK"
        elif code == "LEFT_BEHIND_ONE" and present("guardian_grandparents"):
            action = "PROXY_PARENT"
        else:
            action = (ACTIONS.get(code) or ACTIONS.get(r.group) or ACTIONS["other"]).code
        if action not in out:
            out.append(action)
        if len(out) >= MAX_ACTIONS:
            break
    return out


def test_actions_equal_the_rules_as_first_written_on_many_random_students() -> None:
    import random

    rng = random.Random(8)
    specs = list(CATALOG)
    extra = Reason("other", "EXTRA_SOMETHING", "extra_something", 3.0, 0.2)
    for _ in range(3000):
        chosen = rng.sample(specs, rng.randint(1, 4))
        reasons = [
            Reason(
                s.group,
                s.reason_code,
                s.name,
                rng.choice([0.0, 1.0, 0.3, 0.59, 0.8, -0.1, math.nan, 3.0]),
                0.5,
            )
            for s in chosen
        ] + ([extra] if rng.random() < 0.1 else [])
        grade = rng.choice([None, 1, 6, 7, 8, 9])
        assert codes(reasons, grade) == _reference_actions(reasons, grade), reasons
