import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.explain import SMALL_BATCH, contributions, group_contributions, threads_for, top_reasons

GROUPS = {
    "unexcused_30d": "attendance",
    "unexcused_run": "attendance",
    "poverty_registered": "family_hardship",
    "latest_score_share": "grades",
}
CODES = {
    "unexcused_30d": "ABSENCE_RECENT",
    "unexcused_run": "ABSENCE_STREAK",
    "poverty_registered": "POVERTY",
    "latest_score_share": "GRADES_LOW",
}


@pytest.fixture(scope="module")
def booster_and_X():
    rng = np.random.default_rng(0)
    n = 5000
    X = pd.DataFrame(
        {
            "unexcused_30d": rng.poisson(1, n).astype(float),
            "unexcused_run": rng.integers(0, 4, n).astype(float),
            "poverty_registered": (rng.random(n) < 0.2).astype(float),
            "latest_score_share": rng.uniform(0.2, 1, n),
        }
    )
    logit = -5 + 0.6 * X["unexcused_30d"] + 0.8 * X["unexcused_run"] + X["poverty_registered"]
    logit -= 2 * X["latest_score_share"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 7},
        lgb.Dataset(X, y),
        num_boost_round=50,
    )
    return booster, X


def test_contributions_add_up_to_the_margin(booster_and_X):
    booster, X = booster_and_X
    contrib = contributions(booster, X)
    margin = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(contrib.sum(axis=1), margin, atol=1e-9)
    grouped = group_contributions(contrib, list(X.columns), GROUPS)
    np.testing.assert_allclose(grouped.sum(axis=1) + contrib[:, -1], margin, atol=1e-9)
    assert set(grouped.columns) == {"attendance", "family_hardship", "grades"}


def test_top_reasons_rank_groups_and_use_present_values(booster_and_X):
    booster, X = booster_and_X
    contrib = contributions(booster, X)
    reasons = top_reasons(X, contrib, groups=GROUPS, reason_codes=CODES, n=3)
    assert len(reasons) == len(X)
    for row, rs in enumerate(reasons):
        contribs = [r.contribution for r in rs]
        assert contribs == sorted(contribs, reverse=True)
        assert all(c > 0 for c in contribs)
        assert len({r.group for r in rs}) == len(rs)
        for r in rs:
            assert r.value == X.iloc[row][r.feature]
            if r.feature == "poverty_registered":
                assert r.value == 1.0  # a 0 flag never voices a reason


def test_heavy_absence_is_the_first_reason(booster_and_X):
    booster, X = booster_and_X
    pupil = pd.DataFrame(
        [
            {
                "unexcused_30d": 9.0,
                "unexcused_run": 3.0,
                "poverty_registered": 0.0,
                "latest_score_share": 0.9,
            }
        ]
    )
    reasons = top_reasons(pupil, contributions(booster, pupil), groups=GROUPS, reason_codes=CODES)[
        0
    ]
    assert reasons[0].group == "attendance"
    assert reasons[0].reason_code in {"ABSENCE_RECENT", "ABSENCE_STREAK"}
    assert "POVERTY" not in [r.reason_code for r in reasons]


def test_a_few_rows_are_explained_on_one_thread_with_the_same_numbers(booster_and_X):
    booster, X = booster_and_X
    assert threads_for(1) == {"num_threads": 1} and threads_for(SMALL_BATCH + 1) == {}
    few = X.head(3)
    np.testing.assert_array_equal(
        contributions(booster, few), booster.predict(few, pred_contrib=True)
    )
    np.testing.assert_array_equal(contributions(booster, X)[:3], contributions(booster, few))
