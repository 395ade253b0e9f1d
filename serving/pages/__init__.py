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

from serving.pages.session import CsrfRejected, LoginRequired

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _login_required(request: Request, exc: Exception) -> Response:
    target = exc.next_path if isinstance(exc, LoginRequired) else "/"
    suffix = "" if target == "/" else f"?next={quote(target, safe='/')}"
    return RedirectResponse(f"/login{suffix}", status_code=303)


def _csrf_rejected(request: Request, exc: Exception) -> Response:
    from serving.pages.routes import error_page

    return error_page(request, 403, "csrf_title", "csrf_body")


def install(app: FastAPI) -> None:
    """Add the pages and `/static` to `app`."""
    from serving.pages.routes import router

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
