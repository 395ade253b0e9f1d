"""Training rows with teacher feedback and interventions, pseudonymised, for research."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from serving.jobs.common import QUIET, JobFailed, Reporter, load_tables, training_config
from serving.settings import Settings
from serving.storage.db import session_scope


def research_export(
    settings: Settings,
    export_dir: Path,
    out: Path,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    horizon_days: int | None = None,
    report: Reporter = QUIET,
) -> Mapping[str, Any]:
    """Write the research export into `out` (a new folder); returns its manifest."""
    from serving.services.research_export import (
        read_feedback,
        read_interventions,
        write_research_export,
    )
    from training.feedback import research_tables
    from training.pipeline import observable_as_ofs

    if out.exists():
        raise JobFailed(f"{out} exists already; give a new folder for the export")
    config = training_config(settings, None, horizon_days=horizon_days)
    with report.step(f"reading and validating {export_dir}"):
        tables = load_tables(export_dir, report)
    as_ofs = observable_as_ofs(tables, config, start=date_from, end=date_to)
    if not as_ofs:
        raise JobFailed(
            f"no weekly as_of in the window has an observable {config.horizon_days}-day "
            "outcome in this export"
        )
    with session_scope(settings) as session:
        feedback, interventions = read_feedback(session), read_interventions(session)
    with report.step(f"building {len(as_ofs)} weekly as_ofs, {as_ofs[0]} .. {as_ofs[-1]}"):
        result = research_tables(
            tables,
            as_ofs=as_ofs,
            horizon=config.horizon,
            feedback=feedback,
            interventions=interventions,
            salt=secrets.token_bytes(32),
        )
    try:
        write_research_export(out, result.frames, result.manifest)
    except FileExistsError as exc:
        raise JobFailed(str(exc)) from exc
    return result.manifest
