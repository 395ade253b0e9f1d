"""The cases service (`serving.services.cases`) on the pages' seeded database: cases open
from the ladder and the high tier, once; due times follow the ladder; overdue follow-ups;
owners, plans and 销号 with their history; scope refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from serving.auth import Forbidden, NotYourStudent, Viewer
from serving.services import cases
from serving.services.users import get_viewer
from serving.storage import queries
from tests.serving.pages.conftest import LATEST

NOW = dt.datetime(2024, 3, 11, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(client, pages_template):
    with client.app.state.sessions.begin() as session:
        yield session


@pytest.fixture
def county(db, pages_template) -> Viewer:
    return viewer(db, pages_template, "county_admin")


def viewer(session, pages_template, name: str) -> Viewer:
    return get_viewer(session, pages_template.user_ids[name])


def by_student(session, county: Viewer) -> dict[str, cases.CaseView]:
    return {v.case.student_id: v for v in cases.visible_cases(session, county, status=None)}


def test_cases_open_for_the_ladder_and_the_high_tier_once(db, county, pages_template):
    result = cases.sync_cases(db, LATEST, NOW)
    assert result.opened == 4
    opened = by_student(db, county)
    assert set(opened) == {"STU-A01", "STU-A02", "STU-A04", "STU-A07"}
    assert opened["STU-A01"].case.reason == "ladder" and opened["STU-A01"].level == 3
    assert opened["STU-A04"].level == 1
    assert opened["STU-A02"].case.reason == "high_tier" and opened["STU-A02"].level == 0
    assert opened["STU-A01"].owner_name == "teacher_c1"
    assert opened["STU-A07"].owner_name == "teacher_c2"
    assert "一生一策" in (opened["STU-A01"].case.plan or "")
    again = cases.sync_cases(db, LATEST, NOW + dt.timedelta(days=1))
    assert again.opened == 0 and len(by_student(db, county)) == 4


def test_due_times_follow_the_ladder(db, county):
    cases.sync_cases(db, LATEST, NOW)
    opened = by_student(db, county)
    assert opened["STU-A01"].due == NOW + dt.timedelta(hours=1)
    assert opened["STU-A04"].due == NOW + dt.timedelta(days=1)
    assert opened["STU-A02"].due == NOW + dt.timedelta(days=7)


def test_an_open_high_tier_case_escalates_when_the_ladder_fires(db, county):
    cases.sync_cases(db, dt.date(2024, 3, 4), NOW - dt.timedelta(days=7))
    before = by_student(db, county)
    assert "STU-A01" not in before  # not high and no alert that week
    cases.sync_cases(db, LATEST, NOW)
    assert by_student(db, county)["STU-A01"].level == 3


def test_overdue_lists_late_cases_without_a_follow_up(db, county, pages_template):
    cases.sync_cases(db, LATEST, NOW)
    late = cases.overdue(db, county, NOW + dt.timedelta(hours=2))
    assert [v.case.student_id for v in late] == ["STU-A01"]
    late = cases.overdue(db, county, NOW + dt.timedelta(days=3))
    assert [v.case.student_id for v in late] == ["STU-A01", "STU-A04"]
    queries.add_intervention(
        db,
        queries.InterventionIn(
            student_id="STU-A04",
            school_id="SCH-A",
            class_id="SCH-A-C1",
            date=NOW.date(),
            kind="phone_call",
            by_role="homeroom_teacher",
            outcome="contacted",
        ),
        recorded_by=pages_template.user_ids["teacher_c1"],
    )
    late = cases.overdue(db, county, NOW + dt.timedelta(days=3))
    assert [v.case.student_id for v in late] == ["STU-A01"]
    teacher_c2 = viewer(db, pages_template, "teacher_c2")
    assert cases.overdue(db, teacher_c2, NOW + dt.timedelta(days=30))[0].case.student_id == (
        "STU-A07"
    )


def test_county_closes_with_a_reason_and_the_history_keeps_it(db, county, pages_template):
    cases.sync_cases(db, LATEST, NOW)
    case_id = by_student(db, county)["STU-A01"].case.id
    principal = viewer(db, pages_template, "principal_a")
    cases.assign_owner(db, principal, case_id, pages_template.user_ids["teacher_c1"])
    cases.update_plan(db, principal, case_id, "一生一策：每周家访一次")
    with pytest.raises(cases.InvalidCaseChange):
        cases.close_case(db, county, case_id, "returned", "  ")
    closed = cases.close_case(db, county, case_id, "returned", "已返校上课")
    assert closed.case.status == "returned" and closed.case.close_reason == "已返校上课"
    kinds = [e.kind for e in cases.history(db, county, case_id)]
    assert kinds == ["opened", "due", "owner_set", "plan_set", "closed"]
    with pytest.raises(cases.InvalidCaseChange):
        cases.close_case(db, county, case_id, "returned", "again")
    assert cases.sync_cases(db, LATEST, NOW).opened == 0  # not reopened from older scores
    assert "STU-A01" not in {v.case.student_id for v in cases.visible_cases(db, county)}


def test_teachers_cannot_close_and_scope_is_enforced(db, county, pages_template):
    cases.sync_cases(db, LATEST, NOW)
    opened = by_student(db, county)
    teacher_c1 = viewer(db, pages_template, "teacher_c1")
    with pytest.raises(Forbidden):
        cases.close_case(db, teacher_c1, opened["STU-A01"].case.id, "returned", "back")
    with pytest.raises(Forbidden):
        cases.assign_owner(db, teacher_c1, opened["STU-A01"].case.id, teacher_c1.user_id)
    cases.update_plan(db, teacher_c1, opened["STU-A01"].case.id, "一生一策：电话")  # may edit
    with pytest.raises(NotYourStudent):
        cases.get_case(db, teacher_c1, opened["STU-A07"].case.id)
    other = Viewer(user_id=99, username="x", role="school_admin", school_id="SCH-B")
    with pytest.raises(NotYourStudent):
        cases.get_case(db, other, opened["STU-A01"].case.id)
    with pytest.raises(Forbidden):
        cases.visible_cases(db, Viewer(user_id=98, username="r", role="researcher"))
    with pytest.raises(cases.CaseNotFound):
        cases.get_case(db, county, 10_000)
    assert {v.case.student_id for v in cases.visible_cases(db, teacher_c1)} == {
        "STU-A01",
        "STU-A02",
        "STU-A04",
    }
