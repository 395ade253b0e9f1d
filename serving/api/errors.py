"""Domain exceptions -> JSON error bodies.

Every error the API answers has the same body:
`{"error": "<code>", "message": "<sentence a teacher understands>", "field": ...}`.
One handler per domain error, with its status; request validation errors are reshaped
into the same body naming the field; anything unexpected becomes a 500 with no
traceback and no data (the log records the exception class only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.validation import InputTableError, Violation
from models.contract import ContractMismatch
from serving.auth import (
    AuthError,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    LoginBusy,
    TooManyAttempts,
)
from serving.registry import NoChampionModel
from serving.services.scoring import StudentNotFound
from serving.services.students import InvalidVisit
from serving.services.users import InvalidUser, UsernameTaken, UserNotFound
from serving.services.weekly_lists import ListNotFound
from serving.storage.db import database_problem
from serving.storage.queries import RecordNotFound

logger = logging.getLogger(__name__)

VIOLATIONS_LISTED = 50  # violations named in one 422 body


class BodyTooLarge(Exception):
    """A request body over the configured limit (413), refused before it is read whole."""

    code = "body_too_large"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.message = (
            f"The request body is larger than the {_size(max_bytes)} this address accepts; "
            "send fewer records per request."
        )
        super().__init__(self.message)


def _size(n_bytes: int) -> str:
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:g} MB"
    return f"{n_bytes / 1000:g} kB"


def error_body(code: str, message: str, field: Any = None, **extra: Any) -> dict[str, Any]:
    """The one error shape every failure answers with."""
    return {"error": code, "message": message, "field": field, **extra}


def _json(status: int, code: str, message: str, field: Any = None, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    return JSONResponse(error_body(code, message, field, **extra), status, headers=headers)


# -- handlers, one per domain error -----------------------------------------------------


def _auth_401(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return _json(401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"})


def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Forbidden)
    return _json(403, exc.code, exc.message)


def _not_found(request: Request, exc: Exception) -> JSONResponse:
    code = getattr(exc, "code", "not_found")
    message = getattr(exc, "message", None) or "We could not find what you asked for."
    return _json(404, code, message)


def _record_not_found(request: Request, exc: Exception) -> JSONResponse:
    return _json(404, "not_found", "We could not find that record.")


def _user_not_found(request: Request, exc: Exception) -> JSONResponse:
    return _json(404, UserNotFound.code, "There is no user with that username.", "username")


def _username_taken(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UsernameTaken)
    return _json(409, exc.code, exc.message, exc.field)


def _invalid_user(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidUser)
    return _json(422, exc.code, exc.message, exc.field)


def _violation_out(v: Violation) -> dict[str, Any]:
    """One broken rule, naming table, row (0-based index in the posted list) and column.

    The cell's value is left out: it may be personal data, and the caller has it.
    """
    table = v.file.split(".", 1)[0]
    row = None if v.row is None else v.row - 2  # spreadsheet numbering -> list index
    return {"rule": v.rule, "table": table, "row": row, "column": v.column, "expected": v.expected}


def _input_table_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputTableError)
    violations = [_violation_out(v) for v in exc.violations[:VIOLATIONS_LISTED]]
    first = violations[0] if violations else None
    field = None
    message = "The records break the data contract."
    if first is not None:
        field = f"tables.{first['table']}"
        if first["row"] is not None:
            field += f"[{first['row']}]"
        if first["column"] is not None:
            field += f".{first['column']}"
        message = (
            f"The records break the data contract in {exc.total} place(s); first: "
            f"{field}: expected {first['expected']}."
        )
    return _json(422, "invalid_records", message, field, violations=violations)


def _contract_mismatch(request: Request, exc: Exception) -> JSONResponse:
    return _json(422, "contract_mismatch", str(exc), "tables")


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A locked, read-only or full database: 503 with a sentence, never the statement."""
    route = getattr(request.scope.get("route"), "path", "?")
    logger.warning("database unavailable in %s %s: %s", request.method, route, type(exc).__name__)
    return _json(503, "database_unavailable", database_problem(exc), headers={"Retry-After": "30"})


def _too_many(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooManyAttempts)
    return _json(
        429, exc.code, exc.message, exc.field, headers={"Retry-After": str(exc.retry_after_s)}
    )


def _login_busy(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LoginBusy)
    return _json(503, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after_s)})


def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    """No database connection came free in time: 503 (busy), never a 500."""
    route = getattr(request.scope.get("route"), "path", "?")
    logger.warning("no database connection free in %s %s", request.method, route)
    message = "The service is busy right now. Please try again in a few seconds."
    return _json(503, "service_busy", message, headers={"Retry-After": "5"})


def _too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return too_large_response(exc)


def too_large_response(exc: BodyTooLarge) -> JSONResponse:
    """The 413 answer (the body-size middleware sends it too). `Connection: close`: the
    rest of the body is never read, so the connection cannot carry another request."""
    return _json(413, exc.code, exc.message, "body", headers={"Connection": "close"})


def _invalid_visit(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidVisit)
    return _json(422, exc.code, exc.message, exc.field)


def _coded(status: int) -> Callable[[Request, Exception], JSONResponse]:
    """A handler for the scoring core's errors, which carry `.code` and a message."""

    def handler(request: Request, exc: Exception) -> JSONResponse:
        message = getattr(exc, "message", None) or str(exc)
        return _json(status, getattr(exc, "code", "error"), message)

    return handler


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or ".".join(str(p) for p in loc)


def _detail(error: dict[str, Any]) -> dict[str, str]:
    """One request problem, naming its field (a body that is not JSON: `body`)."""
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":
        at = loc[-1] if loc else "?"
        return {"field": "body", "message": f"the body is not valid JSON (at character {at})"}
    return {"field": _field_of(loc), "message": str(error.get("msg", "invalid value"))}


def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    details = [_detail(e) for e in errors[:VIOLATIONS_LISTED]]
    if not details:
        return _json(422, "invalid_request", "The request is not valid.")
    first = details[0]
    message = f"{first['field']}: {first['message']}"
    if len(details) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return _json(422, "invalid_request", message, first["field"], details=details)


BODY_UNREADABLE = "There was an error parsing the body"  # FastAPI's 400 detail
_HTTP_CODES = {
    401: ("not_authenticated", "Please log in."),
    403: ("forbidden", "Your role does not allow this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
}


def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == BODY_UNREADABLE:
        # FastAPI's answer to a body it cannot decode at all (e.g. not UTF-8): the same
        # 422 `invalid_request` as a body that is not JSON, so the API has one shape.
        message = "body: the body is not valid JSON in UTF-8"
        return _json(
            422,
            "invalid_request",
            message,
            "body",
            details=[{"field": "body", "message": "the body is not valid JSON in UTF-8"}],
        )
    code, message = _HTTP_CODES.get(exc.status_code, ("http_error", "The request failed."))
    return _json(exc.status_code, code, message, headers=getattr(exc, "headers", None))


def register_error_handlers(app: FastAPI) -> None:
    """Register one handler per domain error on `app` (most specific classes first)."""
    app.add_exception_handler(InvalidCredentials, _auth_401)
    app.add_exception_handler(InvalidToken, _auth_401)
    app.add_exception_handler(Forbidden, _forbidden)  # NotYourStudent too
    app.add_exception_handler(StudentNotFound, _not_found)
    app.add_exception_handler(ListNotFound, _not_found)
    app.add_exception_handler(RecordNotFound, _record_not_found)
    app.add_exception_handler(UserNotFound, _user_not_found)
    app.add_exception_handler(UsernameTaken, _username_taken)
    app.add_exception_handler(InvalidUser, _invalid_user)
    app.add_exception_handler(InputTableError, _input_table_error)
    app.add_exception_handler(ContractMismatch, _contract_mismatch)
    app.add_exception_handler(TooManyAttempts, _too_many)
    app.add_exception_handler(LoginBusy, _login_busy)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(InvalidVisit, _invalid_visit)
    app.add_exception_handler(NoChampionModel, _coded(503))
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)


class CatchAllMiddleware:
    """Turn any unhandled exception into a 500 JSON body, without traceback or data.

    Written as plain ASGI (outermost of our middleware), so the exception does not reach
    the server, which would print a traceback that may contain request data. The log gets
    the exception's class and the route template only.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            route = getattr(scope.get("route"), "path", "?")
            logger.error("unhandled %s in %s %s", type(exc).__name__, scope.get("method"), route)
            if started:
                return
            response = _json(
                500, "internal_error", "Something went wrong on our side. Please try again later."
            )
            await response(scope, receive, send)
