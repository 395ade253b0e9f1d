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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.distributed import read_partition
from features.snapshot import build_snapshots
from models.gbm import make_classifier
from training.labels import make_labels

logger = logging.getLogger(__name__)


def labelled_partition(
    parts_dir: Path,
    partition: int,
    *,
    as_ofs: Sequence[dt.date],
    horizon: dt.timedelta,
    observed_until: dt.date,
) -> pd.DataFrame:
    """The labelled snapshot rows of the students one partition owns.

    As `training.matrices.labelled_snapshots` (snapshot columns plus ``label`` int64,
    censored and unobservable rows dropped), on one partition's tables.
    """
    tables, owned = read_partition(parts_dir, partition)
    snapshot = build_snapshots(tables, as_ofs=list(as_ofs))
    snapshot = snapshot[snapshot["student_id"].isin(set(owned))].reset_index(drop=True)
    labels = make_labels(
        tables.status_events,
        snapshot.loc[:, ["student_id", "as_of"]].copy(),
        horizon=horizon,
        observed_until=observed_until,
    )
    labels = labels.loc[~labels["censored"].astype(bool), ["student_id", "as_of", "label"]]
    frame = snapshot.merge(labels, on=["student_id", "as_of"], how="inner")
    frame["label"] = frame["label"].astype(np.int64)
    return frame


def labelled_snapshots_dask(
    parts_dir: Path,
    *,
    partitions: Sequence[int],
    as_ofs: Sequence[dt.date],
    horizon: dt.timedelta,
    observed_until: dt.date,
) -> Any:
    """Labelled rows of every partition as a Dask DataFrame, one Dask partition each."""
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
        )
        for p in partitions
    ]
    return dd.from_delayed(tasks, verify_meta=False)


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
    from lightgbm.dask import DaskLGBMClassifier

    names = list(feature_names)
    params = dict(overrides or {})
    counts = frame["label"].value_counts().compute()
    positives, negatives = int(counts.get(1, 0)), int(counts.get(0, 0))
    if positives == 0 or negatives == 0:
        raise ValueError("training rows need both labels; got only one class")
    # make_classifier reads y only for the class balance: set that from the counts
    if params.pop("balance_classes", False):
        params["scale_pos_weight"] = negatives / positives
    local = make_classifier(names, y=[0, 1], monotone=monotone, seed=seed, overrides=params)
    settings = local.get_params()
    settings.pop("n_jobs", None)
    model = DaskLGBMClassifier(client=client, n_jobs=1, **settings)
    model.fit(frame[names], frame["label"])
    booster: lgb.Booster = model.booster_
    logger.info(
        "fitted lightgbm.dask on %d rows (%d positive), %d trees",
        positives + negatives,
        positives,
        booster.num_trees(),
    )
    return booster
