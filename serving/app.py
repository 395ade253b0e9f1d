"""`create_app(settings) -> FastAPI`, `serve(...)` and `add_user_from_cli(...)`.

The app's lifespan migrates the database, opens the engine, makes a model current in a
`ModelHolder` (`ModelHolder.start`: the local cached copy at once while the registry is
asked in a background thread, else the registry's champion; no model: the app still
starts, `/health` says not ready, and every scoring call answers 503), and starts the
weekly scheduler when `settings.serving.weekly_run_weekday` is set.

Every response carries security headers; JSON gets a CSP that allows nothing, the API
docs page one that allows its own origin's scripts and styles (`serving/api/docs.py`).
CORS is closed: no cross-origin headers are ever sent. Logs carry no student ids:
`serve` runs uvicorn with an access-log filter that replaces the path segment after
`/students/` with a placeholder.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.docs import DOCS_CSP, install_docs
from serving.api.errors import (
    BodyTooLarge,
    CatchAllMiddleware,
    register_error_handlers,
    too_large_response,
)
from serving.api.routes import admin, auth, health, lists, model, risk, students
from serving.audit import AuditWriter
from serving.auth import secret_key
from serving.pages import install as install_pages
from serving.registry import ModelHolder, NoChampionModel
from serving.services.logins import guard_from_settings
from serving.services.users import UserRow, add_user
from serving.settings import Settings
from serving.storage.db import init_db, make_engine, session_factory, session_scope

logger = logging.getLogger(__name__)

JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeadersMiddleware:
    """Add the security headers to every HTTP response (plain ASGI, streams untouched).

    Responses about students must not be cached by browsers or proxies: every API
    response also says `Cache-Control: no-store`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", DOCS_CSP if html else JSON_CSP)
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse a request body over `max_bytes` with 413 before reading it (plain ASGI).

    A declared `Content-Length` over the limit is answered at once; a body without one
    (chunked) is counted as it arrives, and answered 413 as soon as it passes the limit
    (the app then sees the client gone, and what it would answer is dropped). `exempt`
    paths limit their bodies themselves: `POST /v1/score` after authenticating the
    caller (a larger limit of its own), `/upload` per file (`serving.pages`).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: Iterable[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        refusal = BodyTooLarge(self.max_bytes)
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await too_large_response(refusal)(scope, receive, send)
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await too_large_response(refusal)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once the 413 is sent, the app's own answer is dropped
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


_STUDENT_SEGMENT = re.compile(r"(/students/)[^/?#\s]+")


def redact_path(path: str) -> str:
    """`/v1/students/S0001/feedback` -> `/v1/students/{student_id}/feedback`."""
    return _STUDENT_SEGMENT.sub(r"\1{student_id}", path)


class RedactStudentPaths(logging.Filter):
    """Replace student ids in logged URL paths (uvicorn's access log) with a placeholder."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "/students/" in record.msg:
            record.msg = redact_path(record.msg)
        return True


REGISTRY_CHECK_WAIT_S = 10.0
"""At shutdown, how long to wait for start-up's registry check still under way."""


def _load_model(holder: ModelHolder, check_after_s: float) -> None:
    try:
        holder.start(check_after_s=check_after_s)
    except NoChampionModel:
        logger.warning("starting without a model: scoring answers 503 until one is loaded")


def create_app(settings: Settings) -> FastAPI:
    """The Baoxue API for `settings` (nothing is opened until the app starts)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        init_db(settings.database_url)
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.audit_writer = AuditWriter(app.state.sessions)
        app.state.secret_key = secret_key(settings.paths.home, settings.serving.secret_key)
        app.state.login_guard = guard_from_settings(settings.serving)
        holder = ModelHolder.from_settings(settings)
        _load_model(holder, settings.serving.registry_check_after_s)
        app.state.models = holder
        scheduler = None
        if settings.serving.weekly_run_weekday is not None:
            from serving.scheduler import WeeklyScheduler

            scheduler = WeeklyScheduler(settings, app.state.sessions, holder.reload)
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            app.state.audit_writer.close()
            app.state.login_guard.gate.close()
            if not holder.stop(REGISTRY_CHECK_WAIT_S):
                logger.warning("the registry check was still under way at shutdown")
            engine.dispose()

    app = FastAPI(
        title="Baoxue (保学)",
        summary="Early warning for compulsory-school dropout, with reasons a teacher can act on.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from local files
        redoc_url=None,
    )
    app.state.settings = settings
    for router in (
        auth.router,
        risk.router,
        lists.router,
        students.router,
        model.router,
        admin.router,
        health.router,
    ):
        app.include_router(router)
    _document_read_bodies(app)
    install_docs(app)
    register_error_handlers(app)
    install_pages(app)  # the HTML pages and /static (serving/pages)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.serving.body_max_kb * 1000,
        exempt=(risk.SCORE_PATH, "/upload"),
    )
    app.add_middleware(CatchAllMiddleware)  # inside the headers, so a 500 gets them too
    app.add_middleware(SecurityHeadersMiddleware)  # added last: outermost of ours
    return app


def _document_read_bodies(app: FastAPI) -> None:
    """Add the schemas of bodies a route reads itself (`POST /v1/score`, read after
    authentication) to the OpenAPI components its operation refers to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in risk.body_schemas().items():
                schemas.setdefault(name, schema)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging setup with the student-id filter on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_students"] = {"()": RedactStudentPaths}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_students")
    return config


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the API with uvicorn on `host:port` (default: the settings'), until stopped."""
    import uvicorn

    uvicorn.run(
        create_app(settings),
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        log_config=uvicorn_log_config(),
        server_header=False,
        proxy_headers=False,
    )


def add_user_from_cli(
    settings: Settings,
    username: str,
    password: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Create a user in the service database (migrating it first); `InvalidUser` explains
    what disagrees. Returns the stored user (no password hash)."""
    with session_scope(settings) as session:
        return add_user(session, username, password, role, school_id, class_ids, staff_role)
