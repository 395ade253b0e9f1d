"""Temporal train / calibration / test splits, computed from dates alone.

Like triage's timechop, nothing here reads data: a split is a set of `as_of` dates and a
label `horizon`. The one law every split obeys: the label window ``[t, t + horizon)`` of a
training `as_of` closes on or before the first calibration `as_of`, and the window of a
calibration `as_of` closes on or before the first test `as_of`. So no outcome a model is
fitted or calibrated on can happen after the day it is tested on. `Split` refuses to be
built otherwise.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


def _as_date(value: dt.date) -> dt.date:
    """A plain `datetime.date` from a date, datetime or pandas Timestamp."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"Expected a date, got {type(value).__name__}.")


def _sorted_dates(values: Iterable[dt.date]) -> list[dt.date]:
    return sorted({_as_date(v) for v in values})


def _describe(as_ofs: Sequence[dt.date]) -> str:
    if not as_ofs:
        return "no as_of dates"
    return f"{len(as_ofs)} as_of dates, {as_ofs[0].isoformat()} .. {as_ofs[-1].isoformat()}"


def weekly_as_ofs(
    school_days: Sequence[dt.date],
    *,
    every_days: int = 7,
    weekday: int = 0,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[dt.date]:
    """One `as_of` per week that has school in it, on a fixed weekday.

    Candidates are the dates with the given `weekday` spaced `every_days` apart, starting
    from the one on or before the first school day. A candidate ``t`` is kept when at least
    one school day falls in ``[t, t + 7 days)``, so no `as_of` lands in the summer or winter
    break, and when it lies in ``[start, end]``.

    Parameters
    ----------
    school_days : sequence of datetime.date
        School days (the ``calendar`` table's dates; the union over schools is fine).
    every_days : int, default 7
        Spacing of candidates in days; a positive multiple of 7 (14 = every other week).
    weekday : int, default 0
        Day of the week of each `as_of`, Monday = 0 .. Sunday = 6.
    start, end : datetime.date, optional
        Keep only `as_of` dates in ``[start, end]`` (both inclusive).

    Returns
    -------
    list of datetime.date
        Increasing `as_of` dates.

    Examples
    --------
    >>> import datetime as dt
    >>> days = [dt.date(2024, 9, 2) + dt.timedelta(days=i) for i in range(12)]
    >>> weekly_as_ofs(days)
    [datetime.date(2024, 9, 2), datetime.date(2024, 9, 9)]
    """
    if every_days <= 0 or every_days % 7:
        raise ValueError(f"every_days must be a positive multiple of 7; got {every_days}.")
    if not 0 <= weekday <= 6:
        raise ValueError(f"weekday must be 0 (Monday) .. 6 (Sunday); got {weekday}.")
    days = _sorted_dates(school_days)
    if not days:
        return []
    first = days[0] - dt.timedelta(days=(days[0].weekday() - weekday) % 7)
    week = dt.timedelta(days=7)
    step = dt.timedelta(days=every_days)
    day_set = set(days)
    as_ofs: list[dt.date] = []
    t = first
    while t <= days[-1]:
        in_range = (start is None or t >= start) and (end is None or t <= end)
        if in_range and any(t + dt.timedelta(days=i) in day_set for i in range(week.days)):
            as_ofs.append(t)
        t += step
    logger.debug("weekly_as_ofs: %s", _describe(as_ofs))
    return as_ofs


@dataclass(frozen=True)
class Split:
    """One temporal split: train, calibration and test `as_of` dates and the horizon.

    Parameters
    ----------
    train_as_ofs, calibration_as_ofs, test_as_ofs : tuple of datetime.date
        Strictly increasing, non-empty. Datetimes and Timestamps are turned into dates.
    horizon : datetime.timedelta
        Length of each label window ``[as_of, as_of + horizon)``; positive.

    Raises
    ------
    ValueError
        When a part is empty or not strictly increasing, the horizon is not positive, a
        training label window reaches the first calibration `as_of`, or a calibration
        label window reaches the first test `as_of`.
    """

    train_as_ofs: tuple[dt.date, ...]
    calibration_as_ofs: tuple[dt.date, ...]
    test_as_ofs: tuple[dt.date, ...]
    horizon: dt.timedelta

    def __post_init__(self) -> None:
        if self.horizon <= dt.timedelta(0):
            raise ValueError(f"The label horizon must be positive; got {self.horizon}.")
        _normalise_parts(self)
        last_train_end = self.train_as_ofs[-1] + self.horizon
        if last_train_end > self.calibration_as_ofs[0]:
            raise ValueError(
                f"The label window of train as_of {self.train_as_ofs[-1].isoformat()} runs to "
                f"{last_train_end.isoformat()} (exclusive), past the first calibration as_of "
                f"{self.calibration_as_ofs[0].isoformat()}: training would see outcomes from "
                "the calibration period."
            )
        last_calibration_end = self.calibration_as_ofs[-1] + self.horizon
        if last_calibration_end > self.test_as_ofs[0]:
            raise ValueError(
                f"The label window of calibration as_of {self.calibration_as_ofs[-1].isoformat()}"
                f" runs to {last_calibration_end.isoformat()} (exclusive), past the first test "
                f"as_of {self.test_as_ofs[0].isoformat()}: calibration would see outcomes from "
                "the test period."
            )

    def describe(self) -> str:
        """A one-line summary for logs and run descriptions."""
        return (
            f"train {_describe(self.train_as_ofs)}; "
            f"calibration {_describe(self.calibration_as_ofs)}; "
            f"test {_describe(self.test_as_ofs)}; horizon {self.horizon.days} days"
        )


def _normalise_parts(split: Split | CohortSplit) -> None:
    """Turn each part's dates into `date`s in place; refuse empty or unordered parts."""
    for part in ("train_as_ofs", "calibration_as_ofs", "test_as_ofs"):
        dates = tuple(_as_date(d) for d in getattr(split, part))
        object.__setattr__(split, part, dates)
        if not dates:
            raise ValueError(f"The split has no {part.removesuffix('_as_ofs')} as_of dates.")
        if any(a >= b for a, b in zip(dates, dates[1:], strict=False)):
            raise ValueError(f"The {part} must be strictly increasing, without repeats.")


def temporal_split(
    as_ofs: Sequence[dt.date],
    *,
    horizon: dt.timedelta,
    test_from: dt.date,
    test_to: dt.date | None = None,
    calibration_weeks: int = 8,
) -> Split:
    """Split `as_of` dates into train, calibration and test around `test_from`.

    * test: the `as_of` dates in ``[test_from, test_to]`` (to the last one when `test_to`
      is None);
    * calibration: the last `calibration_weeks` `as_of` dates whose label window closes on
      or before `test_from`;
    * train: every `as_of` whose label window closes on or before the first calibration
      `as_of`.

    Dates between the parts (whose windows would straddle a boundary) are left out.

    Parameters
    ----------
    as_ofs : sequence of datetime.date
        Candidate dates, e.g. from `weekly_as_ofs`; order and repeats do not matter.
    horizon : datetime.timedelta
        Label window length.
    test_from, test_to : datetime.date
        The test period, both ends inclusive.
    calibration_weeks : int, default 8
        How many `as_of` dates go to calibration (weeks, for weekly `as_of` dates); >= 1.

    Returns
    -------
    Split

    Raises
    ------
    ValueError
        When a part would be empty (too few dates before `test_from`), or for the
        reasons `Split` gives.
    """
    if calibration_weeks < 1:
        raise ValueError(f"calibration_weeks must be at least 1; got {calibration_weeks}.")
    dates = _sorted_dates(as_ofs)
    test_from = _as_date(test_from)
    test_to = _as_date(test_to) if test_to is not None else None
    test = [d for d in dates if d >= test_from and (test_to is None or d <= test_to)]
    calibration = [d for d in dates if d + horizon <= test_from][-calibration_weeks:]
    train = [d for d in dates if calibration and d + horizon <= calibration[0]]
    if not (test and calibration and train):
        empty = [
            name
            for name, part in (("train", train), ("calibration", calibration), ("test", test))
            if not part
        ]
        raise ValueError(
            f"Cannot split {_describe(dates)} with horizon {horizon.days} days and test from "
            f"{test_from.isoformat()}: no as_of dates left for {', '.join(empty)}."
        )
    split = Split(
        train_as_ofs=tuple(train),
        calibration_as_ofs=tuple(calibration),
        test_as_ofs=tuple(test),
        horizon=horizon,
    )
    logger.info("temporal_split: %s", split.describe())
    return split


def rolling_splits(
    as_ofs: Sequence[dt.date],
    *,
    horizon: dt.timedelta,
    n_folds: int,
    test_weeks: int,
    calibration_weeks: int,
) -> list[Split]:
    """Folds that slide forward in time, each tested on the next block of `as_of` dates.

    The last `n_folds * test_weeks` dates are cut into consecutive test blocks of
    `test_weeks` dates; fold ``i`` tests on block ``i`` and trains (expanding window) and
    calibrates on earlier dates as `temporal_split` does.

    Parameters
    ----------
    as_ofs : sequence of datetime.date
        Candidate dates; order and repeats do not matter.
    horizon : datetime.timedelta
        Label window length.
    n_folds : int
        Number of folds, >= 1.
    test_weeks : int
        `as_of` dates per test block, >= 1.
    calibration_weeks : int
        `as_of` dates per calibration part, >= 1.

    Returns
    -------
    list of Split
        Oldest fold first; test blocks are disjoint and increasing.

    Raises
    ------
    ValueError
        When there are too few dates for the requested folds.
    """
    if n_folds < 1 or test_weeks < 1:
        raise ValueError(
            f"n_folds and test_weeks must be at least 1; got {n_folds} and {test_weeks}."
        )
    dates = _sorted_dates(as_ofs)
    if n_folds * test_weeks > len(dates):
        raise ValueError(
            f"{n_folds} folds of {test_weeks} test dates need {n_folds * test_weeks} as_of "
            f"dates; only {len(dates)} given."
        )
    first_test = len(dates) - n_folds * test_weeks
    splits = []
    for fold in range(n_folds):
        block = dates[first_test + fold * test_weeks : first_test + (fold + 1) * test_weeks]
        try:
            split = temporal_split(
                dates,
                horizon=horizon,
                test_from=block[0],
                test_to=block[-1],
                calibration_weeks=calibration_weeks,
            )
        except ValueError as error:
            raise ValueError(f"Fold {fold + 1} of {n_folds}: {error}") from error
        splits.append(split)
    return splits


@dataclass(frozen=True)
class CohortSplit:
    """A split by cohort: test on the enrolments that start on or after `cohort_from`.

    For courses whose runs overlap in time (a university module's February presentation
    starts while the October one is still running, as in OULAD), a split by `as_of` date
    mixes the cohorts. Here a row belongs to the part of its enrolment row's start date:

    * test: rows of enrolments starting on or after `cohort_from`, at the `test_as_ofs`;
    * train and calibration: rows of enrolments that started before `cohort_from`, at
      any of their observable `as_of` dates; a held-out `calibration_share` of those
      students (drawn with `seed`) calibrates, the others train.

    Training labels of the earlier cohorts may close after `cohort_from` (the October
    presentation ends in June): this is the usual "train on earlier presentations, test
    on a later one" protocol, not a strictly temporal one. Features stay as of each date.

    Parameters
    ----------
    train_as_ofs, calibration_as_ofs, test_as_ofs : tuple of datetime.date
        Strictly increasing, non-empty; every test date is on or after `cohort_from`.
    horizon : datetime.timedelta
        Label window length; positive.
    cohort_from : datetime.date
        First start date of a test enrolment.
    calibration_share : float
        Share of the earlier cohorts' students held out for calibration, in (0, 1).
    seed : int
        Seed of the draw of calibration students.
    """

    train_as_ofs: tuple[dt.date, ...]
    calibration_as_ofs: tuple[dt.date, ...]
    test_as_ofs: tuple[dt.date, ...]
    horizon: dt.timedelta
    cohort_from: dt.date
    calibration_share: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon <= dt.timedelta(0):
            raise ValueError(f"The label horizon must be positive; got {self.horizon}.")
        if not 0.0 < self.calibration_share < 1.0:
            raise ValueError(f"calibration_share must be in (0, 1); got {self.calibration_share}.")
        object.__setattr__(self, "cohort_from", _as_date(self.cohort_from))
        _normalise_parts(self)
        if self.test_as_ofs[0] < self.cohort_from:
            raise ValueError(
                f"Test as_of {self.test_as_ofs[0].isoformat()} is before the first test "
                f"cohort's start {self.cohort_from.isoformat()}."
            )

    def describe(self) -> str:
        """A one-line summary for logs and run descriptions."""
        return (
            f"cohorts starting before {self.cohort_from.isoformat()}: train and calibrate "
            f"({self.calibration_share:.0%} of their students) on {_describe(self.train_as_ofs)}"
            f"; test the later cohorts on {_describe(self.test_as_ofs)}; "
            f"horizon {self.horizon.days} days"
        )


def cohort_split(
    as_ofs: Sequence[dt.date],
    *,
    horizon: dt.timedelta,
    cohort_from: dt.date,
    test_to: dt.date | None = None,
    calibration_share: float = 0.2,
    seed: int = 0,
) -> CohortSplit:
    """A `CohortSplit`: every date may hold training rows (of the earlier cohorts); the test
    dates are those in ``[cohort_from, test_to]``.

    Raises
    ------
    ValueError
        When no date lies before `cohort_from` (no earlier cohort can have been observed)
        or none in the test period, or for the reasons `CohortSplit` gives.
    """
    dates = _sorted_dates(as_ofs)
    cohort_from = _as_date(cohort_from)
    test_to = _as_date(test_to) if test_to is not None else None
    test = [d for d in dates if d >= cohort_from and (test_to is None or d <= test_to)]
    earlier = [d for d in dates if d < cohort_from]
    if not test or not earlier:
        part = "test" if not test else "the earlier cohorts"
        raise ValueError(
            f"Cannot split {_describe(dates)} by cohort from {cohort_from.isoformat()}: "
            f"no as_of dates left for {part}."
        )
    split = CohortSplit(
        train_as_ofs=tuple(dates),
        calibration_as_ofs=tuple(dates),
        test_as_ofs=tuple(test),
        horizon=horizon,
        cohort_from=cohort_from,
        calibration_share=calibration_share,
        seed=seed,
    )
    logger.info("cohort_split: %s", split.describe())
    return split
