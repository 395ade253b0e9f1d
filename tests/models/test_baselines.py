"""The rule baselines behave as scikit-learn estimators and rank as the written rules do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.baselines import EscalationLadderBaseline, SingleFeatureRank, make_logistic_baseline


# Plain arrays carry no names, so the checks use column positions.
@parametrize_with_checks(
    [EscalationLadderBaseline(run_feature=0, recent_feature=1), SingleFeatureRank(feature=0)]
)
def test_sklearn_compatible(estimator: Any, check: Callable[[Any], None]) -> None:
    check(estimator)


def snapshot() -> pd.DataFrame:
    """Five students as of one Monday, id columns riding along."""
    return pd.DataFrame(
        {
            "student_id": ["a", "b", "c", "d", "e"],
            "as_of": pd.to_datetime(["2024-03-04"] * 5),
            "unexcused_run": [3, 1, 0, 0, 1],
            "unexcused_30d": [3, 1, 30, 0, 1],
            "hardship_count": [0, 1, 2, 3, 1],
        }
    )


def test_ladder_ranks_a_long_run_above_a_short_run_above_30_day_counts() -> None:
    X = snapshot()
    model = EscalationLadderBaseline().fit(X, [1, 0, 1, 0, 0])
    rule = model.rule_score(X)
    # a (3-day run) > b = e (1-day run) > c (no run, 30 days in the month) > d
    assert rule[0] > rule[1] > rule[2] > rule[3]
    assert rule[1] == rule[4]
    p = model.predict_proba(X)[:, 1]
    assert p[0] > p[1] > p[2] > p[3]
    assert p[1] == p[4]  # the rule's tie stays a tie
    assert model.feature_indices_ == (2, 3)
    assert list(model.feature_names_in_) == list(X.columns)


def test_ladder_uses_recent_absences_only_among_equal_runs() -> None:
    X = pd.DataFrame({"unexcused_run": [2, 2, 2, 1], "unexcused_30d": [2, 8, 5, 20]})
    rule = EscalationLadderBaseline().fit(X, [0, 1, 0, 1]).rule_score(X)
    assert np.argsort(-rule).tolist() == [1, 2, 0, 3]


def test_probabilities_are_monotone_in_the_rule_score() -> None:
    rng = np.random.default_rng(0)
    n = 500
    X = pd.DataFrame(
        {
            "unexcused_run": rng.integers(0, 6, n),
            "unexcused_30d": rng.integers(0, 15, n),
            "hardship_count": rng.integers(0, 4, n),
        }
    )
    logit = -4 + 0.8 * X["unexcused_run"] + 0.1 * X["unexcused_30d"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    for model in (EscalationLadderBaseline(), SingleFeatureRank()):
        model.fit(X, y)
        rule = model.rule_score(X)
        p = model.predict_proba(X)[:, 1]
        order = np.argsort(rule, kind="stable")
        assert np.all(np.diff(p[order]) >= 0)
        # distinct rule scores stay distinct, equal ones stay equal
        assert len(np.unique(p)) == len(np.unique(rule))
        assert np.all((p >= 0) & (p <= 1))
        # the probabilities are the isotonic fit, up to the tilt
        brier = np.mean((p - y) ** 2)
        step = model.isotonic_.predict(rule)
        assert brier == pytest.approx(np.mean((step - y) ** 2), abs=1e-5)


def test_single_feature_rank_and_array_positions() -> None:
    X = snapshot()
    by_name = SingleFeatureRank().fit(X, [0, 0, 1, 1, 0])
    array = X[["unexcused_run", "unexcused_30d", "hardship_count"]].to_numpy()
    positional = SingleFeatureRank(feature=2).fit(array, [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(by_name.predict_proba(X), positional.predict_proba(array))
    assert not hasattr(positional, "feature_names_in_")


def test_missing_values_matter_only_in_the_rule_columns() -> None:
    X = snapshot()[["unexcused_run", "unexcused_30d", "hardship_count"]].astype(float)
    X.loc[0, "hardship_count"] = np.nan  # e.g. a missed exam elsewhere in the snapshot
    y = [1, 0, 1, 0, 0]
    ladder = EscalationLadderBaseline().fit(X, y)
    assert np.isfinite(ladder.predict_proba(X)).all()
    on_array = EscalationLadderBaseline(run_feature=0, recent_feature=1).fit(X.to_numpy(), y)
    np.testing.assert_array_equal(on_array.predict_proba(X.to_numpy()), ladder.predict_proba(X))
    with pytest.raises(ValueError, match="NaN"):
        SingleFeatureRank().fit(X, y)


def test_refusals_say_what_is_wrong() -> None:
    X = snapshot()
    with pytest.raises(ValueError, match="no column 'absent_streak'"):
        SingleFeatureRank(feature="absent_streak").fit(X, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="must be a DataFrame"):
        SingleFeatureRank().fit(np.zeros((5, 2)), [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="only one class"):
        EscalationLadderBaseline().fit(X, [0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="Only binary"):
        EscalationLadderBaseline().fit(X, [0, 1, 2, 0, 1])
    with pytest.raises(NotFittedError):
        EscalationLadderBaseline().predict_proba(X)


def test_init_only_stores() -> None:
    model = EscalationLadderBaseline(run_feature="x", recent_feature=7)
    assert model.get_params() == {"run_feature": "x", "recent_feature": 7}
    assert clone(model).get_params() == model.get_params()


def test_logistic_baseline() -> None:
    pipeline = make_logistic_baseline(random_state=3)
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["impute", "scale", "model"]
    assert pipeline.named_steps["impute"].strategy == "median"
    assert pipeline.named_steps["impute"].add_indicator
    logistic = pipeline.named_steps["model"]
    assert isinstance(logistic, LogisticRegression)
    assert logistic.class_weight == "balanced" and logistic.max_iter == 2000
    assert logistic.random_state == 3
    X = snapshot()[["unexcused_run", "unexcused_30d", "hardship_count"]].astype(float)
    X.iloc[0, 2] = np.nan
    pipeline.fit(X, [1, 0, 1, 0, 0])
    assert pipeline.predict_proba(X).shape == (5, 2)
