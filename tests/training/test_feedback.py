"""Feedback and interventions joined onto label rows, pseudonyms, and the research tables
of a small synthetic county."""

from __future__ import annotations

import datetime as dt
import secrets

import numpy as np
import pandas as pd
import pytest

from training.feedback import (
    attach_feedback,
    attach_interventions,
    combine_interventions,
    drop_free_text,
    pseudonym,
    pseudonymise,
    research_tables,
    visit_led_returns,
)

HORIZON = dt.timedelta(days=28)
MON = pd.Timestamp("2024-03-04")
SALT = b"0123456789abcdef-test-salt"


def _labels() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": ["a", "b", "c", "d", "a"],
            "as_of": [MON, MON, MON, MON, MON + pd.Timedelta(days=7)],
            "label": [0, 1, 0, 0, 0],
        },
        index=[10, 11, 12, 13, 14],
    )


def _interventions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": ["a", "b", "c", "d", "c"],
            "date": pd.to_datetime(
                ["2024-03-05", "2024-03-06", "2024-03-20", "2024-02-20", "2024-04-10"]
            ),
            "kind": ["home_visit", "phone_call", "home_visit", "home_visit", "home_visit"],
            "outcome": ["returned", "contacted", "contacted", "returned", "returned"],
            "note": ["NOTE-SECRET"] * 5,
        }
    )


def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "student_id": ["c", "b", "b"],
            "date": pd.to_datetime(["2024-03-25", "2024-03-01", "2024-03-10"]),
            "event": ["return", "dropout", "return"],
            "school_id": ["S"] * 3,
        }
    )


def test_interventions_inside_the_horizon_only():
    out = attach_interventions(_labels(), _interventions(), _events(), horizon=HORIZON)
    assert list(out.index) == [10, 11, 12, 13, 14]
    # a: visited 03-05 with outcome returned (week 1); the 03-11 row starts after the visit
    # c: visited 03-20, a return event 03-25 after it; its 04-10 visit is past 03-04 + 28 d
    # d: visited before the as_of: not counted
    assert out["n_interventions"].tolist() == [1, 1, 1, 0, 0]
    assert out["visited"].tolist() == [True, True, True, False, False]
    assert out["days_to_first_intervention"].iloc[:3].tolist() == [1.0, 2.0, 16.0]
    assert np.isnan(out["days_to_first_intervention"].iloc[3])
    assert out["outcome_returned"].tolist() == [True, False, False, False, False]
    # b's return (03-10) is after its call (03-06): a return event after the visit
    assert out["return_event"].tolist() == [False, True, True, False, False]
    assert out["visit_led_return"].tolist() == [True, True, True, False, False]
    series = visit_led_returns(_labels(), _interventions(), _events(), horizon=HORIZON)
    assert series.index.tolist() == [10, 11, 12, 13, 14]


def test_a_return_before_the_visit_does_not_count():
    events = pd.DataFrame(
        {"student_id": ["c"], "date": pd.to_datetime(["2024-03-19"]), "event": ["return"]}
    )
    out = attach_interventions(_labels(), _interventions(), events, horizon=HORIZON)
    assert not out.loc[12, "visit_led_return"]


def test_feedback_counts_join_on_the_flagged_week():
    feedback = pd.DataFrame(
        {
            "student_id": ["a", "a", "b", "a", "z"],
            "as_of": pd.to_datetime(
                ["2024-03-04", "2024-03-04", "2024-03-04", "2024-03-11", "2024-03-04"]
            ),
            "kind": ["useful", "wrongly_flagged", "not_useful", "useful", "useful"],
            "user_id": [1, 2, 1, 1, 1],
            "comment": ["NOTE-SECRET"] * 5,
        }
    )
    out = attach_feedback(_labels(), feedback)
    assert out["feedback_useful"].tolist() == [1, 0, 0, 0, 1]
    assert out["feedback_wrongly_flagged"].tolist() == [1, 0, 0, 0, 0]
    assert out["feedback_not_useful"].tolist() == [0, 1, 0, 0, 0]
    empty = attach_feedback(_labels(), feedback.iloc[:0])
    assert empty["feedback_useful"].sum() == 0
    with pytest.raises(ValueError, match="great"):
        attach_feedback(_labels(), feedback.assign(kind="great"))


def test_pseudonyms_are_keyed_consistent_and_unlinkable():
    frame = pd.DataFrame({"student_id": ["a", "b", "a", None], "user_id": [1, 2, 1, 2], "x": 1})
    one = pseudonymise(frame, SALT)
    assert one["student_id"].iloc[0] == one["student_id"].iloc[2] != one["student_id"].iloc[1]
    assert pd.isna(one["student_id"].iloc[3])
    assert one["student_id"].iloc[0] == pseudonym("a", SALT)
    assert "a" not in set(one["student_id"]) and 1 not in set(one["user_id"])
    other = pseudonymise(frame, secrets.token_bytes(32))
    assert not set(one["student_id"].dropna()) & set(other["student_id"].dropna())
    assert frame["student_id"].iloc[0] == "a"  # the input is not changed
    with pytest.raises(ValueError, match="salt"):
        pseudonymise(frame, b"short")


def test_free_text_is_dropped():
    done = combine_interventions(_interventions(), _interventions().drop(columns="note"))
    assert "note" not in done.columns and len(done) == 10
    assert list(drop_free_text(pd.DataFrame({"plan": [1], "comment": [2], "k": [3]}))) == ["k"]


def test_research_tables_of_a_small_county():
    from features.synthetic import generate_county
    from training.matrices import school_days
    from training.splits import weekly_as_ofs

    county = generate_county(n_students=300, n_years=1, seed=3)
    as_ofs = weekly_as_ofs(school_days(county))[8:12]
    snapshot_ids = county.enrolments["student_id"].astype(str).unique()[:3]
    feedback = pd.DataFrame(
        {
            "student_id": [snapshot_ids[0], "NOT-IN-EXPORT"],
            "as_of": pd.to_datetime([as_ofs[0], as_ofs[0]]),
            "kind": ["wrongly_flagged", "useful"],
            "user_id": [7, 7],
            "comment": ["NOTE-SECRET", "NOTE-SECRET"],
        }
    )
    interventions = pd.DataFrame(
        {
            "student_id": [snapshot_ids[1]],
            "school_id": ["x"],
            "class_id": ["y"],
            "date": pd.to_datetime([as_ofs[0] + dt.timedelta(days=2)]),
            "kind": ["home_visit"],
            "by_role": ["homeroom_teacher"],
            "outcome": ["returned"],
            "note": ["NOTE-SECRET"],
            "recorded_by": [7],
        }
    )
    result = research_tables(
        county,
        as_ofs=as_ofs,
        horizon=HORIZON,
        feedback=feedback,
        interventions=interventions,
        salt=SALT,
    )
    rows = result.frames["training_rows"]
    assert set(result.frames) == {"training_rows", "feedback", "interventions"}
    assert rows["as_of"].nunique() == 4 and {"label", "visit_led_return"} <= set(rows.columns)
    real_ids = set(county.students["student_id"].astype(str))
    for name, frame in result.frames.items():
        assert not {"note", "comment"} & set(frame.columns), name
        assert not set(frame["student_id"].dropna()) & real_ids, name
    assert len(result.frames["feedback"]) == 1  # only students of the rows
    assert result.frames["feedback"]["user_id"].iloc[0] == pseudonym(7, SALT)
    assert int(rows["feedback_wrongly_flagged"].sum()) == 1
    assert result.manifest["n_visit_led_returns"] == int(rows["visit_led_return"].sum()) >= 1
    assert result.manifest["rows"]["training_rows"] == len(rows)


def test_a_registered_model_counts_visit_led_returns(small_county, trained):
    """The trained champion on two test weeks; every pupil of the first week is visited the
    day after with the outcome `returned`, so every flag of that week is caught."""
    from training.feedback import evaluate_registered_with_visits

    result, store, config = trained
    first, second = result.split.test_as_ofs[:2]
    pupils = small_county.enrolments["student_id"].astype(str).unique()
    planted = pd.DataFrame(
        {
            "student_id": pupils,
            "date": pd.Timestamp(first) + pd.Timedelta(days=1),
            "kind": "home_visit",
            "outcome": "returned",
            "note": "NOTE-SECRET",
        }
    )

    def run(interventions: pd.DataFrame) -> dict:
        return evaluate_registered_with_visits(
            small_county,
            config,
            store=store,
            ref="champion",
            date_from=first,
            date_to=second,
            interventions=interventions,
        )

    base, visited = run(planted.iloc[:0]), run(planted)
    assert base["n_as_of"] == visited["n_as_of"] == 2
    assert visited["precision_at_k"] == pytest.approx(base["precision_at_k"])
    assert visited["recall_at_k"] == pytest.approx(base["recall_at_k"])
    assert visited["n_visit_led_returns"] > base["n_visit_led_returns"]
    # the first week: every flag is caught (precision 1); the second week is unchanged,
    # the visit being before its as_of: so the mean is at least 0.5 and above the base
    assert visited["precision_at_k_with_visits"] >= 0.5
    assert visited["precision_at_k_with_visits"] >= base["precision_at_k_with_visits"]
    assert visited["n_caught_by_visit"] > base["n_caught_by_visit"]
    assert visited["k"] == base["k"]
