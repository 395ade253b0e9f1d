"""The service database's side of `baoxue export research`: read feedback and
interventions without their free text, and write the export folder atomically.

Only the columns a researcher may get are selected, so notes and comments never leave the
database at all (the pseudonymising and the joins are `training.feedback`'s, wired by
`serving.cli`). The folder is written into a temporary sibling and renamed into place at
the end: a failure leaves no half-written export behind. Nothing here logs an id.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.storage.tables import Feedback, Intervention

logger = logging.getLogger(__name__)

FEEDBACK_COLUMNS = ("student_id", "as_of", "kind", "user_id")
INTERVENTION_COLUMNS = (
    "student_id",
    "school_id",
    "class_id",
    "date",
    "kind",
    "by_role",
    "outcome",
    "recorded_by",
)
MANIFEST = "manifest.json"
README = "README.md"


class ExportExists(FileExistsError):
    """The output folder already exists (a research export is never overwritten)."""


def read_feedback(session: Session) -> pd.DataFrame:
    """Every feedback row: `FEEDBACK_COLUMNS` (``as_of`` as datetime64), no comment."""
    query = select(Feedback.student_id, Feedback.as_of, Feedback.kind, Feedback.user_id)
    rows = session.execute(query.order_by(Feedback.id)).all()
    frame = pd.DataFrame(rows, columns=list(FEEDBACK_COLUMNS))
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    return frame


def read_interventions(session: Session) -> pd.DataFrame:
    """Every recorded intervention: `INTERVENTION_COLUMNS` (``date`` as datetime64), no
    note."""
    query = select(
        Intervention.student_id,
        Intervention.school_id,
        Intervention.class_id,
        Intervention.date,
        Intervention.kind,
        Intervention.by_role,
        Intervention.outcome,
        Intervention.recorded_by,
    )
    rows = session.execute(query.order_by(Intervention.id)).all()
    frame = pd.DataFrame(rows, columns=list(INTERVENTION_COLUMNS))
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def readme_text(manifest: Mapping[str, Any]) -> str:
    """The export's README: what each file holds and what was done to it."""
    rows = manifest.get("rows", {})
    return "\n".join(
        [
            "# Baoxue research export",
            "",
            f"Weekly training rows from {manifest.get('from')} to {manifest.get('to')} "
            f"({manifest.get('n_as_of')} as_of dates, label: dropout within "
            f"{manifest.get('horizon_days')} days), with teacher feedback and recorded "
            "interventions of the same students. See docs/research-export.md.",
            "",
            "| file | rows | what |",
            "|---|---:|---|",
            f"| training_rows.parquet | {rows.get('training_rows', 0)} | as-of snapshot, "
            "`label`, feedback counts on that week, interventions within the horizon, "
            "`visit_led_return` |",
            f"| feedback.parquet | {rows.get('feedback', 0)} | student_id, as_of, kind "
            "(useful / not_useful / wrongly_flagged), user_id |",
            f"| interventions.parquet | {rows.get('interventions', 0)} | student_id, school_id, "
            "class_id, date, kind, by_role, outcome, recorded_by |",
            "",
            "`student_id`, `user_id` and `recorded_by` are pseudonyms: HMAC-SHA256 keyed with a "
            "random salt drawn for this export and never written, so the same pupil has the "
            "same pseudonym in every file of this export and a different one in any other "
            "export. Free text (visit notes, feedback comments, case plans) is not exported.",
            "",
        ]
    )


def write_research_export(
    out: Path, frames: Mapping[str, pd.DataFrame], manifest: Mapping[str, Any]
) -> list[Path]:
    """Write ``<stem>.parquet`` per frame, manifest.json and README.md into `out`.

    Everything goes into a temporary folder next to `out`, renamed to `out` at the end;
    on any failure the temporary folder is removed and `out` does not exist.

    Raises
    ------
    ExportExists
        When `out` exists already.
    """
    out = Path(out)
    if out.exists():
        raise ExportExists(f"{out} exists already; give a new folder for the research export")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        written = []
        for stem, frame in frames.items():
            path = staging / f"{stem}.parquet"
            frame.to_parquet(path, index=False)
            written.append(out / path.name)
        full = {**manifest, "files": sorted(p.name for p in written)}
        (staging / MANIFEST).write_text(
            json.dumps(full, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        (staging / README).write_text(readme_text(full), encoding="utf-8")
        os.chmod(staging, 0o750)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("research export: %d files, rows %s", len(written) + 2, dict(manifest["rows"]))
    return [*written, out / MANIFEST, out / README]
