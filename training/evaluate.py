"""How good is a ranked list of students, at the capacity a school has to act on it?

Dropout is rare (DOMAIN.md, "Targets"), so the numbers that matter are precision and recall
among the students a school can actually visit in a week: the top `capacity_k` of each
school's list on each `as_of`. ROC-AUC, PR-AUC (average precision) and the Brier score are
reported beside them.

The frame every function here takes has one row per student per `as_of`: ``student_id``,
``as_of`` (datetime64[ns]), ``school_id``, ``class_id``, ``label`` (0/1, from
`training.labels.make_labels`, censored rows already removed) and one numeric column per
model or baseline score (higher = more at risk).

Plots return `matplotlib.figure.Figure` objects built without pyplot (no global state, no
display, no files); the caller saves them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

logger = logging.getLogger(__name__)

LADDER_COLUMN = "escalation_ladder"
SCHOOL_GROUPS: tuple[str, ...] = ("as_of", "school_id")
CLASS_GROUPS: tuple[str, ...] = ("as_of", "school_id", "class_id")
REQUIRED_COLUMNS: tuple[str, ...] = ("student_id", "as_of", "school_id", "class_id", "label")


def capacity_k(n_students: int, share: float) -> int:
    """How many students a group can act on: ``ceil(n_students * share)``, at least 1.

    Parameters
    ----------
    n_students : int
        Students in the group (a school or class on one `as_of`); 0 gives 0.
    share : float
        Share of the group that can be visited, in ``(0, 1]``.

    Returns
    -------
    int

    Examples
    --------
    >>> capacity_k(100, 0.07), capacity_k(10, 0.05), capacity_k(0, 0.05)
    (7, 1, 0)
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"The capacity share must be in (0, 1]; got {share}.")
    if n_students < 0:
        raise ValueError(f"n_students must be non-negative; got {n_students}.")
    if n_students == 0:
        return 0
    # round first so that 100 * 0.07 = 7.000000000000001 does not become 8
    return max(1, math.ceil(round(n_students * share, 9)))


def flag_top_k(
    frame: pd.DataFrame,
    *,
    score: str,
    share: float,
    by: tuple[str, ...] = SCHOOL_GROUPS,
) -> pd.Series:
    """Flag the top ``capacity_k(group size, share)`` students of each group by `score`.

    Ties in `score` are broken by ``student_id`` ascending, so the same frame always
    gives the same flags. A missing score ranks below every real score.

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with ``student_id``, the `by` columns and the `score` column.
    score : str
        Column to rank by, higher first.
    share : float
        Capacity share per group, see `capacity_k`.
    by : tuple of str, default ("as_of", "school_id")
        Columns that define a group; ``()`` makes the whole frame one group.

    Returns
    -------
    pd.Series of bool
        Named ``flagged``, aligned to ``frame.index``.
    """
    if frame.empty:
        return pd.Series(False, index=frame.index, name="flagged", dtype=bool)
    n_missing = int(frame[score].isna().sum())
    if n_missing:
        logger.warning("%d rows have no %s score; they rank last.", n_missing, score)
    n = len(frame)
    if by:
        group = frame.groupby(list(by), sort=False, dropna=False).ngroup().to_numpy()
    else:
        group = np.zeros(n, dtype=np.int64)
    student = pd.factorize(frame["student_id"], sort=True)[0]
    rank_key = -frame[score].to_numpy(dtype="float64")
    rank_key[np.isnan(rank_key)] = np.inf  # missing scores last
    # np.lexsort sorts by the last key first: group, then score descending, then student_id
    order = np.lexsort((student, rank_key, group))
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    sizes = np.diff(np.r_[starts, n])
    position = np.arange(n) - np.repeat(starts, sizes)
    capacity_k(1, share)  # validates the share
    # capacity_k, vectorised: every group here has at least one student
    capacity = np.maximum(1, np.ceil(np.round(np.repeat(sizes, sizes) * share, 9)))
    flagged = np.empty(n, dtype=bool)
    flagged[order] = position < capacity
    return pd.Series(flagged, index=frame.index, name="flagged")


def _safe_div(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _ranking_metrics(
    label: np.ndarray, score: np.ndarray, *, probability: bool
) -> dict[str, float]:
    """AUC, PR-AUC and (for probabilities) Brier on one set of rows; NaN when undefined."""
    both_classes = label.min(initial=1) == 0 and label.max(initial=0) == 1
    known = ~np.isnan(score)
    defined = both_classes and known.all()
    metrics = {
        "auc": float(roc_auc_score(label, score)) if defined else float("nan"),
        "pr_auc": float(average_precision_score(label, score)) if defined else float("nan"),
        "brier": float("nan"),
    }
    if probability and len(label) and known.all():
        metrics["brier"] = float(np.mean((score - label) ** 2))
    return metrics


def _capacity_counts(
    frame: pd.DataFrame, flagged: pd.Series, *, label: str = "label"
) -> pd.DataFrame:
    """Hits, flags and positives per `as_of`."""
    positive = frame[label].to_numpy() == 1
    counts = pd.DataFrame(
        {
            "as_of": frame["as_of"].to_numpy(),
            "flagged": flagged.to_numpy(),
            "hits": flagged.to_numpy() & positive,
            "positives": positive,
        }
    )
    return counts.groupby("as_of", sort=True).sum().astype("int64")


@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """Metrics of one score column.

    Attributes
    ----------
    name : str
        The score column.
    summary : Mapping[str, float | int]
        Metrics over the whole frame (keys as in `evaluate_scores`).
    per_as_of : pd.DataFrame
        One row per `as_of`, the per-date metrics.
    """

    name: str
    summary: Mapping[str, float | int]
    per_as_of: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN becomes None, dates become ISO strings."""
        out: dict[str, Any] = {key: _json_safe(value) for key, value in self.summary.items()}
        out["per_as_of"] = [
            {key: _json_safe(value) for key, value in row.items()}
            for row in self.per_as_of.to_dict(orient="records")
        ]
        return out


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Evaluation of several score columns on the same rows at one capacity share.

    Attributes
    ----------
    capacity_share : float
        Share of each school (and class) flagged.
    models : Mapping[str, ModelEvaluation]
        One entry per score column, in the order given.
    """

    capacity_share: float
    models: Mapping[str, ModelEvaluation] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ModelEvaluation:
        return self.models[name]

    def summary(self) -> pd.DataFrame:
        """One row per model, one column per summary metric."""
        return pd.DataFrame(
            [dict(model.summary) for model in self.models.values()],
            index=pd.Index(list(self.models), name="model"),
        )

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{model name: {metric: value, ..., "per_as_of": [...]}}``, JSON-safe."""
        return {name: model.to_dict() for name, model in self.models.items()}


def _json_safe(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | np.datetime64):
        stamp = pd.Timestamp(value)
        return None if pd.isna(stamp) else stamp.date().isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    return value


def _nanmean(values: pd.Series) -> float:
    clean = values.dropna()
    return float(clean.mean()) if len(clean) else float("nan")


def evaluate_scores(
    frame: pd.DataFrame,
    *,
    score_columns: Sequence[str],
    capacity_share: float = 0.05,
    probability_columns: Sequence[str] = (),
) -> EvaluationResult:
    """Precision and recall at capacity, AUCs and Brier for each score column.

    For every score column the summary holds:

    * ``auc``, ``pr_auc`` (average precision), ``brier``: pooled over all rows. ``brier`` is
      NaN unless the column is in `probability_columns`.
    * ``auc_mean_as_of``, ``pr_auc_mean_as_of``, ``brier_mean_as_of``: means over `as_of`
      dates where the metric is defined; ``n_as_of_undefined`` counts the dates without
      both classes (AUCs undefined there).
    * ``precision_at_k``, ``recall_at_k``: each school flags its top
      ``capacity_k(school size, capacity_share)`` students on each `as_of`; hits and flags
      are pooled over schools within an `as_of`, and the per-date values averaged over
      dates (recall only over dates with a positive).
    * ``calibration_error``: expected calibration error over 10 quantile bins, for
      probability columns (NaN otherwise). ``precision_at_k_pooled``,
      ``recall_at_k_pooled`` pool hits over all dates instead.
    * ``precision_at_k_class``, ``recall_at_k_class`` (and ``_pooled``): the same with the
      capacity per class (``capacity_k(class size, capacity_share)``).
    * ``k``: students flagged per `as_of` on average (school capacity); ``k_class``.
    * ``n_rows``, ``n_students`` (distinct), ``n_positive`` (positive rows), ``n_as_of``.
    * ``lift_over_ladder``: when the frame has an ``escalation_ladder`` column, hits of this
      score over hits of the ladder at the same capacity (so the same k), pooled over dates;
      NaN when the ladder finds nobody. ``precision_at_k_ladder`` is given beside it.

    Parameters
    ----------
    frame : pd.DataFrame
        ``student_id``, ``as_of``, ``school_id``, ``class_id``, ``label`` and the score
        columns. Rows with ``censored`` True, if that column exists, are left out.
    score_columns : sequence of str
        Columns to evaluate, higher = more at risk.
    capacity_share : float, default 0.05
        Share of each school or class that can be acted on.
    probability_columns : sequence of str, default ()
        Score columns that are probabilities (Brier is computed for them).

    Returns
    -------
    EvaluationResult
    """
    missing = [c for c in (*REQUIRED_COLUMNS, *score_columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"The evaluation frame lacks the column(s) {missing}.")
    unknown_probability = sorted(set(probability_columns) - set(score_columns))
    if unknown_probability:
        raise ValueError(f"probability_columns {unknown_probability} are not score columns.")
    if "censored" in frame.columns:
        n_censored = int(frame["censored"].astype(bool).sum())
        if n_censored:
            logger.info("Leaving out %d censored rows from the evaluation.", n_censored)
        frame = frame.loc[~frame["censored"].astype(bool)]
    if frame.empty:
        raise ValueError("The evaluation frame has no rows (after leaving out censored ones).")
    labels = frame["label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("The label column must hold only 0 and 1.")
    labels = labels.astype("int64")
    capacity_k(1, capacity_share)  # validates the share

    ladder_hits: pd.Series | None = None
    if LADDER_COLUMN in frame.columns:
        ladder_flags = flag_top_k(
            frame, score=LADDER_COLUMN, share=capacity_share, by=SCHOOL_GROUPS
        )
        ladder_counts = _capacity_counts(frame, ladder_flags)
        ladder_hits = ladder_counts["hits"]

    as_of_values = frame["as_of"].to_numpy()
    dates = np.sort(pd.unique(as_of_values))
    positions = {date: np.flatnonzero(as_of_values == date) for date in dates}

    models: dict[str, ModelEvaluation] = {}
    for column in score_columns:
        scores = frame[column].to_numpy(dtype="float64")
        probability = column in probability_columns
        if probability and not ((scores >= 0) & (scores <= 1) | np.isnan(scores)).all():
            raise ValueError(f"The probability column {column!r} has values outside [0, 1].")
        school = _capacity_counts(
            frame, flag_top_k(frame, score=column, share=capacity_share, by=SCHOOL_GROUPS)
        )
        klass = _capacity_counts(
            frame, flag_top_k(frame, score=column, share=capacity_share, by=CLASS_GROUPS)
        )
        rows = []
        for date in dates:
            index = positions[date]
            ranking = _ranking_metrics(labels[index], scores[index], probability=probability)
            s, c = school.loc[date], klass.loc[date]
            rows.append(
                {
                    "as_of": pd.Timestamp(date),
                    "n_students": len(index),
                    "n_positive": int(s["positives"]),
                    **ranking,
                    "k": int(s["flagged"]),
                    "hits": int(s["hits"]),
                    "precision_at_k": _safe_div(s["hits"], s["flagged"]),
                    "recall_at_k": _safe_div(s["hits"], s["positives"]),
                    "k_class": int(c["flagged"]),
                    "precision_at_k_class": _safe_div(c["hits"], c["flagged"]),
                    "recall_at_k_class": _safe_div(c["hits"], c["positives"]),
                }
            )
        per_as_of = pd.DataFrame(rows)
        pooled = _ranking_metrics(labels, scores, probability=probability)
        summary: dict[str, float | int] = {
            "auc": pooled["auc"],
            "pr_auc": pooled["pr_auc"],
            "brier": pooled["brier"],
            "auc_mean_as_of": _nanmean(per_as_of["auc"]),
            "pr_auc_mean_as_of": _nanmean(per_as_of["pr_auc"]),
            "brier_mean_as_of": _nanmean(per_as_of["brier"]),
            "calibration_error": (
                expected_calibration_error(labels, scores) if probability else math.nan
            ),
            "n_as_of_undefined": int(per_as_of["auc"].isna().sum()),
            "precision_at_k": _nanmean(per_as_of["precision_at_k"]),
            "recall_at_k": _nanmean(per_as_of["recall_at_k"]),
            "precision_at_k_pooled": _safe_div(school["hits"].sum(), school["flagged"].sum()),
            "recall_at_k_pooled": _safe_div(school["hits"].sum(), school["positives"].sum()),
            "precision_at_k_class": _nanmean(per_as_of["precision_at_k_class"]),
            "recall_at_k_class": _nanmean(per_as_of["recall_at_k_class"]),
            "precision_at_k_class_pooled": _safe_div(klass["hits"].sum(), klass["flagged"].sum()),
            "recall_at_k_class_pooled": _safe_div(klass["hits"].sum(), klass["positives"].sum()),
            "k": float(school["flagged"].mean()),
            "k_class": float(klass["flagged"].mean()),
            "n_rows": len(frame),
            "n_students": int(frame["student_id"].nunique()),
            "n_positive": int(labels.sum()),
            "n_as_of": len(dates),
            "capacity_share": capacity_share,
        }
        if ladder_hits is not None:
            summary["lift_over_ladder"] = _safe_div(school["hits"].sum(), ladder_hits.sum())
            summary["precision_at_k_ladder"] = _safe_div(ladder_hits.sum(), school["flagged"].sum())
        models[column] = ModelEvaluation(name=column, summary=summary, per_as_of=per_as_of)
        logger.info(
            "%s: precision@k %.3f, recall@k %.3f, PR-AUC %.3f over %d as_of dates "
            "(%d without both classes).",
            column,
            summary["precision_at_k"],
            summary["recall_at_k"],
            summary["pr_auc"],
            len(dates),
            summary["n_as_of_undefined"],
        )
    return EvaluationResult(capacity_share=capacity_share, models=models)


def reliability_table(
    y: ArrayLike,
    p: ArrayLike,
    n_bins: int = 10,
    *,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> pd.DataFrame:
    """Observed dropout rate against mean predicted probability, per probability bin.

    Parameters
    ----------
    y : array-like of 0/1
        Labels.
    p : array-like of float in [0, 1]
        Predicted probabilities.
    n_bins : int, default 10
        Number of bins.
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins on [0, 1], or bins holding equal numbers of rows (better for rare
        events, where most probabilities sit near 0). Quantile bins may merge on ties.

    Returns
    -------
    pd.DataFrame
        Columns ``p_low``, ``p_high``, ``n``, ``n_positive``, ``mean_predicted``,
        ``observed_rate``; one row per bin (empty uniform bins have n = 0 and NaN rates).
    """
    labels = np.asarray(y, dtype="float64").ravel()
    probabilities = np.asarray(p, dtype="float64").ravel()
    if labels.shape != probabilities.shape:
        raise ValueError("y and p must have the same length.")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}.")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(probabilities, np.linspace(0, 1, n_bins + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]]) if len(edges) else np.array([0.0, 1.0])
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile'; got {strategy!r}.")
    inner = edges[1:-1]
    bins = np.searchsorted(inner, probabilities, side="right")
    n_out = len(edges) - 1
    rows = []
    for b in range(n_out):
        in_bin = bins == b
        n = int(in_bin.sum())
        rows.append(
            {
                "p_low": float(edges[b]),
                "p_high": float(edges[b + 1]),
                "n": n,
                "n_positive": int(labels[in_bin].sum()),
                "mean_predicted": float(probabilities[in_bin].mean()) if n else math.nan,
                "observed_rate": float(labels[in_bin].mean()) if n else math.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(
    y: ArrayLike,
    p: ArrayLike,
    n_bins: int = 10,
    *,
    strategy: Literal["uniform", "quantile"] = "quantile",
) -> float:
    """Row-weighted mean gap between observed rate and mean probability over bins."""
    table = reliability_table(y, p, n_bins, strategy=strategy)
    used = table.loc[table["n"] > 0]
    if used.empty:
        return math.nan
    gaps = (used["observed_rate"] - used["mean_predicted"]).abs()
    return float((gaps * used["n"]).sum() / used["n"].sum())


def plot_reliability(
    y: ArrayLike,
    probabilities: Mapping[str, ArrayLike],
    *,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "quantile",
) -> Figure:
    """Reliability diagram: one line per model, the diagonal for perfect calibration.

    Parameters
    ----------
    y : array-like of 0/1
        Labels.
    probabilities : Mapping[str, array-like]
        Model name -> predicted probabilities for the same rows.
    n_bins : int, default 10
    strategy : {"uniform", "quantile"}, default "quantile"

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(5.5, 5))
    axes = figure.add_subplot()
    top = 0.0
    for name, p in probabilities.items():
        table = reliability_table(y, p, n_bins, strategy=strategy).dropna()
        axes.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=name)
        top = max(top, float(table[["mean_predicted", "observed_rate"]].to_numpy().max(initial=0)))
    top = min(1.0, top * 1.1) or 1.0
    axes.plot([0, top], [0, top], linestyle="--", color="grey", label="perfectly calibrated")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("mean predicted probability of dropout")
    axes.set_ylabel("observed dropout rate")
    axes.set_title("Reliability")
    axes.legend(loc="upper left")
    return figure


def plot_pr_curves(
    frame: pd.DataFrame,
    *,
    score_columns: Sequence[str],
    capacity_share: float | None = None,
    label: str = "label",
) -> Figure:
    """Precision-recall curves of several scores on the same rows (pooled over `as_of`).

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with `label` and the score columns.
    score_columns : sequence of str
    capacity_share : float, optional
        When given, each curve gets a marker at the operating point of school capacity
        (pooled precision and recall at k, see `evaluate_scores`).
    label : str, default "label"

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure = Figure(figsize=(6, 5))
    axes = figure.add_subplot()
    y = frame[label].to_numpy()
    for column in score_columns:
        precision, recall, _ = precision_recall_curve(y, frame[column].to_numpy())
        ap = average_precision_score(y, frame[column].to_numpy())
        (line,) = axes.step(recall, precision, where="post", label=f"{column} (AP {ap:.3f})")
        if capacity_share is not None:
            flags = flag_top_k(frame, score=column, share=capacity_share)
            hits = int((flags.to_numpy() & (y == 1)).sum())
            axes.plot(
                _safe_div(hits, int((y == 1).sum())),
                _safe_div(hits, int(flags.sum())),
                marker="o",
                color=line.get_color(),
            )
    axes.axhline(float(np.mean(y)) if len(y) else 0.0, linestyle=":", color="grey")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    title = "Precision-recall"
    if capacity_share is not None:
        title += f" (dots: top {capacity_share:.0%} of each school)"
    axes.set_title(title)
    axes.legend(loc="upper right")
    return figure


VISIT_COLUMN = "visit_led_return"


def evaluate_with_visits(
    frame: pd.DataFrame,
    *,
    score: str,
    capacity_share: float = 0.05,
    visit_column: str = VISIT_COLUMN,
) -> dict[str, float | int]:
    """Precision and recall at capacity where a visit that led to a return counts as caught.

    Each school flags its top ``capacity_k(school size, capacity_share)`` rows on each
    ``as_of`` by `score` (`flag_top_k`, as in `evaluate_scores`). A row is *caught* when it
    is flagged and either its ``label`` is 1 (dropped out within the horizon) or its
    `visit_column` is True (visited within the horizon and back in school after the visit,
    see `training.feedback.attach_interventions`): a visit that kept or brought a pupil in
    school turns a "false alarm" into the success it was. The wanted rows (recall's
    denominator) are those with ``label`` 1 or `visit_column` True, flagged or not.

    Parameters
    ----------
    frame : pd.DataFrame
        ``student_id``, ``as_of``, ``school_id``, ``label``, `score` and `visit_column`
        (bool). Rows with ``censored`` True, if that column exists, are left out.
    score : str
        The score column (higher = more at risk).
    capacity_share : float, default 0.05
    visit_column : str, default "visit_led_return"

    Returns
    -------
    dict
        ``precision_at_k``, ``recall_at_k`` (labels only, as `evaluate_scores`),
        ``precision_at_k_with_visits``, ``recall_at_k_with_visits`` (per-as_of means,
        recall over dates with a wanted row), their ``_pooled`` versions, ``k`` (flags per
        as_of), ``n_flagged``, ``n_positive``, ``n_visit_led_returns`` (rows),
        ``n_caught_by_visit`` (flagged rows with label 0 and a visit-led return),
        ``n_rows``, ``n_as_of``.
    """
    needed = ("student_id", "as_of", "school_id", "label", score, visit_column)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"The evaluation frame lacks the column(s) {missing}.")
    if "censored" in frame.columns:
        frame = frame.loc[~frame["censored"].astype(bool)]
    if frame.empty:
        raise ValueError("The evaluation frame has no rows (after leaving out censored ones).")
    labels = frame["label"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("The label column must hold only 0 and 1.")
    visits = frame[visit_column].fillna(False).to_numpy(dtype=bool)
    positive = labels.astype("int64") == 1
    flagged = flag_top_k(frame, score=score, share=capacity_share, by=SCHOOL_GROUPS)
    counts = pd.DataFrame(
        {
            "as_of": frame["as_of"].to_numpy(),
            "flagged": flagged.to_numpy(),
            "label": positive,
            "wanted": positive | visits,
        }
    ).assign(
        hits=lambda f: f["flagged"] & f["label"],
        caught=lambda f: f["flagged"] & f["wanted"],
    )
    per = counts.groupby("as_of", sort=True).sum().astype("int64")

    def mean_ratio(numerator: str, denominator: str) -> float:
        ratios = [_safe_div(n, d) for n, d in zip(per[numerator], per[denominator], strict=True)]
        return _nanmean(pd.Series(ratios, dtype="float64"))

    total = per.sum()
    result: dict[str, float | int] = {
        "precision_at_k": mean_ratio("hits", "flagged"),
        "recall_at_k": mean_ratio("hits", "label"),
        "precision_at_k_with_visits": mean_ratio("caught", "flagged"),
        "recall_at_k_with_visits": mean_ratio("caught", "wanted"),
        "precision_at_k_pooled": _safe_div(total["hits"], total["flagged"]),
        "recall_at_k_pooled": _safe_div(total["hits"], total["label"]),
        "precision_at_k_with_visits_pooled": _safe_div(total["caught"], total["flagged"]),
        "recall_at_k_with_visits_pooled": _safe_div(total["caught"], total["wanted"]),
        "k": float(per["flagged"].mean()),
        "n_flagged": int(total["flagged"]),
        "n_positive": int(total["label"]),
        "n_visit_led_returns": int(visits.sum()),
        "n_caught_by_visit": int((flagged.to_numpy() & visits & ~positive).sum()),
        "n_rows": len(frame),
        "n_as_of": len(per),
        "capacity_share": capacity_share,
    }
    logger.info(
        "%s: precision@k %.3f, with visit-led returns %.3f (%d flagged rows caught by a visit).",
        score,
        result["precision_at_k"],
        result["precision_at_k_with_visits"],
        result["n_caught_by_visit"],
    )
    return result
