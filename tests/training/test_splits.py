"""Temporal splits: hand-made calendars and the no-leak law as hypothesis properties."""

from __future__ import annotations

import datetime as dt
from dataclasses import FrozenInstanceError

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.splits import Split, rolling_splits, temporal_split, weekly_as_ofs

D = dt.date
WEEK = dt.timedelta(days=7)


def weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    days = pd.bdate_range(first, last)
    return [d.date() for d in days]


def mondays(first: dt.date, n: int) -> list[dt.date]:
    return [first + i * WEEK for i in range(n)]


# --- weekly_as_ofs -------------------------------------------------------------------


def test_weekly_as_ofs_skip_the_breaks() -> None:
    # autumn term to mid-January, winter break, spring term from late February
    school_days = weekdays(D(2024, 9, 2), D(2025, 1, 17)) + weekdays(D(2025, 2, 17), D(2025, 3, 14))
    as_ofs = weekly_as_ofs(school_days)
    assert as_ofs[0] == D(2024, 9, 2)
    assert all(d.weekday() == 0 for d in as_ofs)
    assert D(2025, 1, 13) in as_ofs
    assert not [d for d in as_ofs if D(2025, 1, 18) <= d < D(2025, 2, 17)]
    assert as_ofs[-1] == D(2025, 3, 10)
    assert len(as_ofs) == 20 + 4


def test_weekly_as_ofs_week_with_a_single_school_day_counts() -> None:
    # term starts on a Thursday: the Monday of that week is an as_of
    assert weekly_as_ofs([D(2024, 9, 5), D(2024, 9, 6)]) == [D(2024, 9, 2)]
    # a Sunday as_of (weekday 6) covers the following Sunday..Saturday
    assert weekly_as_ofs([D(2024, 9, 5)], weekday=6) == [D(2024, 9, 1)]


def test_weekly_as_ofs_spacing_and_range() -> None:
    school_days = weekdays(D(2024, 9, 2), D(2024, 11, 29))
    every_other = weekly_as_ofs(school_days, every_days=14)
    assert every_other[:3] == [D(2024, 9, 2), D(2024, 9, 16), D(2024, 9, 30)]
    ranged = weekly_as_ofs(school_days, start=D(2024, 9, 10), end=D(2024, 9, 30))
    assert ranged == [D(2024, 9, 16), D(2024, 9, 23), D(2024, 9, 30)]
    assert weekly_as_ofs([]) == []
    timestamps = [pd.Timestamp(d) for d in school_days]
    assert weekly_as_ofs(timestamps) == weekly_as_ofs(school_days)
    with pytest.raises(ValueError, match="multiple of 7"):
        weekly_as_ofs(school_days, every_days=10)
    with pytest.raises(ValueError, match="weekday"):
        weekly_as_ofs(school_days, weekday=7)


# --- Split and temporal_split ---------------------------------------------------------


def test_temporal_split_by_hand() -> None:
    as_ofs = mondays(D(2024, 1, 1), 30)  # 2024-01-01 .. 2024-07-22
    split = temporal_split(
        as_ofs, horizon=dt.timedelta(days=28), test_from=D(2024, 6, 3), calibration_weeks=4
    )
    # calibration windows must close by 06-03: last one is 05-06 (05-06 + 28 = 06-03)
    assert split.calibration_as_ofs == (
        D(2024, 4, 15),
        D(2024, 4, 22),
        D(2024, 4, 29),
        D(2024, 5, 6),
    )
    # train windows must close by 04-15: last one is 03-18
    assert split.train_as_ofs[0] == D(2024, 1, 1)
    assert split.train_as_ofs[-1] == D(2024, 3, 18)
    assert split.test_as_ofs[0] == D(2024, 6, 3)
    assert split.test_as_ofs[-1] == D(2024, 7, 22)
    assert "horizon 28 days" in split.describe()

    bounded = temporal_split(
        as_ofs, horizon=dt.timedelta(days=28), test_from=D(2024, 6, 3), test_to=D(2024, 6, 17)
    )
    assert bounded.test_as_ofs == (D(2024, 6, 3), D(2024, 6, 10), D(2024, 6, 17))
    assert len(bounded.calibration_as_ofs) == 8


def test_temporal_split_says_what_is_missing() -> None:
    as_ofs = mondays(D(2024, 1, 1), 10)
    with pytest.raises(ValueError, match="no as_of dates left for train"):
        temporal_split(as_ofs, horizon=dt.timedelta(days=28), test_from=D(2024, 2, 26))
    with pytest.raises(ValueError, match="for test"):
        temporal_split(as_ofs, horizon=dt.timedelta(days=7), test_from=D(2025, 1, 1))


def test_split_refuses_leaks_and_empty_parts() -> None:
    horizon = dt.timedelta(days=14)
    ok = Split(
        train_as_ofs=(D(2024, 1, 1),),
        calibration_as_ofs=(D(2024, 1, 15),),  # 01-01 + 14 days = 01-15: closes just in time
        test_as_ofs=(D(2024, 1, 29),),
        horizon=horizon,
    )
    assert ok.train_as_ofs == (D(2024, 1, 1),)
    with pytest.raises(ValueError, match="past the first calibration as_of 2024-01-14"):
        Split((D(2024, 1, 1),), (D(2024, 1, 14),), (D(2024, 2, 1),), horizon)
    with pytest.raises(ValueError, match="past the first test as_of"):
        Split((D(2024, 1, 1),), (D(2024, 1, 15),), (D(2024, 1, 28),), horizon)
    with pytest.raises(ValueError, match="no calibration as_of"):
        Split((D(2024, 1, 1),), (), (D(2024, 1, 28),), horizon)
    with pytest.raises(ValueError, match="strictly increasing"):
        Split((D(2024, 1, 8), D(2024, 1, 1)), (D(2024, 2, 1),), (D(2024, 3, 1),), horizon)
    with pytest.raises(ValueError, match="horizon must be positive"):
        Split((D(2024, 1, 1),), (D(2024, 2, 1),), (D(2024, 3, 1),), dt.timedelta(0))
    with pytest.raises(FrozenInstanceError):  # no field can change after the checks ran
        ok.horizon = dt.timedelta(days=1)  # type: ignore[misc]


def test_split_turns_timestamps_into_dates() -> None:
    split = Split(
        (pd.Timestamp("2024-01-01"),),
        (pd.Timestamp("2024-02-01"),),
        (pd.Timestamp("2024-03-01"),),
        dt.timedelta(days=7),
    )
    assert type(split.train_as_ofs[0]) is dt.date


def test_rolling_splits_slide_forward() -> None:
    as_ofs = mondays(D(2023, 9, 4), 60)
    folds = rolling_splits(
        as_ofs, horizon=dt.timedelta(days=28), n_folds=3, test_weeks=4, calibration_weeks=4
    )
    assert len(folds) == 3
    assert [f.test_as_ofs for f in folds] == [
        tuple(as_ofs[48:52]),
        tuple(as_ofs[52:56]),
        tuple(as_ofs[56:60]),
    ]
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert later.calibration_as_ofs[0] > earlier.calibration_as_ofs[0]
        assert len(later.train_as_ofs) > len(earlier.train_as_ofs)
    with pytest.raises(ValueError, match="Fold 1 of 12"):
        rolling_splits(
            as_ofs, horizon=dt.timedelta(days=28), n_folds=12, test_weeks=4, calibration_weeks=8
        )
    with pytest.raises(ValueError, match="need 80"):
        rolling_splits(
            as_ofs, horizon=dt.timedelta(days=28), n_folds=20, test_weeks=4, calibration_weeks=8
        )


# --- properties ------------------------------------------------------------------------

dates = st.dates(min_value=D(2020, 1, 1), max_value=D(2024, 12, 31))
date_sets = st.lists(dates, min_size=1, max_size=60)
horizons = st.integers(min_value=1, max_value=120).map(lambda d: dt.timedelta(days=d))


def assert_no_leak(split: Split) -> None:
    train, calibration, test = split.train_as_ofs, split.calibration_as_ofs, split.test_as_ofs
    assert train and calibration and test
    # parts are time-ordered and therefore disjoint
    assert max(train) < min(calibration) <= max(calibration) < min(test)
    assert not (set(train) | set(calibration)) & set(test)
    assert not set(train) & set(calibration)
    # no training or calibration label window reaches a test date ...
    for t in train + calibration:
        assert t + split.horizon <= min(test)
    # ... and no training window reaches a calibration date
    for t in train:
        assert t + split.horizon <= min(calibration)
    for part in (train, calibration, test):
        assert list(part) == sorted(set(part))


@settings(max_examples=200, deadline=None)
@given(
    as_ofs=date_sets,
    horizon=horizons,
    test_from=dates,
    test_span=st.none() | st.integers(min_value=0, max_value=400),
    calibration_weeks=st.integers(min_value=1, max_value=10),
)
def test_temporal_split_never_leaks(
    as_ofs: list[dt.date],
    horizon: dt.timedelta,
    test_from: dt.date,
    test_span: int | None,
    calibration_weeks: int,
) -> None:
    test_to = None if test_span is None else test_from + dt.timedelta(days=test_span)
    try:
        split = temporal_split(
            as_ofs,
            horizon=horizon,
            test_from=test_from,
            test_to=test_to,
            calibration_weeks=calibration_weeks,
        )
    except ValueError as error:
        assert "no as_of dates left" in str(error)
        return
    assert_no_leak(split)
    assert len(split.calibration_as_ofs) <= calibration_weeks
    assert set(split.test_as_ofs) == {
        d for d in as_ofs if d >= test_from and (test_to is None or d <= test_to)
    }
    assert set(split.train_as_ofs) | set(split.calibration_as_ofs) | set(split.test_as_ofs) <= set(
        as_ofs
    )


@st.composite
def foldable_calendars(draw: st.DrawFn) -> tuple[list[dt.date], dt.timedelta, int, int, int]:
    """as_of dates (irregular gaps) with enough history before the test blocks that every
    fold has training and calibration dates: the last `n_folds * test_weeks` dates are the
    test blocks; before the first of them, at least `calibration_weeks` dates whose label
    windows close in time, and a training date a horizon before those; plus stray dates
    anywhere before the test blocks, which the split may have to leave out."""
    horizon = draw(horizons)
    n_folds = draw(st.integers(min_value=1, max_value=4))
    test_weeks = draw(st.integers(min_value=1, max_value=6))
    calibration_weeks = draw(st.integers(min_value=1, max_value=6))
    gaps = st.integers(min_value=1, max_value=21).map(lambda d: dt.timedelta(days=d))
    first_test = draw(dates)
    tests = [first_test]
    for gap in draw(
        st.lists(gaps, min_size=n_folds * test_weeks - 1, max_size=n_folds * test_weeks - 1)
    ):
        tests.append(tests[-1] + gap)
    # the calibration candidates of fold 1: their windows close on or before first_test
    calibration = [first_test - horizon - draw(gaps) + dt.timedelta(days=1)]
    for gap in draw(st.lists(gaps, min_size=calibration_weeks - 1, max_size=calibration_weeks + 3)):
        calibration.insert(0, calibration[0] - gap)
    train = [calibration[0] - horizon - draw(gaps) + dt.timedelta(days=1)]
    for gap in draw(st.lists(gaps, max_size=10)):
        train.insert(0, train[0] - gap)
    stray = draw(
        st.lists(
            st.dates(min_value=train[0], max_value=first_test - dt.timedelta(days=1)), max_size=10
        )
    )
    as_ofs = train + calibration + stray + tests
    return draw(st.permutations(as_ofs)), horizon, n_folds, test_weeks, calibration_weeks


@settings(max_examples=100, deadline=None)
@given(calendar=foldable_calendars())
def test_rolling_splits_never_leak(
    calendar: tuple[list[dt.date], dt.timedelta, int, int, int],
) -> None:
    as_ofs, horizon, n_folds, test_weeks, calibration_weeks = calendar
    folds = rolling_splits(
        as_ofs,
        horizon=horizon,
        n_folds=n_folds,
        test_weeks=test_weeks,
        calibration_weeks=calibration_weeks,
    )
    assert len(folds) == n_folds
    tested = [d for fold in folds for d in fold.test_as_ofs]
    assert tested == sorted(set(as_ofs))[-n_folds * test_weeks :]
    for fold in folds:
        assert_no_leak(fold)
        assert len(fold.test_as_ofs) == test_weeks
        assert len(fold.calibration_as_ofs) == calibration_weeks
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert max(earlier.test_as_ofs) < min(later.test_as_ofs)


@settings(max_examples=100, deadline=None)
@given(
    as_ofs=st.lists(dates, min_size=1, max_size=80),
    horizon=horizons,
    n_folds=st.integers(min_value=1, max_value=4),
    test_weeks=st.integers(min_value=1, max_value=6),
    calibration_weeks=st.integers(min_value=1, max_value=6),
)
def test_rolling_splits_on_any_calendar_leak_nothing_or_say_why(
    as_ofs: list[dt.date],
    horizon: dt.timedelta,
    n_folds: int,
    test_weeks: int,
    calibration_weeks: int,
) -> None:
    try:
        folds = rolling_splits(
            as_ofs,
            horizon=horizon,
            n_folds=n_folds,
            test_weeks=test_weeks,
            calibration_weeks=calibration_weeks,
        )
    except ValueError as error:  # too few dates, said in one of these two ways
        message = str(error)
        assert (
            message.startswith("Fold ")
            and "no as_of dates left for" in message
            or ("test dates need" in message and "as_of dates; only" in message)
        ), message
        return
    for fold in folds:
        assert_no_leak(fold)


@settings(max_examples=300, deadline=None)
@given(
    train=st.lists(dates, min_size=0, max_size=5, unique=True).map(sorted),
    calibration=st.lists(dates, min_size=0, max_size=5, unique=True).map(sorted),
    test=st.lists(dates, min_size=0, max_size=5, unique=True).map(sorted),
    horizon=horizons,
)
def test_split_is_built_exactly_when_nothing_leaks(
    train: list[dt.date],
    calibration: list[dt.date],
    test: list[dt.date],
    horizon: dt.timedelta,
) -> None:
    lawful = (
        bool(train and calibration and test)
        and max(train) + horizon <= min(calibration)
        and max(calibration) + horizon <= min(test)
    )
    if lawful:
        assert_no_leak(Split(tuple(train), tuple(calibration), tuple(test), horizon))
    else:
        with pytest.raises(ValueError):
            Split(tuple(train), tuple(calibration), tuple(test), horizon)
