"""Does the list serve every group of children alike?

The groups the 控辍保学 documents name again and again (left-behind children, registered
poverty and 低保 households, disability, migrant children, sex, ethnic minority) each get
the metrics of a flagged list: how many are flagged, how many flagged ones really drop out
(precision), how many dropouts are caught (recall), and how many who stay are flagged
anyway (false positive rate). Each value of a group is compared with that group's largest
value (by number of students), and a ratio outside ``[0.8, 1.25]`` (the four-fifths rule
and its inverse) is called a disparity.

Small groups give unstable ratios, so ratios are NaN (never a crash and never a disparity)
where there are too few students or too few dropouts to say anything.

The frame has one row per student per `as_of` with a boolean ``flagged`` column (e.g. from
`training.evaluate.flag_top_k`), a 0/1 ``label`` and the group columns (from the
``students`` table; ``ethnic_minority`` is for audits only, never a model feature).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DEFAULT_GROUPS: tuple[str, ...] = (
    "left_behind",
    "poverty_registered",
    "dibao",
    "sex",
    "disability",
    "migrant_child",
    "ethnic_minority",
)
METRICS: tuple[str, ...] = ("flagged_rate", "precision", "recall", "fpr")
# precision and recall are about dropouts, so they need enough of them
_POSITIVE_METRICS = frozenset({"precision", "recall"})
MISSING_VALUE = "missing"


def _divide(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Element-wise ratio, NaN where the denominator is 0 or either side is NaN."""
    num = numerator.astype("float64")
    den = denominator.astype("float64")
    return (num / den.where(den != 0)).astype("float64")


def _value_table(
    values: pd.Series, is_flagged: np.ndarray, is_positive: np.ndarray
) -> pd.DataFrame:
    """Counts and metrics per value of one group, largest value first."""
    counts = (
        pd.DataFrame(
            {
                "value": values.to_numpy(),
                "flagged": is_flagged,
                "positive": is_positive,
                "hit": is_flagged & is_positive,
            }
        )
        .groupby("value", sort=True)
        .agg(
            n=("flagged", "size"),
            n_positive=("positive", "sum"),
            n_flagged=("flagged", "sum"),
            hits=("hit", "sum"),
        )
        .astype("int64")
        .reset_index()
    )
    counts["flagged_rate"] = _divide(counts["n_flagged"], counts["n"])
    counts["precision"] = _divide(counts["hits"], counts["n_flagged"])
    counts["recall"] = _divide(counts["hits"], counts["n_positive"])
    counts["fpr"] = _divide(
        counts["n_flagged"] - counts["hits"], counts["n"] - counts["n_positive"]
    )
    # largest value first; among equals, the first in sorted order
    return counts.sort_values(["n", "value"], ascending=[False, True], kind="mergesort")


def fairness_audit(
    frame: pd.DataFrame,
    *,
    flagged: str = "flagged",
    label: str = "label",
    groups: Sequence[str] | None = None,
    min_positives: int = 5,
    min_group_size: int = 20,
    bounds: tuple[float, float] = (0.8, 1.25),
) -> pd.DataFrame:
    """Metrics of a flagged list per group value, and their ratios to the largest value.

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with the `flagged` (bool) and `label` (0/1) columns and the group columns.
        Rows with ``censored`` True, if that column exists, are left out.
    flagged : str, default "flagged"
        Column that says who is on the list.
    label : str, default "label"
        Column with the outcome, 1 = dropped out within the horizon.
    groups : sequence of str, optional
        Group columns to audit. By default those of `DEFAULT_GROUPS` that the frame has.
    min_positives : int, default 5
        Precision and recall ratios are NaN when the value or its reference has fewer
        dropouts than this.
    min_group_size : int, default 20
        All ratios are NaN when the value or its reference has fewer rows than this.
    bounds : (float, float), default (0.8, 1.25)
        Ratios outside this closed interval count as disparities.

    Returns
    -------
    pd.DataFrame
        One row per (``group``, ``value``), values as strings (a missing value is
        ``"missing"``), largest value first. Columns: ``group``, ``value``, ``reference``
        (the group's largest value), ``n``, ``n_positive``, ``n_flagged``, the metrics
        ``flagged_rate``, ``precision``, ``recall``, ``fpr``, for each metric ``<metric>_ratio``
        (value / reference) and ``<metric>_disparate`` (bool, ratio outside `bounds`), and
        ``disparate`` (any metric disparate).

    Examples
    --------
    >>> frame = pd.DataFrame({"flagged": [True, False] * 20, "label": [1, 0] * 20,
    ...                       "sex": ["F"] * 20 + ["M"] * 20})
    >>> fairness_audit(frame, min_positives=1)[["value", "recall", "recall_ratio"]]
      value  recall  recall_ratio
    0     F     1.0           1.0
    1     M     1.0           1.0
    """
    for column in (flagged, label):
        if column not in frame.columns:
            raise ValueError(f"The audit frame lacks the column {column!r}.")
    if groups is None:
        groups = [g for g in DEFAULT_GROUPS if g in frame.columns]
    else:
        missing = [g for g in groups if g not in frame.columns]
        if missing:
            raise ValueError(f"The audit frame lacks the group column(s) {missing}.")
    low, high = bounds
    if "censored" in frame.columns:
        frame = frame.loc[~frame["censored"].astype(bool)]

    is_flagged = frame[flagged].astype(bool).to_numpy()
    is_positive = frame[label].to_numpy() == 1
    tables = []
    for group in groups:
        values = frame[group].astype("object").where(frame[group].notna(), MISSING_VALUE)
        table = _value_table(values.map(str), is_flagged, is_positive)
        reference = table.iloc[0]
        table.insert(0, "group", group)
        table["reference"] = reference["value"]
        too_small = np.minimum(table["n"], reference["n"]) < min_group_size
        too_few = np.minimum(table["n_positive"], reference["n_positive"]) < min_positives
        disparate = pd.Series(False, index=table.index)
        for metric in METRICS:
            ratio = _divide(table[metric], pd.Series(reference[metric], index=table.index))
            unstable = too_small | (too_few if metric in _POSITIVE_METRICS else False)
            ratio = ratio.where(~unstable)
            table[f"{metric}_ratio"] = ratio
            table[f"{metric}_disparate"] = ratio.notna() & ((ratio < low) | (ratio > high))
            disparate |= table[f"{metric}_disparate"]
        table["disparate"] = disparate
        tables.append(table)
    columns = [
        "group",
        "value",
        "reference",
        "n",
        "n_positive",
        "n_flagged",
        *METRICS,
        *(f"{m}_ratio" for m in METRICS),
        *(f"{m}_disparate" for m in METRICS),
        "disparate",
    ]
    if not tables:
        return pd.DataFrame(columns=columns)
    audit = pd.concat(tables, ignore_index=True)[columns]
    logger.info(
        "Fairness audit over %d groups (%d values): %d values with a disparity.",
        len(groups),
        len(audit),
        int(audit["disparate"].sum()) if len(audit) else 0,
    )
    return audit


def disparities(table: pd.DataFrame) -> list[str]:
    """One sentence per disparity in a `fairness_audit` table.

    Returns
    -------
    list of str
        E.g. ``"recall for left_behind=both_parents_away is 0.62× that of none"``, in table
        order, metrics in the order of `METRICS`.
    """
    sentences = []
    for row in table.itertuples(index=False):
        for metric in METRICS:
            if getattr(row, f"{metric}_disparate"):
                ratio = getattr(row, f"{metric}_ratio")
                sentences.append(
                    f"{metric} for {row.group}={row.value} is {ratio:.2f}× that of {row.reference}"
                )
    return sentences


def plot_fairness(table: pd.DataFrame, *, bounds: tuple[float, float] = (0.8, 1.25)) -> Figure:
    """Ratio of each metric to the group's largest value, one panel per metric.

    Bars outside the shaded `bounds` band are disparities; NaN ratios (too few students or
    dropouts) are drawn as no bar, labelled ``n/a``.

    Parameters
    ----------
    table : pd.DataFrame
        Output of `fairness_audit`.
    bounds : (float, float), default (0.8, 1.25)

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = [f"{g}={v}" for g, v in zip(table["group"], table["value"], strict=True)]
    height = max(3.0, 0.3 * len(names) + 1.5)
    figure = Figure(figsize=(4 * len(METRICS), height))
    axes = figure.subplots(1, len(METRICS), sharey=True, squeeze=False)[0]
    positions = np.arange(len(names))
    for ax, metric in zip(axes, METRICS, strict=True):
        ratios = table[f"{metric}_ratio"].to_numpy(dtype="float64")
        colors = [
            "tab:red" if flag else "tab:blue" for flag in table[f"{metric}_disparate"].to_numpy()
        ]
        ax.barh(positions, np.nan_to_num(ratios, nan=0.0), color=colors)
        for y, ratio in zip(positions, ratios, strict=True):
            if math.isnan(ratio):
                ax.text(0.02, y, "n/a", va="center", fontsize=8, color="grey")
        ax.axvspan(*bounds, color="grey", alpha=0.15)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{metric} ratio")
        ax.set_xlim(0, max(2.0, float(np.nanmax(ratios, initial=0.0)) * 1.1))
    axes[0].set_yticks(positions, names)
    axes[0].invert_yaxis()
    figure.suptitle("Fairness: each value against its group's largest value")
    figure.tight_layout()
    return figure
