"""Who looked at which student, when (PIPL: let each role see only its own students, and
log who looked at what).

Access goes to the `audit_log` table, never to the application log. Rows are added to
the caller's session and committed with the request's transaction.
"""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from serving.auth import Viewer
from serving.storage.tables import AuditEntry, utcnow

logger = logging.getLogger(__name__)

ACTION_MAX = 128


class AccessRow(BaseModel):
    """One stored access: who, in which role, looked at which student, through what."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    at: dt.datetime
    user_id: int | None
    username: str
    role: str
    student_id: str | None
    action: str
    school_id: str | None


def record_access(
    session: Session,
    viewer: Viewer,
    student_id: str | None,
    action: str,
    school_id: str | None,
    *,
    at: dt.datetime | None = None,
) -> AccessRow:
    """Record that `viewer` opened `student_id`'s record through `action` (e.g. a route).

    `student_id` may be None for list pages (then `school_id` says whose list).
    """
    if not action or len(action) > ACTION_MAX:
        raise ValueError(f"an action has 1 to {ACTION_MAX} characters")
    row = AuditEntry(
        at=at or utcnow(),
        user_id=viewer.user_id,
        username=viewer.username,
        role=viewer.role,
        student_id=student_id,
        action=action,
        school_id=school_id,
    )
    session.add(row)
    session.flush()
    return AccessRow.model_validate(row)


def recent_access(
    session: Session,
    student_id: str | None = None,
    user_id: int | None = None,
    limit: int = 100,
) -> list[AccessRow]:
    """The newest accesses (to one student and/or by one user), newest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if student_id is not None:
        query = query.where(AuditEntry.student_id == student_id)
    if user_id is not None:
        query = query.where(AuditEntry.user_id == user_id)
    return [AccessRow.model_validate(row) for row in session.scalars(query)]


def purge_older_than(session: Session, cutoff: dt.date) -> int:
    """Delete accesses from before `cutoff` (midnight UTC); return how many went."""
    start = dt.datetime.combine(cutoff, dt.time(), tzinfo=dt.UTC)
    result = session.execute(delete(AuditEntry).where(AuditEntry.at < start))
    session.flush()
    removed = int(getattr(result, "rowcount", 0) or 0)
    logger.info("purged %d access records from before %s", removed, cutoff)
    return removed
