"""The audit finds a disparity planted in constructed data and none in fair data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from training.fairness import disparities, fairness_audit, plot_fairness


def block(
    value: str, *, n: int, n_positive: int, flagged_positive: int, flagged_negative: int
) -> pd.DataFrame:
    """Students of one left_behind value; sexes alternate so F and M get identical rows."""
    label = np.r_[np.ones(n_positive, int), np.zeros(n - n_positive, int)]
    flagged = np.r_[
        np.ones(flagged_positive, bool),
        np.zeros(n_positive - flagged_positive, bool),
        np.ones(flagged_negative, bool),
        np.zeros(n - n_positive - flagged_negative, bool),
    ]
    # pairs of equal rows, one F and one M
    return pd.DataFrame(
        {
            "left_behind": value,
            "label": np.repeat(label, 2),
            "flagged": np.repeat(flagged, 2),
            "sex": np.tile(["F", "M"], n),
        }
    )


def planted() -> pd.DataFrame:
    """Children with both parents away are caught half as often as the rest."""
    return pd.concat(
        [
            # recall 0.8, flagged 10 %, precision 0.8, fpr 14/630
            block("none", n=700, n_positive=70, flagged_positive=56, flagged_negative=14),
            block(
                "one_parent_away", n=600, n_positive=60, flagged_positive=48, flagged_negative=12
            ),
            # recall 0.4, flagged 6 %, precision 2/3, fpr 12/540 (the same as none)
            block(
                "both_parents_away", n=600, n_positive=60, flagged_positive=24, flagged_negative=12
            ),
        ],
        ignore_index=True,
    )


def row(table: pd.DataFrame, group: str, value: str) -> pd.Series:
    return table.loc[(table["group"] == group) & (table["value"] == value)].iloc[0]


def test_planted_disparity_is_found() -> None:
    table = fairness_audit(planted(), groups=["left_behind", "sex"])
    both = row(table, "left_behind", "both_parents_away")
    assert both["reference"] == "none"
    assert both["n"] == 1200 and both["n_positive"] == 120
    assert both["recall"] == pytest.approx(0.4)
    assert both["recall_ratio"] == pytest.approx(0.5)
    assert both["flagged_rate_ratio"] == pytest.approx(0.6)
    assert both["precision_ratio"] == pytest.approx((2 / 3) / 0.8)  # 0.83: inside the band
    assert both["fpr_ratio"] == pytest.approx(1.0)
    assert bool(both["recall_disparate"]) and bool(both["flagged_rate_disparate"])
    assert not both["precision_disparate"] and not both["fpr_disparate"]
    assert not row(table, "left_behind", "one_parent_away")["disparate"]
    assert not table.loc[table["group"] == "sex", "disparate"].any()
    assert table["value"].tolist()[:3] == ["none", "both_parents_away", "one_parent_away"]
    assert disparities(table) == [
        "flagged_rate for left_behind=both_parents_away is 0.60× that of none",
        "recall for left_behind=both_parents_away is 0.50× that of none",
    ]


def test_fair_data_reports_nothing() -> None:
    fair = pd.concat(
        [
            block(value, n=500, n_positive=50, flagged_positive=40, flagged_negative=10)
            for value in ("none", "one_parent_away", "both_parents_away")
        ],
        ignore_index=True,
    )
    fair["dibao"] = np.tile([True, False, False, True], len(fair) // 4)
    table = fairness_audit(fair)
    assert set(table["group"]) == {"left_behind", "sex", "dibao"}  # defaults that are present
    assert disparities(table) == []
    ratios = table[[c for c in table.columns if c.endswith("_ratio")]].to_numpy(dtype=float)
    assert np.allclose(ratios, 1.0)


def test_small_groups_give_nan_ratios_not_crashes() -> None:
    frame = planted()
    frame["disability"] = False
    frame.loc[:9, "disability"] = True  # ten students, all of them positive
    frame["migrant_child"] = pd.array([None] * 4 + [True] * (len(frame) - 4), dtype="object")
    frame.loc[len(frame) - 30 :, "label"] = 0  # ensure negatives in every value
    table = fairness_audit(frame, groups=["disability", "migrant_child"])
    disabled = row(table, "disability", "True")
    assert disabled["n"] == 10
    for metric in ("flagged_rate", "precision", "recall", "fpr"):
        assert math.isnan(disabled[f"{metric}_ratio"])
        assert not disabled[f"{metric}_disparate"]
    assert row(table, "migrant_child", "missing")["n"] == 4
    assert row(table, "disability", "False")["recall_ratio"] == pytest.approx(1.0)


def test_few_positives_blank_only_precision_and_recall() -> None:
    frame = pd.DataFrame(
        {
            "sex": ["F"] * 100 + ["M"] * 100,
            "label": [1] * 10 + [0] * 90 + [1] * 2 + [0] * 98,
            "flagged": [True] * 10 + [False] * 90 + [True] * 2 + [True] * 8 + [False] * 90,
        }
    )
    male = row(fairness_audit(frame, groups=["sex"]), "sex", "M")
    assert math.isnan(male["precision_ratio"]) and math.isnan(male["recall_ratio"])
    assert male["flagged_rate_ratio"] == pytest.approx(1.0)
    assert math.isnan(male["fpr_ratio"])  # F flags no one who stays: fpr 0, ratio undefined


def test_censored_rows_and_bad_input() -> None:
    frame = planted()
    frame["censored"] = False
    frame.loc[0, "censored"] = True
    assert row(fairness_audit(frame, groups=["left_behind"]), "left_behind", "none")["n"] == 1399
    with pytest.raises(ValueError, match="lacks the group column"):
        fairness_audit(frame, groups=["hukou"])
    with pytest.raises(ValueError, match="lacks the column 'flagged'"):
        fairness_audit(frame.drop(columns="flagged"), groups=["sex"])


def test_plot_fairness_returns_a_figure() -> None:
    table = fairness_audit(planted(), groups=["left_behind", "sex"])
    figure = plot_fairness(table)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 4
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()][0] == "left_behind=none"
