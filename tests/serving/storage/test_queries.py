"""Query functions on a real, migrated SQLite file."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from features.tables import INTERVENTION_KINDS, OUTCOMES, ROLES
from serving.storage import queries as q
from serving.storage.tables import Intervention, WeeklyScore

WEEK1 = dt.date(2024, 3, 4)
WEEK2 = dt.date(2024, 3, 11)
WEEK3 = dt.date(2024, 3, 18)


def score(student_id: str, risk_score: float, school_id: str = "A", **extra) -> q.WeeklyScoreIn:
    values = {
        "student_id": student_id,
        "school_id": school_id,
        "class_id": f"{school_id}-1",
        "grade_level": 7,
        "risk_score": risk_score,
        "margin": 0.25,
        "rank_in_school": 1,
        "tier": "high" if risk_score > 0.5 else "low",
        "escalation_level": 0,
        "reasons": [
            {
                "group": "attendance",
                "reason_code": "ABSENCE_STREAK",
                "feature": "absence_streak",
                "value": 3,
                "contribution": 0.8,
            }
        ],
    }
    return q.WeeklyScoreIn.model_validate(values | extra)


def run_week(sessions, as_of: dt.date, rows, model_version: str = "v1") -> q.RunRow:
    """The batch's documented pattern: start, then scores and finish in one transaction."""
    with sessions.begin() as session:
        run = q.start_run(session, as_of=as_of, model_version=model_version)
    try:
        with sessions.begin() as session:
            q.save_weekly_scores(session, run.id, rows)
            return q.finish_run(session, run.id)
    except Exception:
        with sessions.begin() as session:
            q.fail_run(session, run.id)
        raise


def stored(sessions, as_of: dt.date) -> dict[str, float]:
    with sessions() as session:
        return {r.student_id: r.risk_score for r in q.scores_for(session, as_of)}


# -- runs and weekly scores -------------------------------------------------------------


def test_a_run_records_its_start_finish_and_count(db_sessions) -> None:
    run = run_week(db_sessions, WEEK1, [score("S1", 0.9), score("S2", 0.1)])
    assert run.status == "done" and run.n_students == 2 and run.as_of == WEEK1
    assert run.finished_at is not None and run.finished_at >= run.started_at
    with db_sessions() as session:
        assert q.latest_run(session) == run
        assert q.get_run(session, run.id) == run


def test_scores_come_back_riskiest_first_with_their_reasons(db_sessions) -> None:
    run_week(
        db_sessions,
        WEEK1,
        [score("S3", 0.4), score("S1", 0.9), score("S2", 0.4), score("B1", 0.7, school_id="B")],
    )
    with db_sessions() as session:
        rows = q.scores_for(session, WEEK1)
        assert [r.student_id for r in rows] == ["S1", "B1", "S2", "S3"]
        assert [r.student_id for r in q.scores_for(session, WEEK1, school_id="B")] == ["B1"]
        in_class = q.scores_for(session, WEEK1, school_id="A", class_id="A-1")
        assert [r.student_id for r in in_class] == ["S1", "S2", "S3"]
        assert q.scores_for(session, WEEK2) == []
    first = rows[0]
    assert first.model_version == "v1" and first.as_of == WEEK1 and first.tier == "high"
    assert first.reasons[0].reason_code == "ABSENCE_STREAK"
    assert first.reasons[0].contribution == pytest.approx(0.8)


def test_latest_and_previous_as_of(db_sessions) -> None:
    with db_sessions() as session:
        assert q.latest_as_of(session) is None
    run_week(db_sessions, WEEK1, [score("S1", 0.9), score("B1", 0.2, school_id="B")])
    run_week(db_sessions, WEEK2, [score("S1", 0.8)])
    run_week(db_sessions, WEEK3, [score("S1", 0.7)])
    with db_sessions() as session:
        assert q.latest_as_of(session) == WEEK3
        assert q.latest_as_of(session, school_id="B") == WEEK1
        assert q.latest_as_of(session, school_id="C") is None
        assert q.previous_as_of(session, WEEK3) == WEEK2
        assert q.previous_as_of(session, WEEK1) is None
        assert q.previous_as_of(session, WEEK3, school_id="B") == WEEK1


def test_score_for_and_history_of_one_student(db_sessions) -> None:
    run_week(db_sessions, WEEK2, [score("S1", 0.8), score("S2", 0.3)])
    run_week(db_sessions, WEEK1, [score("S1", 0.6)])
    with db_sessions() as session:
        history = q.score_history(session, "S1")
        assert [(r.as_of, r.risk_score) for r in history] == [(WEEK1, 0.6), (WEEK2, 0.8)]
        assert q.score_for(session, WEEK2, "S2").risk_score == pytest.approx(0.3)
        assert q.score_for(session, WEEK1, "S2") is None
        assert q.score_history(session, "nobody") == []


def test_rerunning_a_week_replaces_that_week_only(db_sessions) -> None:
    run_week(db_sessions, WEEK1, [score("S1", 0.9), score("S2", 0.2)])
    run_week(db_sessions, WEEK2, [score("S1", 0.8), score("S2", 0.3), score("S3", 0.1)])
    run_week(db_sessions, WEEK2, [score("S1", 0.5)], model_version="v2")
    assert stored(db_sessions, WEEK1) == {"S1": 0.9, "S2": 0.2}
    assert stored(db_sessions, WEEK2) == {"S1": 0.5}
    with db_sessions() as session:
        assert q.scores_for(session, WEEK2)[0].model_version == "v2"


def test_a_run_failing_mid_way_leaves_the_previous_scores_intact(db_sessions) -> None:
    run_week(db_sessions, WEEK1, [score("S1", 0.9), score("S2", 0.2)])
    before = stored(db_sessions, WEEK1)

    def rows_then_crash() -> Iterator[q.WeeklyScoreIn]:
        yield from (score(f"N{i}", 0.5) for i in range(q.INSERT_CHUNK + 10))
        raise RuntimeError("the model crashed mid-way")

    with pytest.raises(RuntimeError, match="mid-way"):
        run_week(db_sessions, WEEK1, rows_then_crash())
    assert stored(db_sessions, WEEK1) == before
    with db_sessions() as session:
        assert q.latest_run(session, status=None).status == "failed"
        assert q.latest_run(session).n_students == 2


def test_a_failing_insert_rolls_back_the_whole_week(db_sessions) -> None:
    run_week(db_sessions, WEEK1, [score("S1", 0.9)])
    with pytest.raises(IntegrityError):
        run_week(db_sessions, WEEK1, [score("S7", 0.4), score("S8", 0.3), score("S7", 0.2)])
    assert stored(db_sessions, WEEK1) == {"S1": 0.9}


def test_scores_cannot_be_saved_into_a_finished_run(db_sessions) -> None:
    run = run_week(db_sessions, WEEK1, [score("S1", 0.9)])
    with db_sessions() as session, pytest.raises(q.RunNotRunning):
        q.save_weekly_scores(session, run.id, [score("S2", 0.1)])
    with db_sessions() as session, pytest.raises(q.RecordNotFound):
        q.finish_run(session, 12345)


@pytest.mark.parametrize(
    "bad",
    [
        {"tier": "urgent"},
        {"risk_score": 1.5},
        {"grade_level": 10},
        {"rank_in_school": 0},
        {"margin": float("nan")},
        {"student_id": ""},
    ],
)
def test_bad_scores_are_refused_before_the_database(bad) -> None:
    with pytest.raises(ValidationError):
        q.WeeklyScoreIn.model_validate(score("S1", 0.5).model_dump() | bad)


def test_a_missing_reason_value_is_stored_as_null(db_sessions) -> None:
    reason = {"group": "g", "reason_code": "R", "feature": "f", "value": float("nan")}
    run_week(db_sessions, WEEK1, [score("S1", 0.9, reasons=[reason | {"contribution": 0.1}])])
    with db_sessions() as session:
        assert q.score_for(session, WEEK1, "S1").reasons[0].value is None


# -- interventions ----------------------------------------------------------------------


def visit(student_id: str, on: dt.date, kind: str = "home_visit", **extra) -> q.InterventionIn:
    values = {
        "student_id": student_id,
        "school_id": "A",
        "class_id": "A-1",
        "date": on,
        "kind": kind,
        "by_role": "homeroom_teacher",
        "outcome": "contacted",
        "note": "grandmother at home; father works in Dongguan",
    }
    return q.InterventionIn.model_validate(values | extra)


def test_interventions_are_stored_and_listed_newest_first(db_sessions) -> None:
    with db_sessions.begin() as session:
        q.add_intervention(session, visit("S1", WEEK1), recorded_by=None)
        q.add_intervention(session, visit("S1", WEEK2, kind="phone_call"), recorded_by=None)
        q.add_intervention(session, visit("S2", WEEK2), recorded_by=None)
    with db_sessions() as session:
        rows = q.interventions_for(session, "S1")
    assert [(r.date, r.kind) for r in rows] == [(WEEK2, "phone_call"), (WEEK1, "home_visit")]
    assert rows[0].note.startswith("grandmother") and rows[0].created_at.tzinfo == dt.UTC


def test_every_code_of_the_data_contract_is_accepted_by_the_database(db_sessions) -> None:
    codes = [
        {"kind": kind, "by_role": ROLES[i % len(ROLES)], "outcome": OUTCOMES[i % len(OUTCOMES)]}
        for i, kind in enumerate(INTERVENTION_KINDS)
    ]
    codes += [{"by_role": r} for r in ROLES] + [{"outcome": o} for o in OUTCOMES]
    with db_sessions.begin() as session:
        for extra in codes:
            q.add_intervention(session, visit("S1", WEEK1, **extra), recorded_by=None)
    with db_sessions() as session:
        assert len(q.interventions_for(session, "S1")) == len(codes)


def test_the_database_refuses_an_unknown_code_even_past_validation(db_sessions) -> None:
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(
            Intervention(
                student_id="S1",
                school_id="A",
                date=WEEK1,
                kind="bribe",
                by_role="county",
                outcome="other",
            )
        )
    with pytest.raises(ValidationError):
        visit("S1", WEEK1, kind="bribe")


def test_visits_this_term_counts_home_visits_since_term_start(db_sessions) -> None:
    term_start = dt.date(2024, 2, 26)
    with db_sessions.begin() as session:
        for student_id, on, kind in [
            ("S1", WEEK1, "home_visit"),
            ("S1", WEEK2, "home_visit"),
            ("S1", WEEK2, "phone_call"),  # not a visit
            ("S2", dt.date(2024, 1, 10), "home_visit"),  # last term
            ("S2", WEEK3, "home_visit"),
            ("S9", WEEK1, "home_visit"),  # not asked about
        ]:
            q.add_intervention(session, visit(student_id, on, kind=kind), recorded_by=None)
    with db_sessions() as session:
        assert q.visits_this_term(session, ["S1", "S2", "S3"], term_start) == {
            "S1": 2,
            "S2": 1,
            "S3": 0,
        }
        assert q.visits_this_term(session, ["S1", "S2"], term_start, until=WEEK2) == {
            "S1": 1,
            "S2": 0,
        }
        both = q.visits_this_term(session, ["S1"], term_start, kinds=("home_visit", "phone_call"))
        assert both == {"S1": 3}
        many = [f"X{i}" for i in range(q.IN_CHUNK * 2 + 3)] + ["S1"]
        counts = q.visits_this_term(session, many, term_start)
        assert len(counts) == len(many) and counts["S1"] == 2 and sum(counts.values()) == 2


def test_two_threads_writing_interventions_lose_nothing(db_sessions) -> None:
    per_thread = 60
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(prefix: str) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with db_sessions.begin() as session:
                    q.add_intervention(session, visit(f"{prefix}{i}", WEEK1), recorded_by=None)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(p,)) for p in ("T", "U")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Intervention)) == 2 * per_thread
        ids = set(session.scalars(select(Intervention.student_id)))
    assert len(ids) == 2 * per_thread


# -- feedback and cases -----------------------------------------------------------------


def test_feedback_is_stored_and_filtered(db_sessions, db_session) -> None:
    from serving.services.users import add_user

    with db_sessions.begin() as session:
        user = add_user(session, "li.teacher", "long enough", "teacher", "A", ["A-1"])
        q.add_feedback(session, q.FeedbackIn(student_id="S1", as_of=WEEK1, kind="useful"), user.id)
        q.add_feedback(
            session,
            q.FeedbackIn(
                student_id="S1", as_of=WEEK2, kind="wrongly_flagged", comment="on sick leave"
            ),
            user.id,
        )
        q.add_feedback(session, q.FeedbackIn(student_id="S2", as_of=WEEK2, kind="useful"), user.id)
    assert [f.kind for f in q.feedback_for(db_session, student_id="S1")] == [
        "wrongly_flagged",
        "useful",
    ]
    assert {f.student_id for f in q.feedback_for(db_session, as_of=WEEK2)} == {"S1", "S2"}
    assert len(q.feedback_for(db_session, "S1", WEEK1)) == 1
    with pytest.raises(ValidationError):
        q.FeedbackIn(student_id="S1", as_of=WEEK1, kind="meh")


def test_a_case_is_opened_owned_planned_and_closed_with_its_history(db_sessions) -> None:
    from serving.services.users import add_user

    with db_sessions.begin() as session:
        head = add_user(session, "wang.head", "long enough", "school_admin", "A")
        case = q.open_case(
            session, q.CaseIn(student_id="S1", school_id="A", reason="ladder"), head.id
        )
        q.update_case(session, case.id, head.id, owner=head.id, plan="一生一策: weekly call")
    with db_sessions() as session:
        assert [c.id for c in q.cases_for(session, school_id="A")] == [case.id]
        assert q.cases_for(session, student_id="S1")[0].plan == "一生一策: weekly call"
    with db_sessions.begin() as session:
        closed = q.close_case(session, case.id, "returned", head.id, "back in class")
    assert closed.status == "returned" and closed.closed_by == head.id and closed.closed_at
    with db_sessions() as session:
        assert q.cases_for(session, school_id="A") == []
        assert len(q.cases_for(session, school_id="A", status=None)) == 1
        history = q.case_history(session, case.id)
    assert [e.kind for e in history] == ["opened", "owner_set", "plan_set", "closed"]
    assert history[-1].detail == {"status": "returned"}
    with db_sessions() as session, pytest.raises(ValueError, match="closes as"):
        q.close_case(session, case.id, "open", head.id)


def test_weekly_scores_table_keeps_one_row_per_student_and_week(db_sessions) -> None:
    run_week(db_sessions, WEEK1, [score("S1", 0.9)])
    with db_sessions() as session:
        assert session.scalar(select(func.count()).select_from(WeeklyScore)) == 1
