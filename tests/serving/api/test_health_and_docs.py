"""`/health` and `/docs` as anyone sees them (issue 21 item 10).

`/health` once told anyone the model's version and source; now anyone gets the status
alone and logged-in staff the details. `/docs` once loaded Swagger UI from a CDN and
started it with an inline script, so its CSP allowed both; now every file comes from the
service itself and the CSP allows `'self'` only.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from serving.app import create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_anyone_gets_the_health_status_alone(client):
    answer = client.get("/health")
    assert answer.status_code == 503  # no model in these tests
    assert answer.json() == {"status": "not_ready"}
    forged = client.get("/health", headers={"Authorization": "Bearer not-a-token"})
    assert forged.json() == {"status": "not_ready"}


def test_logged_in_staff_get_the_health_details_by_token_or_page_session(client, auth):
    by_token = client.get("/health", headers=auth["teacher_a1"])
    assert by_token.status_code == 503
    details = by_token.json()
    assert details["status"] == "not_ready" and details["database"] is True
    assert details["model"]["ready"] is False and "message" in details["model"]
    login = client.get("/login")
    token = CSRF.search(login.text).group(1)
    done = client.post(
        "/login",
        data={"username": "admin_a", "password": "correct horse battery", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert client.get("/health").json() == details  # the page session's cookie


def test_docs_name_no_other_host_run_no_inline_script_and_serve_their_files(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)  # nothing off this origin
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    csp = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "http" not in csp and "cdn" not in csp
    assert "script-src 'self'" in csp
    for url in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", html):
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    init = client.get("/static/docs-init.js")
    assert "SwaggerUIBundle(" in init.text and "/openapi.json" in init.text
    assert client.get("/redoc").status_code == 404  # it loaded a CDN script too


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_docs_render_in_a_browser_offline_under_their_csp(settings):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python")
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page()
            errors: list[str] = []
            elsewhere: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "request",
                lambda r: None if r.url.startswith((base, "data:")) else elsewhere.append(r.url),
            )
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            operations = page.locator(".opblock-summary-path").all_inner_texts()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert "/v1/score" in operations and "/health" in operations
    assert errors == []  # a CSP violation is reported on the console
    assert elsewhere == []
