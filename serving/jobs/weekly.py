"""The weekly batch: score every enrolled pupil with the champion, store, write lists."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from serving.jobs.common import QUIET, JobFailed, Reporter
from serving.settings import Settings

if TYPE_CHECKING:
    from serving.services.weekly_lists import WeeklyRunResult


def score_week(
    settings: Settings,
    *,
    as_of: date,
    export_dir: Path | None = None,
    capacity: int | None = None,
    report: Reporter = QUIET,
) -> WeeklyRunResult:
    """Run the weekly batch for `as_of` in this process, or on Dask (compute.backend).

    `export_dir` defaults to the home folder's data; `capacity` (visits per school) to
    the settings' share of each school's pupils.
    """
    from serving.registry import NoChampionModel
    from serving.services.distributed_scoring import weekly_job

    run_weekly_job = weekly_job(settings)
    try:
        with report.step(f"scoring the week of {as_of}"):
            return run_weekly_job(settings, export_dir=export_dir, as_of=as_of, capacity=capacity)
    except NoChampionModel as exc:
        raise JobFailed(str(exc)) from exc
