import numpy as np
import pandas as pd

from models.gbm import fit_classifier, make_classifier, monotone_constraints, positive_weight


def test_monotone_constraints_follow_catalog_hints():
    assert monotone_constraints(["a", "b", "c"], {"a": 1, "c": -3}) == [1, 0, -1]


def test_positive_weight():
    assert positive_weight([0] * 99 + [1]) == np.sqrt(99)
    assert positive_weight([0, 0]) == 1.0


def test_monotone_feature_never_lowers_risk():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"absences": rng.integers(0, 20, 3000), "noise": rng.normal(size=3000)})
    y = (rng.random(3000) < 0.02 + 0.02 * X["absences"]).astype(int).to_numpy()
    clf = make_classifier(
        ["absences", "noise"],
        y=y,
        monotone={"absences": 1},
        overrides={"n_estimators": 60, "min_child_samples": 20},
    )
    fit_classifier(clf, X, y)
    grid = pd.DataFrame({"absences": np.arange(20), "noise": np.zeros(20)})
    p = clf.predict_proba(grid)[:, 1]
    assert np.all(np.diff(p) >= -1e-12)
    assert p[-1] > p[0]
