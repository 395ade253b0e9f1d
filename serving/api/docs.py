"""`GET /docs`: Swagger UI served from this machine, with no inline script.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script, so
its CSP had to allow both (issue 21 item 10). Here the page is static HTML naming three
files of our own origin: Swagger UI's dist files from the `fastapi-offline` package
(Swagger UI 5, which renders OpenAPI 3.1; PyPI's `swagger-ui-bundle` ships 4.15, which
does not) under `/docs/assets`, and our start-up script `serving/static/docs-init.js`.
Nothing is downloaded at run time, so the page works offline, and `DOCS_CSP` allows
scripts, styles, images and requests from `'self'` only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
INIT_SCRIPT = "/static/docs-init.js"
# Swagger UI sets element styles from script (allowed) and no inline <style> or script.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def assets_dir() -> Path:
    """The folder of Swagger UI's dist files (`swagger-ui-bundle.js`, `swagger-ui.css`)."""
    return Path(str(files("fastapi_offline") / "static"))


def docs_html(title: str) -> str:
    """The page: Swagger UI's files and our start-up script, nothing inline."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" href="{ASSETS_PATH}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{INIT_SCRIPT}"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and its assets on `app` (created with `docs_url=None`)."""
    page = docs_html(app.title)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
