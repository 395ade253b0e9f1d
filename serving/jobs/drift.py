"""Has the data drifted under the model? Feature PSI, score and tier shifts, broken feeds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from serving.jobs.common import QUIET, Reporter, load_tables, store_for
from serving.settings import Settings

if TYPE_CHECKING:
    from training.drift import DriftReport


@dataclass(frozen=True)
class DriftOutcome:
    report: DriftReport
    folder: Path  # where report.md and its plots were written


def drift(
    settings: Settings,
    export_dir: Path,
    *,
    date_from: date,
    date_to: date,
    reference_from: date | None = None,
    reference_to: date | None = None,
    model: str | None = None,
    out: Path | None = None,
    report: Reporter = QUIET,
) -> DriftOutcome:
    """Compare the weekly snapshots of [date_from, date_to] with the reference window
    (and the risk scores of registered `model`, when given); write report.md to `out`
    (default <home>/drift/<date_to>)."""
    from models.registry import load_risk_model
    from training import track
    from training.drift import run_drift
    from training.drift_report import write_drift_report

    tables = load_tables(export_dir, report)
    risk_model = None
    if model:
        track.connect(store_for(settings))
        risk_model, version = load_risk_model(settings.mlflow.model_name, model)
        report.echo(f"comparing scores of {settings.mlflow.model_name} version {version}")
    with report.step(f"comparing {date_from} .. {date_to} with the reference"):
        found = run_drift(
            tables,
            date_from=date_from,
            date_to=date_to,
            model=risk_model,
            reference_from=reference_from,
            reference_to=reference_to,
        )
    folder = out or settings.paths.home / "drift" / date_to.isoformat()
    write_drift_report(found, folder)
    return DriftOutcome(report=found, folder=folder)


def log_to_mlflow(settings: Settings, outcome: DriftOutcome) -> str:
    """Log the drift report as an MLflow run; returns the run id."""
    from training.drift_report import log_drift_to_mlflow

    return log_drift_to_mlflow(outcome.report, store_for(settings))
