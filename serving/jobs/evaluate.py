"""Score a registered model on the weekly as_ofs of a window whose outcome is known."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.jobs.common import QUIET, Reporter, load_tables, store_for, training_config
from serving.settings import Settings
from serving.storage.db import session_scope

if TYPE_CHECKING:
    from features.tables import RawTables
    from training.config import TrainingConfig


def evaluate(
    settings: Settings,
    export_dir: Path,
    *,
    ref: str,
    date_from: date,
    date_to: date,
    config_file: Path | None = None,
    capacity_share: float | None = None,
    horizon_to_enrolment_end: bool | None = None,
    with_interventions: bool = False,
    report: Reporter = QUIET,
) -> dict[str, Any]:
    """The model's metrics against the baselines, per as_of and overall, and the fairness
    audit (one JSON-ready dict); with `with_interventions`, also the metrics where a
    recorded visit that led to a return counts as caught (key ``with_interventions``)."""
    from training.pipeline import evaluate_registered

    config = training_config(
        settings,
        config_file,
        capacity_share=capacity_share,
        horizon_to_enrolment_end=horizon_to_enrolment_end,
    )
    tables = load_tables(export_dir, report)
    result: dict[str, Any] = evaluate_registered(
        tables,
        config,
        store=store_for(settings),
        ref=ref,
        date_from=date_from,
        date_to=date_to,
    )
    if with_interventions:
        result["with_interventions"] = _with_visits(
            settings, tables, config, ref, date_from, date_to
        )
    return result


def _with_visits(
    settings: Settings,
    tables: RawTables,
    config: TrainingConfig,
    ref: str,
    date_from: date,
    date_to: date,
) -> dict[str, Any]:
    from serving.services.research_export import read_interventions
    from training.feedback import evaluate_registered_with_visits

    with session_scope(settings) as session:
        interventions = read_interventions(session)
    result: dict[str, Any] = evaluate_registered_with_visits(
        tables,
        config,
        store=store_for(settings),
        ref=ref,
        date_from=date_from,
        date_to=date_to,
        interventions=interventions,
    )
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in result.items()}
