"""Baselines a model has to beat: the written escalation ladder and one-feature ranks.

Both rules are scikit-learn classifiers. Their ranking is the rule's own; an isotonic fit
on the training labels maps the rule score to a probability so that the Brier score and
reliability plots mean something. Equal rule scores get equal probabilities (nothing else
breaks their ties); distinct rule scores keep their order, because a tiny strictly
increasing term (`TILT`) is added to the isotonic step function, which would otherwise
merge neighbouring scores into one step.

X may be a DataFrame (columns picked by name; other columns, ids or features with missing
values, may ride along) or a plain array (columns picked by position). Missing or infinite
values in the rule's own columns are refused with a ValueError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

#: Weight of the strictly increasing term added to the isotonic probabilities. Small
#: enough to leave the Brier score unchanged to six decimals, large enough for float64
#: to keep distinct rule scores apart.
TILT = 1e-6


def _squash(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Strictly increasing map of the real line into (0, 1)."""
    return np.asarray(0.5 + 0.5 * x / (1.0 + np.abs(x)), dtype=np.float64)


class _RuleRank(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Shared machinery: pick columns, compute the rule score, calibrate it isotonically."""

    def _feature_keys(self) -> tuple[str | int, ...]:
        raise NotImplementedError

    def _rule(self, columns: NDArray[np.float64]) -> NDArray[np.float64]:
        raise NotImplementedError

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        if tags.classifier_tags is not None:
            tags.classifier_tags.multi_class = False
            # a fixed rule on a fixed column cannot promise accuracy on arbitrary data
            tags.classifier_tags.poor_score = True
        return tags

    def _resolve(self, X: Any) -> tuple[int, ...]:
        """Column positions of the rule's features in X (names need a DataFrame)."""
        names = getattr(self, "feature_names_in_", None)
        positions = []
        for key in self._feature_keys():
            if isinstance(key, str):
                if names is None:
                    raise ValueError(
                        f"Feature {key!r} is named, so X must be a DataFrame with that column; "
                        "for a plain array give the column position instead."
                    )
                matches = np.flatnonzero(np.asarray(names) == key)
                if not len(matches):
                    raise ValueError(f"X has no column {key!r}.")
                positions.append(int(matches[0]))
            elif isinstance(key, int | np.integer) and not isinstance(key, bool):
                if not 0 <= key < self.n_features_in_:
                    raise ValueError(
                        f"Column position {key} is out of range for X with "
                        f"{self.n_features_in_} feature(s)."
                    )
                positions.append(int(key))
            else:
                raise ValueError(f"A feature must be a column name or position; got {key!r}.")
        return tuple(positions)

    def _columns(self, X: Any, *, reset: bool) -> NDArray[np.float64]:
        """Validate X and return the rule's columns as float64, shape (n, n_rule_features)."""
        if isinstance(X, pd.DataFrame):
            # only the rule's columns need to be numeric; id columns may ride along
            validate_data(self, X, skip_check_array=True, reset=reset)
            if reset:
                self.feature_indices_ = self._resolve(X)
            chosen = X.iloc[:, list(self.feature_indices_)]
            return np.asarray(check_array(chosen, dtype=np.float64), dtype=np.float64)
        # missing values only matter in the rule's own columns, as for DataFrames
        array = validate_data(self, X, dtype=np.float64, reset=reset, ensure_all_finite=False)
        if reset:
            self.feature_indices_ = self._resolve(array)
        chosen = array[:, list(self.feature_indices_)]
        return np.asarray(check_array(chosen, dtype=np.float64), dtype=np.float64)

    def fit(self, X: Any, y: ArrayLike) -> _RuleRank:
        """Learn the map from rule score to probability of the positive class.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Holds the rule's columns.
        y : array-like of shape (n_samples,)
            Binary labels; the larger of the two (after sorting) is the positive class.

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        if np.unique(y).size < 2:
            raise ValueError(
                "The training labels hold only one class; the rule needs both to map its "
                "score to a probability."
            )
        columns = self._columns(X, reset=True)
        check_consistent_length(columns, y)
        self.classes_ = np.unique(y)
        positive = (y == self.classes_[1]).astype(np.float64)
        self.isotonic_ = IsotonicRegression(
            y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip"
        ).fit(self._rule(columns), positive)
        return self

    def rule_score(self, X: Any) -> NDArray[np.float64]:
        """The rule's own score (higher = more at risk), before calibration.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self._rule(self._columns(X, reset=False))

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """Probability of each class: isotonic map of the rule score, order kept.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Columns follow ``classes_``.
        """
        score = self.rule_score(X)
        step = np.asarray(self.isotonic_.predict(score), dtype=np.float64)
        p = (1.0 - TILT) * step + TILT * _squash(score)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> NDArray[Any]:
        """The more probable class of each row.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return np.asarray(self.classes_[(proba[:, 1] > 0.5).astype(int)])


class EscalationLadderBaseline(_RuleRank):
    """The county's written rule: longest current unexcused run first, then recent absences.

    Students are ranked by the current run of unexcused absence days (the ladder's 1, 2, 3
    days), and among equal runs by unexcused absences in the last 30 days. The rule score is
    ``run + s(recent)`` with ``s`` strictly increasing into (0, 1), so for whole-day runs a
    longer run always ranks higher, whatever the 30-day count.

    Parameters
    ----------
    run_feature : str or int, default "unexcused_run"
        Column with the current run of unexcused absence days (name, or position for
        plain arrays).
    recent_feature : str or int, default "unexcused_30d"
        Column with unexcused absence days in the last 30 days.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels.
    n_features_in_ : int
        Number of columns of X seen in fit.
    feature_names_in_ : ndarray of str
        Column names of X, when X was a DataFrame.
    feature_indices_ : tuple of int
        Positions of the run and recent columns in X.
    isotonic_ : IsotonicRegression
        Map from rule score to probability of the positive class.

    Examples
    --------
    >>> X = pd.DataFrame({"unexcused_run": [0, 1, 3, 0], "unexcused_30d": [9, 1, 3, 0]})
    >>> model = EscalationLadderBaseline().fit(X, [0, 0, 1, 0])
    >>> model.rule_score(X).argsort()[::-1].tolist()
    [2, 1, 0, 3]
    """

    def __init__(
        self,
        run_feature: str | int = "unexcused_run",
        recent_feature: str | int = "unexcused_30d",
    ) -> None:
        self.run_feature = run_feature
        self.recent_feature = recent_feature

    def _feature_keys(self) -> tuple[str | int, ...]:
        return (self.run_feature, self.recent_feature)

    def _rule(self, columns: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(columns[:, 0] + _squash(columns[:, 1]), dtype=np.float64)


class SingleFeatureRank(_RuleRank):
    """Rank students by one feature, higher = more at risk.

    Parameters
    ----------
    feature : str or int, default "hardship_count"
        Column to rank by (name, or position for plain arrays).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        Class labels.
    n_features_in_ : int
        Number of columns of X seen in fit.
    feature_names_in_ : ndarray of str
        Column names of X, when X was a DataFrame.
    feature_indices_ : tuple of int
        Position of the feature in X.
    isotonic_ : IsotonicRegression
        Map from the feature to probability of the positive class.

    Examples
    --------
    >>> X = pd.DataFrame({"hardship_count": [0, 2, 1, 3]})
    >>> model = SingleFeatureRank().fit(X, [0, 1, 0, 1])
    >>> model.predict_proba(X)[:, 1].argsort().tolist()
    [0, 2, 1, 3]
    """

    def __init__(self, feature: str | int = "hardship_count") -> None:
        self.feature = feature

    def _feature_keys(self) -> tuple[str | int, ...]:
        return (self.feature,)

    def _rule(self, columns: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(columns[:, 0], dtype=np.float64)


def make_logistic_baseline(*, random_state: int = 0) -> Pipeline:
    """A plain, well-behaved linear baseline on all numeric features.

    Median imputation with missing-value indicators, standard scaling, and a
    class-balanced logistic regression.

    Parameters
    ----------
    random_state : int, default 0
        Seed of the logistic regression's solver.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``impute``, ``scale``, ``model``; unfitted.
    """
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
            (
                "model",
                LogisticRegression(
                    class_weight="balanced", max_iter=2000, random_state=random_state
                ),
            ),
        ]
    )
