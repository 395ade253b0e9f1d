"""The weekly batch on a Dask cluster: one scoring task per partition of whole schools.

The in-memory batch (`serving.services.weekly_lists.run_weekly`) builds one snapshot of
the county and scores it in one process. Here the snapshot is a Dask DataFrame
(`features.distributed.build_snapshots_dask`), shuffled so that each school's rows sit in
one partition (tiers, capacity and ranks are per school), and each partition is scored
by the same functions as the in-memory batch: a first pass without reasons, tiers per
school, reasons for everyone a list shows, ranks in school. The rows to store come back
one partition at a time (`iter_weekly_rows`), so the process writing the database never
holds the county's rows at once; `run_weekly_dask` stores them as `run_weekly` does.

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
from serving.services.scoring import score_snapshot
from serving.services.weekly_lists import (
    WeeklyRunResult,
    _ranks_in_school,
    _week_tiers,
    on_list,
    run_weekly_job,
    store_week,
    weekly_rows,
)
from serving.settings import ComputeSettings, Settings
from serving.storage import queries
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


def score_schools(
    snapshot: pd.DataFrame,
    loaded: LoadedModel,
    *,
    capacity: int | None,
    capacity_share: float,
) -> pd.DataFrame:
    """Score snapshot rows holding whole schools, as the weekly batch does.

    Returns one row per student with the fields of `WeeklyScoreIn` (``reasons`` a tuple
    of `queries.Reason`) and ``explained`` (bool), in snapshot order. Every school in
    `snapshot` must be in it whole, since tiers and ranks are per school.
    """
    if snapshot.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ROW_COLUMNS.items()})
    snapshot = snapshot.reset_index(drop=True)
    first = score_snapshot(loaded, snapshot, explain=False)
    tiers = _week_tiers(first, capacity=capacity, capacity_share=capacity_share)
    shown = {
        s.student_id
        for s in first
        if on_list(tiers[s.student_id], s.ladder.level if s.ladder else 0)
    }
    scored = score_snapshot(loaded, snapshot, explain=shown)
    rows = weekly_rows(scored, tiers, _ranks_in_school(scored))
    explained = {s.student_id: s.explained for s in scored}
    frame = pd.DataFrame(
        [{**dict(row), "explained": explained[row.student_id]} for row in rows],
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
        score_schools,
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

    Scores are stored in one transaction with the cases and the lists, as in `run_weekly`;
    a failure rolls everything back and marks the run failed.
    """
    started = time.perf_counter()
    rows = score_week_dask(snapshots, loaded, capacity=capacity, capacity_share=capacity_share)
    with session_factory() as session, session.begin():
        run = queries.start_run(
            session, as_of=as_of, model_version=loaded.version, lists_dir=str(lists_dir)
        )
    explained = 0

    def counting(items: Iterator[tuple[WeeklyScoreIn, bool]]) -> Iterator[WeeklyScoreIn]:
        nonlocal explained
        for item, was_explained in items:
            explained += was_explained
            yield item

    staged, n_students, schools = store_week(
        session_factory,
        run.id,
        counting(iter_weekly_rows(rows)),
        as_of=as_of,
        lists_dir=lists_dir,
    )
    seconds = time.perf_counter() - started
    logger.info(
        "weekly run %d for %s on Dask: %d students, %d explained, %d schools in %.1f s",
        run.id,
        as_of,
        n_students,
        explained,
        len(schools),
        seconds,
    )
    return WeeklyRunResult(
        run_id=run.id,
        as_of=as_of,
        model_version=loaded.version,
        n_students=n_students,
        n_explained=explained,
        files=list(staged.files),
        seconds=seconds,
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
    from serving.registry import ModelHolder
    from serving.storage.db import init_db, make_engine, session_factory

    compute = settings.compute
    parts_dir = compute.partitions_dir or settings.paths.home / "partitions"
    init_db(settings.database_url)
    loaded = ModelHolder.from_settings(settings).load()
    engine = make_engine(settings.database_url)
    try:
        with dask_client(compute):
            partitions = partition_export(
                Path(export_dir) if export_dir else settings.paths.data,
                parts_dir,
                schools_per_partition=compute.schools_per_partition,
            )
            snapshots = build_snapshots_dask(parts_dir, partitions=partitions, as_ofs=[as_of])
            return run_weekly_dask(
                session_factory(engine),
                loaded,
                snapshots,
                as_of=as_of,
                capacity=capacity,
                capacity_share=settings.training.capacity_share,
                lists_dir=settings.paths.lists,
            )
    finally:
        engine.dispose()


def weekly_job(settings: Settings) -> WeeklyJob:
    """The weekly batch for these settings, called as
    ``job(settings, export_dir=..., as_of=..., capacity=...)``: on the Dask cluster
    (`run_weekly_job_dask`) when ``compute.backend`` is ``dask``, else in this process
    (`weekly_lists.run_weekly_job`). `baoxue score` and the in-app scheduler both use it."""
    if settings.compute.backend == "dask":
        return run_weekly_job_dask
    return run_weekly_job
