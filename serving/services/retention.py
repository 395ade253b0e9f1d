"""Retention (PIPL: keep personal information no longer than needed).

`purge(session, today=..., years=...)` blanks the free text that staff wrote about a
child (intervention notes, feedback comments) and deletes audit rows once they are older
than `years` (the setting `retention.years`). The facts that a visit happened, when and
how it went stay: they count towards the visit minimum and train the next model; only
the sentences about a family go. Run by `baoxue retention purge` and after every weekly
batch (`baoxue score`). Idempotent: a second run the same day changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from serving.audit import purge_older_than
from serving.storage.tables import Feedback, Intervention

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgeResult:
    """What one purge did, and the cut-off it used (records before it were purged)."""

    cutoff: dt.date
    notes_blanked: int
    comments_blanked: int
    audit_removed: int


def cutoff_for(today: dt.date, years: int) -> dt.date:
    """The same calendar day `years` earlier (29 February -> 28 February)."""
    if years < 1:
        raise ValueError("retention.years must be at least 1")
    try:
        return today.replace(year=today.year - years)
    except ValueError:  # 29 February in a year that has none
        return today.replace(year=today.year - years, day=28)


def purge(session: Session, *, today: dt.date, years: int) -> PurgeResult:
    """Blank notes of interventions dated before the cut-off, comments of feedback given
    before it, and delete audit rows from before it; inside the caller's transaction."""
    cutoff = cutoff_for(today, years)
    start = dt.datetime.combine(cutoff, dt.time(), tzinfo=dt.UTC)
    notes = session.execute(
        update(Intervention)
        .where(Intervention.date < cutoff, Intervention.note.is_not(None))
        .values(note=None)
    )
    comments = session.execute(
        update(Feedback)
        .where(Feedback.created_at < start, Feedback.comment.is_not(None))
        .values(comment=None)
    )
    audit = purge_older_than(session, cutoff)
    result = PurgeResult(
        cutoff=cutoff,
        notes_blanked=int(getattr(notes, "rowcount", 0) or 0),
        comments_blanked=int(getattr(comments, "rowcount", 0) or 0),
        audit_removed=audit,
    )
    logger.info(
        "retention purge before %s: %d notes and %d comments blanked, %d audit rows removed",
        cutoff,
        result.notes_blanked,
        result.comments_blanked,
        result.audit_removed,
    )
    return result
