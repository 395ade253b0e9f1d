"""The web pages for teachers and principals (HTML, server-rendered, no JavaScript needed).

`install(app)` adds the page routes, serves the vendored assets under `/static`, and
answers a missing session with a redirect to the login page and a form without its CSRF
token with a page saying the form expired (403).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.pages.session import CsrfRejected, LoginRequired

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _login_required(request: Request, exc: Exception) -> Response:
    target = exc.next_path if isinstance(exc, LoginRequired) else "/"
    suffix = "" if target == "/" else f"?next={quote(target, safe='/')}"
    return RedirectResponse(f"/login{suffix}", status_code=303)


def _csrf_rejected(request: Request, exc: Exception) -> Response:
    from serving.pages.routes import error_page

    return error_page(request, 403, "csrf_title", "csrf_body")


class UploadSizeLimit:
    """Refuse an upload whose body is larger than every table at the size limit (413),
    before the form is parsed and spooled to disk; one without a length too (411)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/upload":
            await self.app(scope, receive, send)
            return
        from features.tables import ALL_TABLES
        from serving.pages.routes import error_page

        request = Request(scope)
        per_file = request.app.state.settings.serving.upload_max_mb * 1_000_000
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) <= per_file * len(ALL_TABLES) + 1_000_000:
            await self.app(scope, receive, send)
            return
        status = 413 if length.isdigit() else 411
        response = error_page(request, status, "error_title", "upload_too_big")
        await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add the pages, `/static` and the upload's size guard to `app`."""
    from serving.pages.routes import router

    app.include_router(router)
    app.add_middleware(UploadSizeLimit)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
