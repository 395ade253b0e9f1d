"""The weekly schedule as pure functions of the clock."""

from __future__ import annotations

import datetime as dt

import pytest

from serving.scheduler import is_due, last_slot, next_slot, week_as_of

CST = dt.timezone(dt.timedelta(hours=8))
MON, SUN = 0, 6


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in the week of Monday 2024-03-11, China time."""
    return dt.datetime(2024, 3, 11 + day, hour, minute, tzinfo=CST)


def test_the_last_slot_is_this_weeks_once_it_has_passed():
    assert last_slot(at(MON, 6), MON, 6) == at(MON, 6)
    assert last_slot(at(MON, 5, 59), MON, 6) == at(MON, 6) - dt.timedelta(days=7)
    assert last_slot(at(3, 12), MON, 6) == at(MON, 6)
    assert last_slot(at(SUN, 23), SUN, 22) == at(SUN, 22)
    assert next_slot(at(3, 12), MON, 6) == at(MON, 6) + dt.timedelta(days=7)


@pytest.mark.parametrize(
    ("now", "last_started", "due"),
    [
        (at(MON, 5), None, True),  # never ran: catch up with last week's slot
        (at(MON, 5), at(MON, 6) - dt.timedelta(days=7, minutes=-1), False),  # ran last week
        (at(MON, 6), at(MON, 6) - dt.timedelta(days=7, minutes=-1), True),  # the slot came
        (at(MON, 6, 1), at(MON, 6), False),  # this week's run started
        (at(3, 9), at(MON, 6) - dt.timedelta(days=1), True),  # missed while down: catch up
        (at(SUN, 23), at(MON, 6, 5), False),  # nothing until next Monday
        # another zone for the last start, same instant rules
        (at(MON, 7), (at(MON, 6) + dt.timedelta(minutes=5)).astimezone(dt.UTC), False),
    ],
)
def test_a_run_is_due_when_none_started_since_the_last_slot(now, last_started, due):
    assert is_due(now, MON, 6, last_started) is due


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        is_due(dt.datetime(2024, 3, 11, 6), MON, 6, None)


def test_the_weeks_as_of_is_its_monday():
    assert week_as_of(dt.date(2024, 3, 11)) == dt.date(2024, 3, 11)
    assert week_as_of(dt.date(2024, 3, 17)) == dt.date(2024, 3, 11)


def test_a_weekly_slot_purges_old_records_even_when_the_week_fails(db_sessions, tmp_path):
    """Retention runs with the scheduled batch too (not only after `baoxue score`): a week
    that cannot run (no export, no model) still blanks old notes and old audit rows."""
    from serving.scheduler import WeeklyScheduler
    from serving.settings import Settings
    from tests.serving.services.test_retention import OLD, RECENT, seed

    seed(db_sessions)
    settings = Settings.model_validate(
        {
            "paths": {"home": str(tmp_path / "home"), "data": str(tmp_path / "no-export")},
            "serving": {"weekly_run_weekday": 0},
            "retention": {"years": 3},
        }
    )
    reloads: list[int] = []
    scheduler = WeeklyScheduler(
        settings,
        db_sessions,
        lambda: reloads.append(1),
        clock=lambda: dt.datetime(2026, 11, 23, 9, tzinfo=CST),
    )
    scheduler.run_once(dt.date(2026, 11, 23))  # fails: nothing to score
    assert reloads == [1]
    from sqlalchemy import select

    from serving.audit import recent_access
    from serving.storage.tables import Intervention

    with db_sessions() as session:
        notes = {v.date: v.note for v in session.scalars(select(Intervention))}
        assert notes == {OLD: None, RECENT: "recent note"}
        assert [a.at.date() for a in recent_access(session)] == [RECENT]
