"""Who looked at which student, when (PIPL: let each role see only its own students, and
log who looked at what).

Access goes to the `audit_log` table, never to the application log. `record_access` adds
a row to the caller's session, to commit with the caller's transaction (a write and the
audit row of that write succeed or fail together). Reads go through an `AuditWriter`: one
thread that commits the rows of all concurrent requests in one transaction (group commit)
and answers each request only once its row is committed, so a page is never shown
without its audit row, and sixteen concurrent readers do not queue one by one for
SQLite's single write lock (which its busy handler polls with growing sleeps: p99
800 ms at 145 requests/s before, see docs/scale.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

from serving.auth import Viewer
from serving.storage.tables import ID_LENGTH, AuditEntry, utcnow

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


def _fit(value: str | None, limit: int) -> str | None:
    """`value` cut to `limit` characters (the last one an ellipsis when cut)."""
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"


def _check_action(action: str) -> str:
    """The action as stored: never empty, cut to `ACTION_MAX` characters.

    A request may carry more than a column holds (a 120-character school id in a URL):
    what is stored is cut, and the access is recorded all the same, never skipped.
    """
    if not action:
        raise ValueError("an action is never empty")
    return _fit(action, ACTION_MAX) or action


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
    row = AuditEntry(
        at=at or utcnow(),
        user_id=viewer.user_id,
        username=viewer.username,
        role=viewer.role,
        student_id=_fit(student_id, ID_LENGTH),
        action=_check_action(action),
        school_id=_fit(school_id, ID_LENGTH),
    )
    session.add(row)
    session.flush()
    return AccessRow.model_validate(row)


@dataclass(frozen=True)
class AccessIn:
    """One access to record (the columns of `audit_log` but the id)."""

    at: dt.datetime
    user_id: int | None
    username: str
    role: str
    student_id: str | None
    action: str
    school_id: str | None

    @classmethod
    def of(
        cls, viewer: Viewer, student_id: str | None, action: str, school_id: str | None
    ) -> AccessIn:
        """The access `viewer` makes now (ids and action cut to what the columns hold)."""
        return cls(
            utcnow(),
            viewer.user_id,
            viewer.username,
            viewer.role,
            _fit(student_id, ID_LENGTH),
            _check_action(action),
            _fit(school_id, ID_LENGTH),
        )


class AuditWriter:
    """Commits access rows from many threads, in batches, on one thread of its own.

    `record` hands rows over and blocks until the transaction holding them has committed
    (or raises that transaction's error, e.g. a locked or full database), so the caller
    may answer only what is audited. Rows that arrive while a batch commits form the next
    batch: at concurrency 16 one commit carries up to 16 requests' rows, and only this
    thread takes the database's write lock for reads' audit rows.

    The thread starts with the first `record` and stops with `close`; after `close`,
    `record` writes in the caller's thread (one short transaction), so nothing is lost
    while an app shuts down.
    """

    def __init__(
        self, sessions: sessionmaker[Session], *, max_batch: int = 500, timeout_s: float = 60.0
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: queue.SimpleQueue[tuple[Sequence[AccessIn], Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, rows: Sequence[AccessIn]) -> None:
        """Store `rows`; return once they are committed (raise if that failed)."""
        if not rows:
            return
        done: Future[None] = Future()
        with self._lock:
            if self._closed:
                self._commit([rows])
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="baoxue-audit", daemon=True)
                self._thread.start()
            self._queue.put((rows, done))
        done.result(timeout=self.timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout_s)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._commit([rows for rows, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets it
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)

    def _commit(self, batches: Sequence[Sequence[AccessIn]]) -> None:
        with self.sessions.begin() as session:
            store_accesses(session, [row for rows in batches for row in rows])


def store_accesses(session: Session, rows: Sequence[AccessIn]) -> None:
    """Add `rows` to the session's transaction in one insert (the caller commits)."""
    if rows:
        session.execute(insert(AuditEntry), [asdict(row) for row in rows])


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
