"""Labels on hand-made cases: each student below is one edge of the label window."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest

from training.labels import make_labels, observable_mask, uncensored

AS_OF = pd.Timestamp("2024-03-04")
HORIZON = dt.timedelta(days=28)  # window [2024-03-04, 2024-04-01)
OBSERVED_UNTIL = dt.date(2024, 7, 31)


def events(*rows: tuple[str, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["student_id", "date", "event"])
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    frame["school_id"] = "s1"
    return frame


def population(*student_ids: str, as_of: pd.Timestamp = AS_OF) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": list(student_ids),
            "as_of": pd.Series([as_of] * len(student_ids), dtype="datetime64[ns]"),
            "school_id": "s1",
        }
    )


def label_of(labels: pd.DataFrame, student_id: str) -> tuple[int, bool]:
    row = labels.set_index("student_id").loc[student_id]
    return int(row["label"]), bool(row["censored"])


def test_dropout_inside_outside_and_on_the_boundary_days() -> None:
    status_events = events(
        ("inside", "2024-03-20", "dropout"),
        ("first_day", "2024-03-04", "dropout"),  # as_of itself is inside
        ("last_day", "2024-03-31", "dropout"),  # as_of + horizon - 1 day is inside
        ("end_day", "2024-04-01", "dropout"),  # as_of + horizon is outside
        ("before", "2024-03-01", "dropout"),  # before as_of is outside
    )
    labels = make_labels(
        status_events,
        population("inside", "first_day", "last_day", "end_day", "before"),
        horizon=HORIZON,
        observed_until=OBSERVED_UNTIL,
    )
    assert dict(zip(labels["student_id"], labels["label"], strict=True)) == {
        "inside": 1,
        "first_day": 1,
        "last_day": 1,
        "end_day": 0,
        "before": 0,
    }
    assert not labels["censored"].any()
    assert labels["label"].dtype == "int64"
    assert labels["censored"].dtype == bool


def test_transfer_out_censors_unless_a_dropout_came_first() -> None:
    status_events = events(
        ("transfer", "2024-03-10", "transfer_out"),
        ("transfer_then_dropout", "2024-03-10", "transfer_out"),
        ("transfer_then_dropout", "2024-03-20", "dropout"),
        ("dropout_then_transfer", "2024-03-08", "dropout"),
        ("dropout_then_transfer", "2024-03-15", "transfer_out"),
        ("transfer_after_window", "2024-04-02", "transfer_out"),
        ("same_day", "2024-03-12", "transfer_out"),
        ("same_day", "2024-03-12", "dropout"),
    )
    labels = make_labels(
        status_events,
        population(
            "transfer",
            "transfer_then_dropout",
            "dropout_then_transfer",
            "transfer_after_window",
            "same_day",
        ),
        horizon=HORIZON,
        observed_until=OBSERVED_UNTIL,
    )
    assert label_of(labels, "transfer") == (0, True)
    # we saw the dropout, but the transfer came first: the row is censored all the same
    assert label_of(labels, "transfer_then_dropout") == (1, True)
    assert label_of(labels, "dropout_then_transfer") == (1, False)
    assert label_of(labels, "transfer_after_window") == (0, False)
    # same day: the recorded dropout is taken as the first event
    assert label_of(labels, "same_day") == (1, False)
    assert sorted(uncensored(labels)["student_id"]) == [
        "dropout_then_transfer",
        "same_day",
        "transfer_after_window",
    ]


def test_dropout_then_return_inside_the_window_is_still_positive() -> None:
    status_events = events(
        ("returned", "2024-03-05", "dropout"),
        ("returned", "2024-03-18", "return"),
        ("graduated", "2024-03-20", "graduate"),
        ("suspended", "2024-03-11", "suspend"),
        ("earlier_dropout", "2024-02-01", "dropout"),
        ("earlier_dropout", "2024-03-06", "return"),
    )
    labels = make_labels(
        status_events,
        population("returned", "graduated", "suspended", "earlier_dropout", "quiet"),
        horizon=HORIZON,
        observed_until=OBSERVED_UNTIL,
    )
    assert label_of(labels, "returned") == (1, False)
    assert label_of(labels, "graduated") == (0, False)
    assert label_of(labels, "suspended") == (0, False)
    assert label_of(labels, "earlier_dropout") == (0, False)
    assert label_of(labels, "quiet") == (0, False)


def test_windows_ending_after_the_export_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status_events = events(("late", "2024-07-20", "dropout"))
    frame = pd.DataFrame(
        {
            "student_id": ["fits", "exactly", "late", "too_late", "fits"],
            "as_of": pd.to_datetime(
                ["2024-06-03", "2024-07-04", "2024-07-08", "2024-07-09", "2024-03-04"]
            ).astype("datetime64[ns]"),
        }
    )
    observed_until = dt.date(2024, 7, 31)  # window [07-04, 08-01) ends the day after
    assert observable_mask(frame, horizon=HORIZON, observed_until=observed_until).tolist() == [
        True,
        True,
        False,
        False,
        True,
    ]
    with caplog.at_level(logging.INFO, logger="training.labels"):
        labels = make_labels(status_events, frame, horizon=HORIZON, observed_until=observed_until)
    assert labels.index.tolist() == [0, 1, 4]
    assert labels["label"].tolist() == [0, 0, 0]
    assert "Dropped 2 of 5" in caplog.text


def test_label_until_overrides_the_horizon_per_row() -> None:
    status_events = events(
        ("course", "2024-05-20", "dropout"),
        ("short", "2024-03-20", "dropout"),
    )
    frame = population("course", "short", "plain")
    frame["label_until"] = pd.to_datetime(["2024-06-30", "2024-03-10", None]).astype(
        "datetime64[ns]"
    )
    labels = make_labels(status_events, frame, horizon=HORIZON, observed_until=dt.date(2024, 6, 30))
    assert label_of(labels, "course") == (1, False)  # beyond as_of + horizon, inside course
    assert label_of(labels, "short") == (0, False)  # after its own end
    assert label_of(labels, "plain") == (0, False)  # NaT falls back to the horizon
    assert "label_until" in labels.columns


def test_no_events_at_all_gives_all_zero() -> None:
    labels = make_labels(
        events(), population("a", "b"), horizon=HORIZON, observed_until=OBSERVED_UNTIL
    )
    assert labels["label"].tolist() == [0, 0]
    assert labels["censored"].tolist() == [False, False]
    assert labels["school_id"].tolist() == ["s1", "s1"]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon must be positive"):
        make_labels(
            events(), population("a"), horizon=dt.timedelta(0), observed_until=OBSERVED_UNTIL
        )
    with pytest.raises(ValueError, match="repeats 1"):
        make_labels(events(), population("a", "a"), horizon=HORIZON, observed_until=OBSERVED_UNTIL)
    with pytest.raises(ValueError, match="lacks the column"):
        make_labels(
            events(),
            population("a").drop(columns="as_of"),
            horizon=HORIZON,
            observed_until=OBSERVED_UNTIL,
        )
