"""The weekly batch on a Dask cluster: one scoring task per partition of whole schools.

The in-memory batch (`serving.services.weekly_lists.run_weekly`) builds one snapshot of
the county and scores it in one process. Here the snapshot is a Dask DataFrame
(`features.distributed.build_snapshots_dask`), shuffled so that each school's rows sit in
one partition (tiers, capacity and ranks are per school), and each partition is scored
by the in-memory batch's function (`weekly_lists.score_schools`: a first pass without
reasons, tiers per school, reasons for everyone a list shows, ranks in school). The rows
to store come back one partition at a time (`iter_weekly_rows`), so the process writing
the database never holds the county's rows at once; `run_weekly_dask` stores them with
`run_weekly`'s `store_run`. This module only adapts: Dask partitions in, rows out.

Results equal the in-memory batch on the same export and model: the same students,
tiers, ranks and reasons, and the same risk_score and margin (to 1e-9; LightGBM's
prediction does not depend on which other rows are in the batch).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from serving.registry import LoadedModel
from serving.services.weekly_lists import (
    WeeklyRunResult,
    run_weekly_job,
    score_schools,
    store_run,
    weekly_job_with,
)
from serving.settings import ComputeSettings, Settings
from serving.storage.queries import WeeklyScoreIn

logger = logging.getLogger(__name__)

WeeklyJob = Callable[..., WeeklyRunResult]

ROW_COLUMNS = {
    "student_id": "str",
    "school_id": "str",
    "class_id": "str",
    "grade_level": "int64",
    "risk_score": "float64",
    "margin": "float64",
    "rank_in_school": "int64",
    "tier": "str",
    "escalation_level": "int64",
    "reasons": "object",
    "explained": "bool",  # SHAP values computed (everyone a list shows); not stored
}


def partition_rows(
    snapshot: pd.DataFrame,
    loaded: LoadedModel,
    *,
    capacity: int | None,
    capacity_share: float,
) -> pd.DataFrame:
    """`weekly_lists.score_schools` on one partition, its rows to store as a frame.

    Returns one row per student with the fields of `WeeklyScoreIn` (``reasons`` a tuple
    of `queries.Reason`) and ``explained`` (bool), in snapshot order. Every school in
    `snapshot` must be in it whole, since tiers and ranks are per school.
    """
    if snapshot.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ROW_COLUMNS.items()})
    week = score_schools(loaded, snapshot, capacity=capacity, capacity_share=capacity_share)
    frame = pd.DataFrame(
        [{**dict(row), "explained": explained} for row, explained in week.rows()],
        columns=list(ROW_COLUMNS),
    )
    return frame.astype({c: t for c, t in ROW_COLUMNS.items() if t != "object"})


def score_week_dask(
    snapshots: Any,
    loaded: LoadedModel,
    *,
    capacity: int | None,
    capacity_share: float,
) -> Any:
    """The week's rows to store, as a Dask DataFrame: one scoring task per partition.

    `snapshots` is one as_of's snapshot (`build_snapshots_dask`); it is shuffled by
    ``school_id`` first, so each school is scored whole in one task.
    """
    by_school = snapshots.shuffle("school_id")
    meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in ROW_COLUMNS.items()})
    return by_school.map_partitions(
        partition_rows,
        loaded,
        capacity=capacity,
        capacity_share=capacity_share,
        meta=meta,
        align_dataframes=False,
    )


def iter_weekly_rows(rows: Any) -> Iterator[tuple[WeeklyScoreIn, bool]]:
    """The rows of `score_week_dask`, validated, each with whether it was explained;
    computed one partition at a time."""
    for part in rows.to_delayed():
        frame: pd.DataFrame = part.compute()
        for record in frame.to_dict("records"):
            explained = bool(record.pop("explained"))
            yield WeeklyScoreIn.model_validate(record), explained


def run_weekly_dask(
    session_factory: sessionmaker[Session] | Callable[[], Session],
    loaded: LoadedModel,
    snapshots: Any,
    *,
    as_of: dt.date,
    capacity: int | None,
    capacity_share: float,
    lists_dir: Path,
) -> WeeklyRunResult:
    """`run_weekly` with the scoring on the cluster: the same run, rows, cases and lists.

    Scores are stored in one transaction with the cases and the lists, as in `run_weekly`
    (`weekly_lists.store_run`); a failure rolls everything back and marks the run failed.
    """
    started = time.perf_counter()
    rows = score_week_dask(snapshots, loaded, capacity=capacity, capacity_share=capacity_share)
    return store_run(
        session_factory,
        loaded,
        iter_weekly_rows(rows),
        as_of=as_of,
        lists_dir=lists_dir,
        started=started,
        backend=" on Dask",
    )


@contextmanager
def dask_client(compute: ComputeSettings) -> Iterator[Any]:
    """A client on `compute.scheduler`, or on a local cluster when no address is set."""
    from distributed import Client, LocalCluster

    if compute.scheduler:
        with Client(compute.scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=compute.local_workers, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def run_weekly_job_dask(
    settings: Settings, *, export_dir: Path | None, as_of: dt.date, capacity: int | None
) -> WeeklyRunResult:
    """`baoxue score` with `compute.backend = "dask"`: split the export by school, build
    the week's snapshot and score it on the cluster, store as `run_weekly_job` does."""
    from features.distributed import build_snapshots_dask, partition_export

    compute = settings.compute
    parts_dir = compute.partitions_dir or settings.paths.home / "partitions"

    def run(sessions: sessionmaker[Session], loaded: LoadedModel) -> WeeklyRunResult:
        with dask_client(compute):
            partitions = partition_export(
                Path(export_dir) if export_dir else settings.paths.data,
                parts_dir,
                schools_per_partition=compute.schools_per_partition,
            )
            snapshots = build_snapshots_dask(parts_dir, partitions=partitions, as_ofs=[as_of])
            return run_weekly_dask(
                sessions,
                loaded,
                snapshots,
                as_of=as_of,
                capacity=capacity,
                capacity_share=settings.training.capacity_share,
                lists_dir=settings.paths.lists,
            )

    return weekly_job_with(settings, run)


def weekly_job(settings: Settings) -> WeeklyJob:
    """The weekly batch for these settings, called as
    ``job(settings, export_dir=..., as_of=..., capacity=...)``: on the Dask cluster
    (`run_weekly_job_dask`) when ``compute.backend`` is ``dask``, else in this process
    (`weekly_lists.run_weekly_job`). `baoxue score` and the in-app scheduler both use it."""
    if settings.compute.backend == "dask":
        return run_weekly_job_dask
    return run_weekly_job
