"""Drift between the training window and the newest weeks, and broken-feed checks.

Everything here is pure: frames and dates in, a `DriftReport` out. `run_drift` wires the
snapshots (and a model's scores, when one is given); `training.drift_report` renders the
report and writes it to a folder or an MLflow run (the I/O edge).

* **PSI** (population stability index) of a feature compares its distribution on the
  reference snapshots with that on the recent ones. Bins are cut at the reference's
  deciles (data values, so a 0/1 flag gets two bins, not one); a missing value (NaN) is a
  bin of its own; an empty bin counts as `EPSILON` so the logarithm stays finite.
  ``PSI = sum((recent - reference) * ln(recent / reference))`` over the bins.
  Severity: below 0.1 ``stable``, 0.1 to 0.25 ``moderate``, above 0.25 ``major``.
* **Score shift**: the PSI of the model's ``risk_score``, and the share of student-weeks
  in each tier, tiers by the capacity rule of the weekly lists (per school and as_of, the
  top ``ceil(5 %)`` are ``high``, the next twice as many ``medium``, the rest ``low``).
* **Feed checks** on the raw tables, each a sentence naming the school:
  no absences recorded (any non-``present`` attendance row) in the school's last two
  school weeks before `date_to` although it had absences earlier; a whole term of the
  window with school days but no exam results; a calendar that stops before the window
  ends (more than a week before the county's last school day). They live in
  `features.feeds`, so the county dashboard shows the same findings.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from features.catalog import feature_columns, spec
from features.feeds import FeedWarning, feed_warnings
from features.snapshot import build_snapshots
from features.tables import RawTables
from training.matrices import school_days
from training.splits import weekly_as_ofs

logger = logging.getLogger(__name__)

N_BINS = 10
EPSILON = 1e-4
STABLE_BELOW = 0.1
MAJOR_ABOVE = 0.25
SEVERITIES = ("stable", "moderate", "major")
TIERS = ("high", "medium", "low")
CAPACITY_SHARE = 0.05
MEDIUM_FACTOR = 2

FEATURE_TABLE_COLUMNS = (
    "feature",
    "group",
    "psi",
    "severity",
    "reference_mean",
    "recent_mean",
    "reference_missing",
    "recent_missing",
)


class Scorer(Protocol):
    """Anything with `RiskModel.risk_scores`: a snapshot frame -> one risk_score per row."""

    def risk_scores(self, snapshot: pd.DataFrame) -> np.ndarray: ...


# -- PSI ---------------------------------------------------------------------------------


def _clean(values: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)


def quantile_cuts(reference: np.ndarray, *, n_bins: int = N_BINS) -> np.ndarray:
    """Upper bin edges: the reference's inner quantiles, as data values, deduplicated.

    Bin ``i`` holds ``cuts[i-1] < x <= cuts[i]``; the last bin everything above the last cut.
    """
    known = reference[~np.isnan(reference)]
    if known.size == 0 or n_bins < 2:
        return np.empty(0, dtype=np.float64)
    probs = np.arange(1, n_bins) / n_bins
    return np.unique(np.quantile(known, probs, method="inverted_cdf"))


def binned_shares(
    reference: Sequence[float] | np.ndarray | pd.Series,
    recent: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_bins: int = N_BINS,
) -> pd.DataFrame:
    """Share of each sample per bin (bins from the reference; NaN is the last bin).

    Returns
    -------
    pd.DataFrame
        ``bin`` (str: ``<= c``, ``> c`` or ``missing``), ``upper`` (float, NaN for the
        open top bin and the missing bin), ``reference_share``, ``recent_share`` (float,
        raw shares, each column sums to 1 unless its sample is empty).
    """
    ref, new = _clean(reference), _clean(recent)
    cuts = quantile_cuts(ref, n_bins=n_bins)
    n_value_bins = len(cuts) + 1

    def shares(x: np.ndarray) -> np.ndarray:
        counts = np.zeros(n_value_bins + 1, dtype=np.float64)
        missing = np.isnan(x)
        idx = np.searchsorted(cuts, x[~missing], side="left")
        np.add.at(counts, idx, 1.0)
        counts[-1] = missing.sum()
        return counts / x.size if x.size else counts

    labels = [f"<= {c:.4g}" for c in cuts]
    labels.append(f"> {cuts[-1]:.4g}" if len(cuts) else "all values")
    labels.append("missing")
    return pd.DataFrame(
        {
            "bin": labels,
            "upper": [*cuts.tolist(), np.nan, np.nan],
            "reference_share": shares(ref),
            "recent_share": shares(new),
        }
    )


def psi_from_shares(
    reference_share: np.ndarray, recent_share: np.ndarray, *, epsilon: float = EPSILON
) -> float:
    """PSI of two share vectors over the same bins; empty bins count as `epsilon`."""
    p = np.maximum(np.asarray(reference_share, dtype=np.float64), epsilon)
    q = np.maximum(np.asarray(recent_share, dtype=np.float64), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def population_stability_index(
    reference: Sequence[float] | np.ndarray | pd.Series,
    recent: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_bins: int = N_BINS,
    epsilon: float = EPSILON,
) -> float:
    """PSI of `recent` against `reference` (NaN when either sample is empty).

    Examples
    --------
    >>> population_stability_index([1, 2, 3, 4], [1, 2, 3, 4])
    0.0
    """
    ref, new = _clean(reference), _clean(recent)
    if ref.size == 0 or new.size == 0:
        return float("nan")
    bins = binned_shares(ref, new, n_bins=n_bins)
    value = psi_from_shares(bins["reference_share"], bins["recent_share"], epsilon=epsilon)
    return 0.0 if abs(value) < 1e-12 else value


def severity(psi: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (0.1 to 0.25), ``major`` (> 0.25), or ``unknown``."""
    if math.isnan(psi):
        return "unknown"
    if psi < STABLE_BELOW:
        return "stable"
    if psi <= MAJOR_ABOVE:
        return "moderate"
    return "major"


def feature_drift(
    reference: pd.DataFrame, recent: pd.DataFrame, *, n_bins: int = N_BINS
) -> pd.DataFrame:
    """PSI of every feature column the two snapshot frames share, largest first.

    Parameters
    ----------
    reference, recent : pd.DataFrame
        Snapshot rows (`features.schemas` snapshot model), any number of as_ofs each.

    Returns
    -------
    pd.DataFrame
        `FEATURE_TABLE_COLUMNS`: ``feature``, ``group`` (catalog reason group), ``psi``,
        ``severity``, the two means and the two shares of missing values; sorted by
        ``psi`` descending, then feature name.
    """
    names = [n for n in feature_columns(reference) if n in set(recent.columns)]
    rows = []
    for name in names:
        ref, new = _clean(reference[name]), _clean(recent[name])
        psi = population_stability_index(ref, new, n_bins=n_bins)
        rows.append(
            {
                "feature": name,
                "group": spec(name).group,
                "psi": psi,
                "severity": severity(psi),
                "reference_mean": float(np.nanmean(ref)) if np.isfinite(ref).any() else np.nan,
                "recent_mean": float(np.nanmean(new)) if np.isfinite(new).any() else np.nan,
                "reference_missing": float(np.isnan(ref).mean()) if ref.size else np.nan,
                "recent_missing": float(np.isnan(new).mean()) if new.size else np.nan,
            }
        )
    table = pd.DataFrame(rows, columns=list(FEATURE_TABLE_COLUMNS))
    table = table.sort_values(["psi", "feature"], ascending=[False, True], na_position="last")
    return table.reset_index(drop=True)


# -- scores and tiers ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreShift:
    """How the model's risk_score distribution moved.

    ``bins`` is `binned_shares` of the scores (reference deciles), for plots and tables.
    """

    psi: float
    severity: str
    reference_mean: float
    recent_mean: float
    bins: pd.DataFrame


def score_shift(
    reference_scores: np.ndarray | pd.Series, recent_scores: np.ndarray | pd.Series
) -> ScoreShift:
    ref, new = _clean(reference_scores), _clean(recent_scores)
    psi = population_stability_index(ref, new)
    return ScoreShift(
        psi=psi,
        severity=severity(psi),
        reference_mean=float(np.nanmean(ref)) if ref.size else float("nan"),
        recent_mean=float(np.nanmean(new)) if new.size else float("nan"),
        bins=binned_shares(ref, new),
    )


def assign_tiers(
    scored: pd.DataFrame,
    *,
    capacity_share: float = CAPACITY_SHARE,
    medium_factor: int = MEDIUM_FACTOR,
) -> pd.Series:
    """Tier of each row by the capacity rule, per (``as_of``, ``school_id``).

    Rows are ranked riskiest first (ties by ``student_id``); the first
    ``ceil(capacity_share × n)`` are ``high``, the next ``medium_factor`` times as many
    ``medium``, the rest ``low``. Returns a str Series aligned with `scored`.
    """
    if scored.empty:
        return pd.Series([], index=scored.index, dtype="str")
    keys = ["as_of", "school_id"]
    ordered = scored.sort_values(
        [*keys, "risk_score", "student_id"], ascending=[True, True, False, True], kind="stable"
    )
    position = ordered.groupby(keys, sort=False).cumcount().to_numpy()
    size = ordered.groupby(keys, sort=False)["student_id"].transform("size").to_numpy()
    capacity = np.ceil(np.round(size * capacity_share, 9))
    tier = np.where(
        position < capacity,
        "high",
        np.where(position < capacity * (1 + medium_factor), "medium", "low"),
    )
    return pd.Series(tier, index=ordered.index, dtype="str").reindex(scored.index)


def tier_shares(reference_tiers: pd.Series, recent_tiers: pd.Series) -> pd.DataFrame:
    """Share of rows per tier in each window: ``tier``, ``reference_share``,
    ``recent_share``, ``change`` (recent minus reference, in shares)."""
    ref = reference_tiers.value_counts(normalize=True).reindex(list(TIERS), fill_value=0.0)
    new = recent_tiers.value_counts(normalize=True).reindex(list(TIERS), fill_value=0.0)
    out = pd.DataFrame(
        {
            "tier": list(TIERS),
            "reference_share": ref.to_numpy(dtype=np.float64),
            "recent_share": new.to_numpy(dtype=np.float64),
        }
    )
    out["change"] = out["recent_share"] - out["reference_share"]
    return out


# -- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReport:
    """What `run_drift` found.

    Attributes
    ----------
    date_from, date_to : the recent window (as_ofs in it)
    reference_from, reference_to : the reference window's first and last as_of
    reference_as_ofs, recent_as_ofs : how many weekly as_ofs each window has
    reference_rows, recent_rows : snapshot rows (student-weeks) in each window
    features : `feature_drift`'s table, largest PSI first
    score : the risk_score shift, None without a model
    tiers : `tier_shares`'s table, None without a model
    feed_warnings : broken-feed findings, each naming its school
    """

    date_from: dt.date
    date_to: dt.date
    reference_from: dt.date
    reference_to: dt.date
    reference_as_ofs: int
    recent_as_ofs: int
    reference_rows: int
    recent_rows: int
    features: pd.DataFrame
    score: ScoreShift | None = None
    tiers: pd.DataFrame | None = None
    feed_warnings: tuple[FeedWarning, ...] = field(default_factory=tuple)

    @property
    def feed_sentences(self) -> list[str]:
        return [w.message for w in self.feed_warnings]

    def psi(self, feature: str) -> float:
        row = self.features.loc[self.features["feature"] == feature, "psi"]
        if row.empty:
            raise KeyError(f"{feature!r} is not in the drift report")
        return float(row.iloc[0])

    def severity_counts(self) -> dict[str, int]:
        counts = self.features["severity"].value_counts()
        return {s: int(counts.get(s, 0)) for s in SEVERITIES}


def drift_windows(
    as_ofs: Sequence[dt.date],
    *,
    date_from: dt.date,
    date_to: dt.date,
    reference_from: dt.date | None = None,
    reference_to: dt.date | None = None,
) -> tuple[list[dt.date], list[dt.date]]:
    """(reference, recent) as_ofs. Recent: in ``[date_from, date_to]``; reference: in
    ``[reference_from, reference_to]``, by default every as_of before `date_from`.
    Raises ValueError when either is empty or they overlap."""
    if date_to < date_from:
        raise ValueError(f"--to {date_to} is before --from {date_from}.")
    recent = [d for d in as_ofs if date_from <= d <= date_to]
    ref_to = reference_to if reference_to is not None else date_from - dt.timedelta(days=1)
    reference = [
        d for d in as_ofs if (reference_from is None or d >= reference_from) and d <= ref_to
    ]
    if not recent:
        raise ValueError(f"No weekly as_of with school between {date_from} and {date_to}.")
    if not reference:
        raise ValueError(f"No weekly as_of with school in the reference window (to {ref_to}).")
    if set(reference) & set(recent):
        raise ValueError("The reference window overlaps the recent window.")
    return reference, recent


def drift_report(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    *,
    date_from: dt.date,
    date_to: dt.date,
    warnings: Sequence[FeedWarning] = (),
    reference_scores: np.ndarray | None = None,
    recent_scores: np.ndarray | None = None,
) -> DriftReport:
    """Assemble a `DriftReport` from the two windows' snapshots (and scores, aligned with
    their rows, when a model was given)."""
    ref_dates = pd.to_datetime(reference["as_of"])
    score = tiers = None
    if reference_scores is not None and recent_scores is not None:
        score = score_shift(reference_scores, recent_scores)
        ref_scored = reference.loc[:, ["as_of", "school_id", "student_id"]].assign(
            risk_score=np.asarray(reference_scores, dtype=np.float64)
        )
        new_scored = recent.loc[:, ["as_of", "school_id", "student_id"]].assign(
            risk_score=np.asarray(recent_scores, dtype=np.float64)
        )
        tiers = tier_shares(assign_tiers(ref_scored), assign_tiers(new_scored))
    return DriftReport(
        date_from=date_from,
        date_to=date_to,
        reference_from=ref_dates.min().date(),
        reference_to=ref_dates.max().date(),
        reference_as_ofs=int(ref_dates.nunique()),
        recent_as_ofs=int(pd.to_datetime(recent["as_of"]).nunique()),
        reference_rows=len(reference),
        recent_rows=len(recent),
        features=feature_drift(reference, recent),
        score=score,
        tiers=tiers,
        feed_warnings=tuple(warnings),
    )


def run_drift(
    tables: RawTables,
    *,
    date_from: dt.date,
    date_to: dt.date,
    model: Scorer | None = None,
    reference_from: dt.date | None = None,
    reference_to: dt.date | None = None,
    every_days: int = 7,
) -> DriftReport:
    """Drift of the weeks ``[date_from, date_to]`` against the reference window.

    Builds weekly snapshots (`training.splits.weekly_as_ofs` over the calendar) for both
    windows, scores them with `model` when given (`RiskModel.risk_scores`), and runs the
    feed checks on the raw tables.
    """
    as_ofs = weekly_as_ofs(school_days(tables), every_days=every_days)
    ref_as_ofs, new_as_ofs = drift_windows(
        as_ofs,
        date_from=date_from,
        date_to=date_to,
        reference_from=reference_from,
        reference_to=reference_to,
    )
    snapshots = build_snapshots(tables, as_ofs=[*ref_as_ofs, *new_as_ofs])
    is_recent = pd.to_datetime(snapshots["as_of"]).isin(pd.to_datetime(pd.Series(new_as_ofs)))
    reference = snapshots.loc[~is_recent].reset_index(drop=True)
    recent = snapshots.loc[is_recent].reset_index(drop=True)
    ref_scores = new_scores = None
    if model is not None:
        ref_scores = model.risk_scores(reference)
        new_scores = model.risk_scores(recent)
    warnings = feed_warnings(tables, date_from=date_from, date_to=date_to, since=ref_as_ofs[0])
    report = drift_report(
        reference,
        recent,
        date_from=date_from,
        date_to=date_to,
        warnings=warnings,
        reference_scores=ref_scores,
        recent_scores=new_scores,
    )
    logger.info(
        "drift %s .. %s against %d reference as_ofs: %s, %d feed warnings",
        date_from,
        date_to,
        len(ref_as_ofs),
        report.severity_counts(),
        len(warnings),
    )
    return report
