"""The cohort split: later enrolments test, earlier ones train and calibrate by student."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from training.matrices import cohort_split_frames, enrolment_start, split_frames
from training.splits import CohortSplit, cohort_split

WEEK = dt.timedelta(days=7)


def _dates(first: dt.date, n: int) -> list[dt.date]:
    return [first + i * WEEK for i in range(n)]


def test_cohort_split_tests_from_the_cohort_start_and_trains_on_every_date() -> None:
    dates = _dates(dt.date(2013, 2, 2), 60)
    split = cohort_split(
        dates, horizon=dt.timedelta(days=300), cohort_from=dt.date(2014, 2, 1), test_to=None
    )
    assert split.test_as_ofs[0] == dt.date(2014, 2, 1)
    assert split.test_as_ofs[-1] == dates[-1]
    assert split.train_as_ofs == tuple(dates) == split.calibration_as_ofs


def test_cohort_split_refuses_empty_parts_and_bad_shares() -> None:
    dates = _dates(dt.date(2014, 2, 1), 5)
    with pytest.raises(ValueError, match="earlier cohorts"):
        cohort_split(dates, horizon=WEEK, cohort_from=dt.date(2014, 2, 1))
    with pytest.raises(ValueError, match="test"):
        cohort_split(dates, horizon=WEEK, cohort_from=dt.date(2015, 2, 1))
    with pytest.raises(ValueError, match="calibration_share"):
        CohortSplit(
            train_as_ofs=tuple(dates),
            calibration_as_ofs=tuple(dates),
            test_as_ofs=tuple(dates),
            horizon=WEEK,
            cohort_from=dates[0],
            calibration_share=1.0,
        )


def test_rows_follow_their_enrolment_start_not_their_date() -> None:
    # An October cohort still running in February trains; the February cohort tests.
    as_of = pd.to_datetime(["2014-02-01", "2014-02-01", "2014-02-08", "2013-11-02"] * 10)
    ids = [f"s{i}" for i in range(40)]
    frame = pd.DataFrame({"student_id": ids, "as_of": as_of, "label": 0})
    starts = pd.Series(
        pd.to_datetime(["2013-10-01", "2014-02-01", "2014-02-01", "2013-10-01"] * 10)
    )
    split = cohort_split(
        sorted({d.date() for d in as_of}),
        horizon=dt.timedelta(days=300),
        cohort_from=dt.date(2014, 2, 1),
        calibration_share=0.25,
        seed=3,
    )
    frames = cohort_split_frames(frame, split, enrolment_starts=starts)
    assert set(frames.test["student_id"]) == {ids[i] for i in range(40) if i % 4 in (1, 2)}
    earlier = {ids[i] for i in range(40) if i % 4 in (0, 3)}
    assert set(frames.train["student_id"]) | set(frames.calibration["student_id"]) == earlier
    assert not set(frames.train["student_id"]) & set(frames.calibration["student_id"])
    assert len(frames.calibration) == 5  # a quarter of the 20 earlier students
    again = split_frames(frame, split, enrolment_starts=starts)
    assert again.calibration["student_id"].tolist() == frames.calibration["student_id"].tolist()
    with pytest.raises(ValueError, match="enrolment start"):
        split_frames(frame, split)


def test_enrolment_start_is_that_of_the_row_in_force(small_county) -> None:  # type: ignore[no-untyped-def]
    enr = small_county.enrolments
    enr = enr.loc[pd.to_datetime(enr["start_date"]).notna()].head(200)
    snapshot = enr.loc[:, ["student_id", "school_id", "class_id"]].reset_index(drop=True)
    start = pd.to_datetime(enr["start_date"]).reset_index(drop=True)
    snapshot["as_of"] = start + pd.Timedelta(days=3)
    found = enrolment_start(small_county, snapshot)
    assert (found.to_numpy() == start.to_numpy(dtype="datetime64[ns]")).all()
