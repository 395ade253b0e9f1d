"""Training on a Dask cluster: labelled snapshots per school partition, `lightgbm.dask`.

The in-memory path builds every labelled snapshot in one process
(`training.matrices.labelled_snapshots`) and fits one `LGBMClassifier`
(`models.gbm.make_classifier`). Here each partition of a partitioned export
(`features.distributed.partition_export`) is labelled on its own worker and the same
classifier parameters are fitted by `lightgbm.dask.DaskLGBMClassifier`, which trains one
LightGBM per worker on that worker's partitions and merges their histograms over the
network every round (data-parallel tree learner).

Same data, same rows: `labelled_snapshots_dask` gives exactly the rows and labels of
`labelled_snapshots` (the last observable day is the whole export's, passed in, since a
partition's calendar ends with its own schools). Not the same trees: the workers bin
features on their own rows and sum histograms in another order, so split thresholds and
leaf values differ slightly from a one-process fit and the boosters are not bit-identical
(LightGBM documents no such guarantee for distributed learning). What stays comparable
is the model's quality on the same rows (ROC AUC, average precision) and its ranking of
students (rank correlation of margins); `tests/training/test_distributed.py` checks those.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.distributed import owned_snapshots, read_partition
from features.tables import RawTables
from models.gbm import DEFAULT_PARAMS, make_classifier
from training.matrices import label_snapshot, with_groups

GROUP_PREFIX = "group:"  # fairness-group columns carried beside a partition's rows
# The validation curve that chooses the number of trees (`validation_curve_dask`) bins
# each row's margin (log-odds) into these edges; 0.01 wide, so average precision from the
# histogram is within ties of width 0.01 of the exact value.
MARGIN_EDGES = np.linspace(-16.0, 16.0, 3201)

logger = logging.getLogger(__name__)


def labelled_partition(
    parts_dir: Path,
    partition: int,
    *,
    as_ofs: Sequence[dt.date],
    horizon: dt.timedelta,
    observed_until: dt.date,
    horizon_to_enrolment_end: bool = False,
    group_columns: bool = False,
) -> pd.DataFrame:
    """The labelled snapshot rows of the students one partition owns.

    As `training.matrices.labelled_snapshots` (snapshot columns plus ``label`` int64,
    censored and unobservable rows dropped), on one partition's tables. With
    `group_columns`, the fairness-audit attributes of `training.matrices.with_groups`
    follow as ``group:<name>`` columns (never features), so the test window can be
    audited without reading the students table again.
    """
    tables, owned = read_partition(parts_dir, partition)
    frame = label_snapshot(
        tables,
        owned_snapshots(tables, owned, as_ofs=as_ofs),
        horizon=horizon,
        observed_until=observed_until,
        horizon_to_enrolment_end=horizon_to_enrolment_end,
    )
    if group_columns:
        groups = with_groups(frame.loc[:, ["student_id"]], tables.students)
        for name in groups.columns.drop("student_id"):
            frame[GROUP_PREFIX + name] = groups[name].to_numpy()
    return frame


def carried_groups(scored: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """`scored` (rows aligned with `part`) with the fairness-group columns `part` carries
    (``group:<name>``, `labelled_partition`), under their own names."""
    for column in part.columns:
        if str(column).startswith(GROUP_PREFIX):
            scored[str(column)[len(GROUP_PREFIX) :]] = part[column].to_numpy()
    return scored


def calendar_of(tables: RawTables) -> tuple[set[dt.date], set[int]]:
    """The school days of `tables`' calendar and its enrolments' school years."""
    days = {d.date() for d in pd.to_datetime(tables.calendar["date"]).drop_duplicates()}
    years = {int(y) for y in tables.enrolments["school_year"].unique()}
    return days, years


def merge_calendars(
    parts: Iterable[tuple[set[dt.date], set[int]]],
) -> tuple[list[dt.date], set[int]]:
    """The union of partitions' (school days, school years), the days sorted."""
    days: set[dt.date] = set()
    years: set[int] = set()
    for part_days, part_years in parts:
        days |= part_days
        years |= part_years
    return sorted(days), years


def partition_calendar(parts_dir: Path, partition: int) -> tuple[set[dt.date], set[int]]:
    """The school days of one partition's calendar and its enrolments' school years."""
    tables, _ = read_partition(parts_dir, partition)
    return calendar_of(tables)


def export_calendar(
    parts_dir: Path, *, partitions: Sequence[int]
) -> tuple[list[dt.date], set[int]]:
    """Every school day of a partitioned export (sorted) and its enrolment school years,
    one task per partition: what `training.matrices.school_days` and the enrolments'
    ``school_year`` give for the whole export, without its tables in one process."""
    from dask.base import compute
    from dask.delayed import delayed

    if not partitions:
        raise ValueError("no partitions to read")
    parts = compute(*[delayed(partition_calendar)(Path(parts_dir), p) for p in partitions])  # type: ignore[no-untyped-call]
    return merge_calendars(parts)


def labelled_snapshots_dask(
    parts_dir: Path,
    *,
    partitions: Sequence[int],
    as_ofs: Sequence[dt.date],
    horizon: dt.timedelta,
    observed_until: dt.date,
    horizon_to_enrolment_end: bool = False,
    group_columns: bool = False,
    client: Any | None = None,
) -> Any:
    """Labelled rows of every partition as a Dask DataFrame, one Dask partition each
    (`labelled_partition`), in the order of `partitions`. With a `client` the partitions
    are computed at once and stay on the workers (as ``client.persist`` would, without
    building the first partition twice to learn the columns)."""
    import dask.dataframe as dd
    from dask.delayed import delayed

    if not partitions:
        raise ValueError("no partitions to label")
    tasks = [
        delayed(labelled_partition)(
            Path(parts_dir),
            p,
            as_ofs=list(as_ofs),
            horizon=horizon,
            observed_until=observed_until,
            horizon_to_enrolment_end=horizon_to_enrolment_end,
            group_columns=group_columns,
        )
        for p in partitions
    ]
    if client is not None:
        return dd.from_delayed(client.compute(tasks), verify_meta=False)
    return dd.from_delayed(tasks, verify_meta=False)


def gather(frame: Any, fn: Callable[..., pd.DataFrame | None], *args: Any) -> pd.DataFrame:
    """`fn(partition, *args)` on every partition of `frame` on the cluster; the (narrow)
    results concatenated here (None results left out)."""
    from dask.base import compute
    from dask.delayed import delayed

    parts = compute(*[delayed(fn)(part, *args) for part in frame.to_delayed()])  # type: ignore[no-untyped-call]
    found = [p for p in parts if p is not None]
    if not found:
        raise ValueError("no partition holds rows for this period of the split")
    return pd.concat(found, ignore_index=True)


def dask_classifier_params(
    feature_names: Sequence[str],
    *,
    positives: int,
    negatives: int,
    monotone: Mapping[str, int] | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`models.gbm.make_classifier`'s parameters for rows with these label counts.

    ``balance_classes`` becomes the same ``scale_pos_weight`` as in memory
    (`models.gbm.positive_weight`: sqrt(negatives / positives)), from counts made on the
    cluster rather than a label vector in this process.
    """
    if positives == 0 or negatives == 0:
        raise ValueError("training rows need both labels; got only one class")
    params = dict(overrides or {})
    balance = bool(params.pop("balance_classes", False))
    local = make_classifier(
        list(feature_names), y=[0, 1], monotone=monotone, seed=seed, overrides=params
    )
    settings: dict[str, Any] = local.get_params()
    if balance:
        settings["scale_pos_weight"] = float(np.sqrt(negatives / positives))
    settings.pop("n_jobs", None)
    return settings


def fit_lightgbm_dask(
    frame: Any,
    *,
    feature_names: Sequence[str],
    client: Any,
    monotone: Mapping[str, int] | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> lgb.Booster:
    """Fit our LightGBM defaults (`models.gbm.make_classifier`) with `lightgbm.dask`.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        Labelled rows (`labelled_snapshots_dask`): the `feature_names` columns and
        ``label``. Each worker trains on the partitions it holds; none holds them all.
    feature_names : the model's input columns, in order (the contract's)
    client : the `distributed.Client` whose workers train
    monotone, seed, overrides : as for `make_classifier`; ``balance_classes`` is computed
        from the label counts on the cluster, not from a label vector in this process.

    Returns
    -------
    lightgbm.Booster
        The fitted booster (the same kind of object the in-memory path stores).
    """
    from dask.base import compute
    from lightgbm.dask import DaskLGBMClassifier

    names = list(feature_names)
    counts, lengths = compute(  # type: ignore[no-untyped-call]
        frame["label"].value_counts(), frame.map_partitions(len)
    )
    positives, negatives = int(counts.get(1, 0)), int(counts.get(0, 0))
    # LightGBM refuses an empty Dataset: leave out partitions without rows in this period
    # (schools opened later, or closed), so no worker is handed only empty ones
    keep = [i for i, n in enumerate(lengths) if n > 0]
    if len(keep) < frame.npartitions:
        frame = frame.partitions[keep]
    settings = dask_classifier_params(
        names,
        positives=positives,
        negatives=negatives,
        monotone=monotone,
        seed=seed,
        overrides=overrides,
    )
    model = DaskLGBMClassifier(client=client, n_jobs=1, **settings)
    # float64, as the in-memory fit's matrix (`training.fit._xy`, `FeatureContract.matrix`)
    model.fit(frame[names].astype(np.float64), frame["label"])
    booster: lgb.Booster = model.booster_
    logger.info(
        "fitted lightgbm.dask on %d rows (%d positive), %d trees",
        positives + negatives,
        positives,
        booster.num_trees(),
    )
    return booster


def truncate(booster: lgb.Booster, n_trees: int) -> lgb.Booster:
    """The booster's first `n_trees` trees (boosting is sequential, so this is the model
    a fit stopped at `n_trees` would have given)."""
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=n_trees))


def margin_histograms(
    frame: pd.DataFrame,
    booster: lgb.Booster,
    *,
    feature_names: Sequence[str],
    every: int,
    edges: np.ndarray = MARGIN_EDGES,
) -> np.ndarray:
    """Counts of rows by margin bin after every `every` trees, negatives and positives.

    Returns an int64 array of shape (checkpoints, 2, len(edges) - 1): row c counts the
    margins of the first (c + 1) * `every` trees (the last checkpoint: all trees).
    Histograms of partitions add up, which the exact ranking metric does not.
    """
    stops = checkpoints(booster.num_trees(), every)
    out = np.zeros((len(stops), 2, len(edges) - 1), dtype=np.int64)
    if frame.empty:
        return out
    X = frame.loc[:, list(feature_names)].astype(np.float64)
    positive = frame["label"].to_numpy() == 1
    margin = np.zeros(len(frame))
    done = 0
    for c, stop in enumerate(stops):
        margin += booster.predict(
            X, raw_score=True, start_iteration=done, num_iteration=stop - done
        )
        done = stop
        bins = np.clip(np.searchsorted(edges, margin, side="right") - 1, 0, len(edges) - 2)
        out[c, 0] = np.bincount(bins[~positive], minlength=len(edges) - 1)
        out[c, 1] = np.bincount(bins[positive], minlength=len(edges) - 1)
    return out


def average_precision_binned(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Average precision from counts by score bin (bins ascending; a bin is one tie),
    as `sklearn.metrics.average_precision_score` treats tied scores. NaN without
    positives."""
    neg, pos = negatives[::-1].astype(float), positives[::-1].astype(float)
    total = pos.sum()
    if total == 0:
        return float("nan")
    hits, flagged = np.cumsum(pos), np.cumsum(pos + neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flagged > 0, hits / flagged, 0.0)
    return float(np.sum(pos / total * precision))


def checkpoints(n_trees: int, every: int) -> list[int]:
    """Tree counts at which `margin_histograms` measures: every `every` trees, and all."""
    return [*range(every, n_trees, every), n_trees]


def validation_curve_dask(
    booster: lgb.Booster,
    valid: Any,
    *,
    feature_names: Sequence[str],
    every: int,
) -> tuple[list[int], np.ndarray]:
    """Average precision on the rows of `valid` (a Dask DataFrame with the features and
    ``label``) at the tree counts `checkpoints(booster.num_trees(), every)`, computed per
    partition on the cluster: each task returns margin histograms (`margin_histograms`),
    which are summed. Returns (tree counts, average precision at each)."""
    from dask.delayed import delayed

    parts = [
        delayed(margin_histograms)(part, booster, feature_names=list(feature_names), every=every)
        for part in valid.to_delayed()
    ]
    while len(parts) > 1:  # a tree of sums: no task holds more than two histograms
        parts = [
            delayed(np.add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    counts: np.ndarray = parts[0].compute()
    curve = np.array([average_precision_binned(c[0], c[1]) for c in counts])
    return checkpoints(booster.num_trees(), every), curve


def best_n_trees(
    trees: Sequence[int], curve: Sequence[float] | np.ndarray, *, patience: int
) -> int:
    """The number of trees early stopping on this validation curve would keep.

    `curve[c]` is the metric (higher is better) after `trees[c]` trees. As LightGBM's
    early stopping: stop once `patience` more trees bring no improvement, keep the best
    so far (all trees when the metric is never defined).
    """
    best, best_at = -np.inf, 0
    for n, value in zip(trees, curve, strict=True):
        if np.isfinite(value) and value > best:
            best, best_at = float(value), int(n)
        elif best_at and n - best_at >= patience:
            break
    return best_at or int(trees[-1])


def default_n_estimators(overrides: Mapping[str, Any] | None) -> int:
    """The number of trees a fit with these overrides grows at most."""
    return int((overrides or {}).get("n_estimators", DEFAULT_PARAMS["n_estimators"]))
