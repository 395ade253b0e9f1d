"""Evaluation at capacity on a frame small enough to check by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from training.evaluate import (
    EvaluationResult,
    capacity_k,
    evaluate_scores,
    evaluate_with_visits,
    expected_calibration_error,
    flag_top_k,
    plot_pr_curves,
    plot_reliability,
    reliability_table,
)

# (school_id, class_id, student_id, model score, label on A, ladder score)
STUDENTS = [
    ("s1", "c1", "p1", 0.90, 1, 0),
    ("s1", "c1", "p2", 0.80, 0, 0),
    ("s1", "c1", "p3", 0.20, 0, 3),
    ("s1", "c1", "p4", 0.10, 0, 2),
    ("s1", "c2", "p5", 0.60, 0, 0),
    ("s1", "c2", "p6", 0.70, 1, 0),
    ("s1", "c2", "p7", 0.30, 0, 0),
    ("s1", "c2", "p8", 0.05, 0, 0),
    ("s2", "c3", "q1", 0.50, 0, 0),
    ("s2", "c3", "q2", 0.50, 1, 1),  # ties with q1 on the model score: q1 wins by id
    ("s2", "c3", "q3", 0.40, 0, 0),
    ("s2", "c3", "q4", 0.00, 0, 0),
]
A, B = pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-11")
SHARE = 0.25  # s1 (8 students) flags 2, s2 (4) flags 1; every class (4) flags 1


@pytest.fixture
def frame() -> pd.DataFrame:
    rows = []
    for as_of in (A, B):
        for school_id, class_id, student_id, model, label, ladder in STUDENTS:
            rows.append(
                {
                    "student_id": student_id,
                    "as_of": as_of,
                    "school_id": school_id,
                    "class_id": class_id,
                    "label": label if as_of == A else 0,  # nobody drops out after B
                    "model": model,
                    "escalation_ladder": ladder,
                }
            )
    out = pd.DataFrame(rows)
    out["as_of"] = out["as_of"].astype("datetime64[ns]")
    out["oracle"] = out["label"].astype(float)
    return out


def test_capacity_k() -> None:
    assert capacity_k(100, 0.05) == 5
    assert capacity_k(100, 0.07) == 7  # not 8 from 7.000000000000001
    assert capacity_k(101, 0.05) == 6
    assert capacity_k(3, 0.05) == 1
    assert capacity_k(0, 0.05) == 0
    assert capacity_k(10, 1.0) == 10
    with pytest.raises(ValueError, match="share"):
        capacity_k(10, 0.0)
    with pytest.raises(ValueError, match="share"):
        capacity_k(10, 1.5)


def test_flag_top_k_by_school_and_by_class(frame: pd.DataFrame) -> None:
    on_a = frame.loc[frame["as_of"] == A]
    flagged = on_a.loc[flag_top_k(on_a, score="model", share=SHARE), "student_id"]
    assert sorted(flagged) == ["p1", "p2", "q1"]
    by_class = flag_top_k(on_a, score="model", share=SHARE, by=("as_of", "school_id", "class_id"))
    assert sorted(on_a.loc[by_class, "student_id"]) == ["p1", "p6", "q1"]
    whole = flag_top_k(on_a, score="model", share=SHARE, by=())
    assert sorted(on_a.loc[whole, "student_id"]) == ["p1", "p2", "p6"]
    assert flag_top_k(on_a, score="model", share=SHARE).index.equals(on_a.index)


def test_missing_scores_rank_last() -> None:
    frame = pd.DataFrame(
        {"student_id": ["a", "b", "c"], "g": [1, 1, 1], "score": [np.nan, 0.1, 0.2]}
    )
    assert frame.loc[
        flag_top_k(frame, score="score", share=0.5, by=("g",)), "student_id"
    ].tolist() == [
        "b",
        "c",
    ]


def test_evaluate_scores_by_hand(frame: pd.DataFrame) -> None:
    result = evaluate_scores(
        frame,
        score_columns=["model", "oracle", "escalation_ladder"],
        capacity_share=SHARE,
        probability_columns=["model"],
    )
    model = result["model"].summary
    # on A the schools flag p1 (hit), p2, q1: 1 hit of 3 flags, 3 positives; on B 0 of 3
    assert model["precision_at_k"] == pytest.approx((1 / 3 + 0) / 2)
    assert model["recall_at_k"] == pytest.approx(1 / 3)  # B has no positive: left out
    assert model["precision_at_k_pooled"] == pytest.approx(1 / 6)
    assert model["recall_at_k_pooled"] == pytest.approx(1 / 3)
    # by class the flags are p1 (hit), p6 (hit), q1
    assert model["precision_at_k_class"] == pytest.approx((2 / 3 + 0) / 2)
    assert model["recall_at_k_class"] == pytest.approx(2 / 3)
    assert model["k"] == 3 and model["k_class"] == 3
    assert (model["n_rows"], model["n_students"], model["n_positive"], model["n_as_of"]) == (
        24,
        12,
        3,
        2,
    )
    # AUC is undefined on B, so the mean over dates is A's AUC
    on_a = frame.loc[frame["as_of"] == A]
    assert model["n_as_of_undefined"] == 1
    assert model["auc_mean_as_of"] == pytest.approx(roc_auc_score(on_a["label"], on_a["model"]))
    assert model["auc"] == pytest.approx(roc_auc_score(frame["label"], frame["model"]))
    assert model["brier"] == pytest.approx(float(np.mean((frame["model"] - frame["label"]) ** 2)))
    assert not math.isnan(model["calibration_error"])
    # the ladder flags p3, p4 and q2 on A: 1 hit, like the model; the oracle finds all 3
    assert model["lift_over_ladder"] == pytest.approx(1.0)
    assert result["oracle"].summary["lift_over_ladder"] == pytest.approx(3.0)
    assert result["escalation_ladder"].summary["lift_over_ladder"] == pytest.approx(1.0)
    assert model["precision_at_k_ladder"] == pytest.approx(1 / 6)
    assert math.isnan(result["oracle"].summary["brier"])  # not a probability column

    per_as_of = result["model"].per_as_of
    assert per_as_of["as_of"].tolist() == [A, B]
    assert per_as_of["hits"].tolist() == [1, 0]
    assert per_as_of["n_positive"].tolist() == [3, 0]
    assert math.isnan(per_as_of["auc"].iloc[1])

    summary = result.summary()
    assert list(summary.index) == ["model", "oracle", "escalation_ladder"]


def test_to_dict_is_json_safe(frame: pd.DataFrame) -> None:
    result = evaluate_scores(
        frame, score_columns=["model"], capacity_share=SHARE, probability_columns=["model"]
    )
    out = result.to_dict()
    text = json.dumps(out, allow_nan=False)  # NaN would fail here
    assert json.loads(text) == out
    model = out["model"]
    for key in ("auc", "pr_auc", "brier", "precision_at_k", "recall_at_k", "k", "n_students"):
        assert key in model
    assert model["n_positive"] == 3
    assert [row["as_of"] for row in model["per_as_of"]] == ["2024-03-04", "2024-03-11"]
    assert model["per_as_of"][1]["auc"] is None
    assert model["per_as_of"][1]["recall_at_k"] is None
    assert isinstance(result, EvaluationResult)


def test_censored_rows_are_left_out(frame: pd.DataFrame) -> None:
    frame["censored"] = frame["student_id"].eq("p1") & frame["as_of"].eq(A)
    model = evaluate_scores(frame, score_columns=["model"], capacity_share=SHARE)["model"]
    assert model.summary["n_rows"] == 23
    assert model.summary["n_positive"] == 2
    # without p1, s1 flags p2 and p6 (a hit) on A
    assert model.per_as_of["hits"].tolist() == [1, 0]


def test_bad_frames_are_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="lacks the column"):
        evaluate_scores(frame.drop(columns="class_id"), score_columns=["model"])
    with pytest.raises(ValueError, match="not score columns"):
        evaluate_scores(frame, score_columns=["model"], probability_columns=["oracle"])
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate_scores(frame.assign(label=2), score_columns=["model"])
    with pytest.raises(ValueError, match="outside"):
        evaluate_scores(
            frame.assign(model=frame["model"] * 2),
            score_columns=["model"],
            probability_columns=["model"],
        )
    with pytest.raises(ValueError, match="no rows"):
        evaluate_scores(frame.iloc[:0], score_columns=["model"])


def test_reliability_table_by_hand() -> None:
    table = reliability_table([0, 0, 1, 1, 0], [0.1, 0.2, 0.8, 1.0, 0.6], n_bins=2)
    assert table["n"].tolist() == [2, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.15, 0.8])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 2 / 3])
    empty_bins = reliability_table([0, 1], [0.05, 0.07], n_bins=10)
    assert len(empty_bins) == 10 and empty_bins["n"].sum() == 2
    quantile = reliability_table(
        np.r_[np.zeros(90), np.ones(10)], np.linspace(0, 0.2, 100), 5, strategy="quantile"
    )
    assert quantile["n"].tolist() == [20, 20, 20, 20, 20]
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == pytest.approx(0.0)


def test_plots_return_figures(frame: pd.DataFrame) -> None:
    reliability = plot_reliability(frame["label"], {"model": frame["model"]}, n_bins=4)
    assert isinstance(reliability, Figure)
    assert len(reliability.axes[0].lines) == 2  # the model and the diagonal
    curves = plot_pr_curves(frame, score_columns=["model", "oracle"], capacity_share=SHARE)
    assert isinstance(curves, Figure)
    assert [t.get_text() for t in curves.axes[0].get_legend().get_texts()][0].startswith("model")


@st.composite
def scored_groups(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=60))
    return pd.DataFrame(
        {
            "student_id": [f"st{i:03d}" for i in draw(st.permutations(range(n)))],
            "as_of": draw(st.lists(st.sampled_from([A, B]), min_size=n, max_size=n)),
            "school_id": draw(
                st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=n, max_size=n)
            ),
            # few distinct values, so ties are common
            "score": draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=n, max_size=n)),
        }
    )


@settings(max_examples=150, deadline=None)
@given(frame=scored_groups(), share=st.floats(min_value=0.01, max_value=1.0))
def test_flags_fill_capacity_and_follow_the_order(frame: pd.DataFrame, share: float) -> None:
    flagged = flag_top_k(frame, score="score", share=share)
    for _, group in frame.assign(flagged=flagged).groupby(["as_of", "school_id"]):
        capacity = capacity_k(len(group), share)
        assert group["flagged"].sum() == capacity
        # the flagged rows are exactly the first ones by score, ties by student_id
        ranked = sorted(zip(-group["score"], group["student_id"], group["flagged"], strict=True))
        assert [is_flagged for *_, is_flagged in ranked] == [True] * capacity + [False] * (
            len(group) - capacity
        )
    # the same rows in another order get the same flags
    shuffled = frame.sample(frac=1.0, random_state=0)
    again = flag_top_k(shuffled, score="score", share=share)
    assert again.reindex(frame.index).equals(flagged)


def test_visit_led_returns_count_as_caught(frame: pd.DataFrame) -> None:
    """p2 (flagged on A, no dropout) was visited on 03-05 and the visit's outcome was
    `returned`; q3 (never flagged) was visited on 03-12 and a `return` event followed on
    03-14, so both A's and B's q3 rows are wanted but missed."""
    import datetime as dt

    from training.feedback import attach_interventions

    interventions = pd.DataFrame(
        {
            "student_id": ["p2", "q3"],
            "date": pd.to_datetime(["2024-03-05", "2024-03-12"]),
            "kind": ["home_visit", "phone_call"],
            "outcome": ["returned", "contacted"],
        }
    )
    events = pd.DataFrame(
        {"student_id": ["q3"], "date": pd.to_datetime(["2024-03-14"]), "event": ["return"]}
    )
    joined = attach_interventions(frame, interventions, events, horizon=dt.timedelta(days=28))
    returned = joined.loc[joined["visit_led_return"], ["student_id", "as_of"]]
    assert sorted(zip(returned["student_id"], returned["as_of"], strict=True)) == [
        ("p2", A),
        ("q3", A),
        ("q3", B),
    ]
    result = evaluate_with_visits(joined, score="model", capacity_share=SHARE)
    # flags on both dates: p1, p2, q1. A: p1 (label) and p2 (visit) caught of 3 flags;
    # B: nobody. Wanted: A p1, p6, q2 (labels), p2, q3 (visits); B q3.
    assert result["precision_at_k"] == pytest.approx((1 / 3 + 0) / 2)
    assert result["precision_at_k_with_visits"] == pytest.approx((2 / 3 + 0) / 2)
    assert result["recall_at_k"] == pytest.approx(1 / 3)
    assert result["recall_at_k_with_visits"] == pytest.approx((2 / 5 + 0 / 1) / 2)
    assert result["precision_at_k_with_visits_pooled"] == pytest.approx(2 / 6)
    assert result["recall_at_k_with_visits_pooled"] == pytest.approx(2 / 6)
    assert (result["n_caught_by_visit"], result["n_visit_led_returns"]) == (1, 3)
    assert (result["n_flagged"], result["n_positive"], result["n_as_of"]) == (6, 3, 2)
    # the labels-only numbers agree with evaluate_scores
    plain = evaluate_scores(frame, score_columns=["model"], capacity_share=SHARE)["model"]
    assert result["precision_at_k"] == pytest.approx(plain.summary["precision_at_k"])
    # without any visit the two precisions agree
    none = evaluate_with_visits(
        joined.assign(visit_led_return=False), score="model", capacity_share=SHARE
    )
    assert none["precision_at_k_with_visits"] == none["precision_at_k"]
    with pytest.raises(ValueError, match="visit_led_return"):
        evaluate_with_visits(frame, score="model", capacity_share=SHARE)
