"""Train the risk model with temporal validation and register it (in this process, or
on the Dask cluster when compute.backend = "dask")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.jobs.common import (
    QUIET,
    Reporter,
    load_tables,
    require_folder,
    store_for,
    training_config,
)
from serving.settings import Settings

if TYPE_CHECKING:
    from training.config import TrainingConfig
    from training.pipeline import TrainResult


def train(
    settings: Settings,
    export_dir: Path,
    *,
    config_file: Path | None = None,
    train_until: date | None = None,
    test_to: date | None = None,
    horizon_days: int | None = None,
    capacity_share: float | None = None,
    horizon_to_enrolment_end: bool | None = None,
    optuna_seconds: int | None = None,
    report: Reporter = QUIET,
) -> tuple[TrainResult, TrainingConfig]:
    """Train, evaluate against the baselines, register; returns the result and the
    configuration it used. Options left None take the config file's or settings' value."""
    from training.pipeline import run_experiment

    config = training_config(
        settings,
        config_file,
        train_until=train_until,
        test_to=test_to,
        horizon_days=horizon_days,
        capacity_share=capacity_share,
        horizon_to_enrolment_end=horizon_to_enrolment_end,
        optuna_seconds=optuna_seconds,
    )
    if settings.compute.backend == "dask":
        return _train_on_dask(settings, export_dir, config, report), config
    with report.step(f"reading and validating {export_dir}"):
        tables = load_tables(export_dir, report)
    with report.progress(5, "training") as on_step:
        result = run_experiment(tables, config, store=store_for(settings), on_step=on_step)
    return result, config


def _train_on_dask(
    settings: Settings, export_dir: Path, config: TrainingConfig, report: Reporter
) -> TrainResult:
    """The export split by school and trained on the cluster
    (training/distributed_pipeline.py, docs/dask.md)."""
    from training.distributed_pipeline import run_experiment_dask

    result: TrainResult = on_dask(
        settings,
        export_dir,
        "training on Dask",
        lambda **cluster: run_experiment_dask(
            export_dir, config, store=store_for(settings), **cluster
        ),
        report=report,
    )
    return result


def on_dask(
    settings: Settings,
    export_dir: Path,
    title: str,
    run: Callable[..., Any],
    *,
    report: Reporter,
    steps: int = 5,
) -> Any:
    """`run(client=, parts_dir=, schools_per_partition=, on_step=)` on the cluster of
    compute.backend = "dask", with the export split into `<partitions_dir>-train` (a
    progress of `steps` steps)."""
    from serving.services.distributed_scoring import dask_client

    require_folder(export_dir)
    compute = settings.compute
    base = compute.partitions_dir or settings.paths.home / "partitions"
    # beside the weekly batch's partitions, which a scheduled run may replace meanwhile
    parts_dir = base.with_name(f"{base.name}-train")
    with report.progress(steps, title) as on_step, dask_client(compute) as client:
        return run(
            client=client,
            parts_dir=parts_dir,
            schools_per_partition=compute.schools_per_partition,
            on_step=on_step,
        )
