"""Dependencies for the routes, as `Annotated` aliases.

- `SettingsDep`: the app's `Settings` (the one `create_app` was given).
- `SessionDep`: a database session for the request; committed when the route returns,
  rolled back when it raises.
- `ViewerDep`: the logged-in person, from the bearer token (401 JSON when missing,
  expired or tampered with; the user is looked up again, so deactivation bites at once).
- `ModelDep`: the loaded champion model (503 JSON when none is loaded).
- `AuditDep`: writes "who looked at which student, through which endpoint": a read's row
  through the app's `AuditWriter` (group commit, answered once committed), a write's row
  in the request's transaction, a refused attempt's in a transaction of its own, so the
  row survives the failed request.
- `LoginGuardDep`: the app's `LoginGuard` (`serving.services.logins`): the login limit
  counted in the database and password hashing bounded; `client_address` and `is_https`
  read the proxy's headers only when `serving.trust_proxy_headers` says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from serving.audit import ACTION_MAX, AccessIn, AuditWriter, record_access, store_accesses
from serving.auth import InvalidToken, Viewer, decode_access_token
from serving.registry import LoadedModel, ModelHolder
from serving.services.logins import LoginGuard
from serving.services.users import get_viewer as viewer_for_user
from serving.settings import Settings
from serving.storage.db import has_written

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> sessionmaker[Session]:
    """The app's session factory."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    return sessions


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request: commit after the route, roll back if it raised.

    Opening a session does no I/O (it connects on first use), so this runs on the event
    loop; only a commit or rollback of a transaction the request began goes to the
    thread pool. A read whose audit row went through the `AuditWriter` has already ended
    its transaction, and costs no thread hand-over here at all.
    """
    session = get_sessions(request)()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(_finish, session, commit=False)
        raise
    if session.in_transaction():
        await run_in_threadpool(_finish, session, commit=True)
    else:
        session.close()


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


async def _app_settings(request: Request) -> Settings:
    # Dependencies that only read app.state are `async`: FastAPI runs a plain `def`
    # dependency in its thread pool, a hand-over that costs more than the work here.
    return get_settings(request)


SettingsDep = Annotated[Settings, Depends(_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_viewer(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Viewer:
    """The viewer behind the bearer token; `InvalidToken` (401) when there is none."""
    if not token:
        raise InvalidToken("Please log in: this needs a bearer token.")
    claims = decode_access_token(token, request.app.state.secret_key)
    return viewer_for_user(session, claims.user_id, claims.version)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


async def get_holder(request: Request) -> ModelHolder:
    """The app's model holder."""
    holder: ModelHolder = request.app.state.models
    return holder


async def get_model(request: Request) -> LoadedModel:
    """The loaded champion; `NoChampionModel` (503) when the service has none."""
    holder: ModelHolder = request.app.state.models
    return holder.require()


HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]


# -- audit ------------------------------------------------------------------------------


@dataclass
class AccessEntry:
    """What the audit row will say; a route may fill in the school once it is known."""

    school_id: str | None = None
    # How many students a refused request named (`POST /v1/score`): its one refusal row
    # says so. (One row per posted student once let one request write 5,000 rows.)
    attempted: int | None = None


@dataclass
class Auditor:
    """Writes the audit rows of one request.

    A successful write is recorded in the request's own transaction (it commits with
    whatever the route wrote). A successful read (``in_transaction=False``, with a
    `writer`) is recorded by the app's `AuditWriter`, which commits it with the other
    requests' rows before the route returns. A refused or failed attempt is recorded
    after rolling the request's transaction back, in a transaction of its own (the
    writer's, or a short one here), so the row survives the failed request (and, on
    SQLite, never waits on the request's own write lock).
    """

    session: Session
    sessions: sessionmaker[Session]
    viewer: Viewer
    action: str
    writer: AuditWriter | None = None
    in_transaction: bool = True

    @contextmanager
    def access(
        self, student_id: str | None, school_id: str | None = None, *, on_success: bool = True
    ) -> Iterator[AccessEntry]:
        """Record the access when the block ends, whether it succeeded or was refused.

        A refused or failed attempt is recorded with the error code after the endpoint
        (`GET /v1/students/{student_id} -> not_your_student`); with `on_success=False`
        only such attempts are recorded (the route records the successes itself).
        """
        entry = AccessEntry(school_id)
        try:
            yield entry
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            self.session.rollback()
            action = f"{self.action} -> {code}"
            if entry.attempted is not None:
                action += f" ({entry.attempted} students)"
            rows = [AccessIn.of(self.viewer, student_id, action, entry.school_id)]
            if self.writer is not None:
                self.writer.record(rows)
            else:
                with self.sessions.begin() as own:
                    store_accesses(own, rows)
            raise
        if on_success:
            self.record([student_id], entry.school_id)

    def record(self, student_ids: list[str | None], school_id: str | None = None) -> None:
        """Record one access per student (e.g. every student of a scoring request)."""
        # A transaction that has written may hold SQLite's write lock, which the
        # writer's thread would then wait for: such a request audits in its own.
        if self.writer is not None and not self.in_transaction and not has_written(self.session):
            # End the read-only transaction first: its pooled connection goes back before
            # this thread waits for the writer, which needs one (the pool is finite).
            self.session.commit()
            action = self.action[:ACTION_MAX]
            self.writer.record(
                [AccessIn.of(self.viewer, s, action, school_id) for s in student_ids]
            )
            return
        for student_id in student_ids:
            self._write(self.session, student_id, school_id, self.action)

    def _write(
        self, session: Session, student_id: str | None, school_id: str | None, action: str
    ) -> None:
        record_access(session, self.viewer, student_id, action[:ACTION_MAX], school_id)


READ_METHODS = frozenset({"GET", "HEAD"})


def get_audit_writer(request: Request) -> AuditWriter | None:
    """The app's group-commit audit writer (None outside a started app)."""
    return getattr(request.app.state, "audit_writer", None)


def make_auditor(request: Request, session: Session, viewer: Viewer, action: str) -> Auditor:
    """An auditor for this request: reads audited through the app's writer, writes in
    the request's transaction."""
    return Auditor(
        session,
        get_sessions(request),
        viewer,
        action,
        writer=get_audit_writer(request),
        in_transaction=request.method not in READ_METHODS,
    )


async def get_auditor(request: Request, session: SessionDep, viewer: ViewerDep) -> Auditor:
    """An auditor naming the endpoint as its method and route template."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    return make_auditor(request, session, viewer, f"{request.method} {route}")


AuditDep = Annotated[Auditor, Depends(get_auditor)]


# -- logins and the client --------------------------------------------------------------


async def get_login_guard(request: Request) -> LoginGuard:
    """The app's login guard (limit counters in the database, bounded hashing)."""
    guard: LoginGuard = request.app.state.login_guard
    return guard


LoginGuardDep = Annotated[LoginGuard, Depends(get_login_guard)]


def _trusts_proxy(request: Request) -> bool:
    return bool(request.app.state.settings.serving.trust_proxy_headers)


def _last_forwarded(request: Request, header: str) -> str | None:
    # The right-most value is the one our own proxy added (the ones before it are
    # whatever the client sent).
    values = [v.strip() for v in request.headers.get(header, "").split(",") if v.strip()]
    return values[-1] if values else None


def client_address(request: Request) -> str:
    """The client's address: the connection's, or X-Forwarded-For's when the settings
    trust the proxy (`serving.trust_proxy_headers`)."""
    if _trusts_proxy(request):
        forwarded = _last_forwarded(request, "x-forwarded-for")
        if forwarded:
            return forwarded[:64]
    return request.client.host if request.client else "unknown"


def is_https(request: Request) -> bool:
    """Whether the client's connection is HTTPS: the request's own scheme, or
    X-Forwarded-Proto's when the settings trust the proxy."""
    if request.url.scheme == "https":
        return True
    return _trusts_proxy(request) and _last_forwarded(request, "x-forwarded-proto") == "https"
