"""Retrain after a term: a challenger against the champion on that term."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serving.jobs.common import QUIET, Reporter, load_tables, store_for, training_config
from serving.jobs.train import on_dask
from serving.settings import Settings

if TYPE_CHECKING:
    from training.retrain import RetrainResult


def fairness_row() -> str:
    """The name of the comparison table's row that counts fairness ratios out of band."""
    from training.retrain import FAIRNESS_ROW

    return FAIRNESS_ROW


def retrain(
    settings: Settings,
    export_dir: Path,
    *,
    term: str,
    horizon_days: int | None = None,
    config_file: Path | None = None,
    report: Reporter = QUIET,
) -> RetrainResult:
    """Train a challenger on what was known before `term` (YYYY-T), compare it with the
    champion on the term's weeks, promote it only if it is better and no less fair."""
    from training.retrain import parse_term
    from training.retrain import retrain as run_retrain

    parsed = parse_term(term)
    config = training_config(settings, config_file, horizon_days=horizon_days)
    if settings.compute.backend == "dask":
        from training.distributed_retrain import retrain_dask

        result: RetrainResult = on_dask(
            settings,
            export_dir,
            f"retraining for term {parsed} on Dask",
            lambda **cluster: retrain_dask(
                export_dir, config, store=store_for(settings), term=parsed, **cluster
            ),
            report=report,
            steps=6,
        )
        return result
    with report.step(f"reading and validating {export_dir}"):
        tables = load_tables(export_dir, report)
    with report.progress(5, f"retraining for term {parsed}") as on_step:
        return run_retrain(tables, config, store=store_for(settings), term=parsed, on_step=on_step)
