"""The pages in a real browser: Playwright for Python driving Debian's Chromium
(`/usr/bin/chromium`, headless) against a real uvicorn server on 127.0.0.1.

A teacher logs in, sees the week's list, opens a student, records a home visit and sees
it on the page; opening another class's student shows the refusal page. Screenshots go
to the test's temporary folder, and also to the folder named by `BAOXUE_SCREENSHOTS`
when set (`BAOXUE_SCREENSHOTS=docs/img` refreshes the committed ones).

Skipped, saying why, when Chromium or Playwright is missing. Playwright's own browser
downloads are never used.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.app import create_app, uvicorn_log_config
from serving.settings import Settings
from tests.serving.pages.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright for Python (pip install playwright)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 and a free port, in a thread; its base URL."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_config=uvicorn_log_config(),
        log_level="warning",
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[list[Path]]:
    """Screenshots taken by a test; copied to `BAOXUE_SCREENSHOTS` when that is set."""
    taken: list[Path] = []
    yield taken
    target = os.environ.get("BAOXUE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for path in taken:
            shutil.copyfile(path, Path(target) / path.name)


def log_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/")
    assert page.url.endswith("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_teacher_logs_in_sees_the_week_opens_a_student_and_records_a_visit(
    browser, server, shots, tmp_path
):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, server, "teacher_c1")

    assert page.locator("h1").inner_text() == "本周关注名单"
    alerts = page.locator(".alert-list > li")
    assert alerts.count() == 2
    first = alerts.nth(0)
    assert "STU-A01" in first.inner_text() and "1小时内" in first.inner_text()
    red = first.evaluate("e => getComputedStyle(e).borderLeftColor")
    assert red == "rgb(198, 40, 40)"  # the 3-day alert is red
    rows = page.locator("table.list tbody tr")
    assert rows.nth(0).locator(".student-link").inner_text() == "STU-A02"
    assert "已家访 1 人 / 至少 3 人" in page.locator(".progress-card").inner_text()
    shot = tmp_path / "teacher-week.png"
    page.screenshot(path=str(shot))
    shots.append(shot)

    page.click("table.list >> text=STU-A02")
    page.wait_for_url(f"{server}/students/STU-A02")
    assert page.locator("h1").inner_text() == "学生 STU-A02"
    assert page.locator(".chart svg circle").count() == 4
    page.select_option("select[name=kind]", "home_visit")
    page.fill("input[name=date]", "2024-03-12")
    page.select_option("select[name=outcome]", "returned")
    page.fill("textarea[name=note]", "HOMEVISIT-NOTE 已与爷爷沟通，周一返校")
    page.click(".visit-form button[type=submit]")
    page.wait_for_url("**/students/STU-A02?saved=visit*")
    assert "已保存" in page.locator(".notice").inner_text()
    newest = page.locator(".timeline li").first.inner_text()
    assert "家访" in newest and "已返校" in newest and "2024-03-12" in newest
    assert "HOMEVISIT-NOTE" in newest
    shot = tmp_path / "student-page.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)

    page.goto(f"{server}/")
    assert "2024-03-12" in page.locator("table.list tbody tr").nth(0).inner_text()
    phone = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    small.goto(f"{server}/")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # no sideways scrolling on a phone
    shot = tmp_path / "teacher-week-phone.png"
    small.screenshot(path=str(shot), full_page=True)
    shots.append(shot)
    assert not errors, errors  # no CSP violations or script errors
    phone.close()
    context.close()


def test_teacher_opening_another_classs_student_gets_the_refusal_page(browser, server):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    log_in(page, server, "teacher_c1")
    response = page.goto(f"{server}/students/STU-A07")
    assert response is not None and response.status == 403
    assert page.locator("h1").inner_text() == "没有权限查看"
    assert "这名学生不在您的班级" in page.locator("main").inner_text()
    page.click("text=English")
    assert page.locator("h1").inner_text() == "Not allowed"
    context.close()


def test_county_admin_closes_a_case_from_the_roster(browser, server, shots, tmp_path):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, server, "county_admin")

    assert page.locator("h1").inner_text() == "全县控辍保学概况"
    assert page.locator(".trend .trend-bar").count() == 4
    roster = page.locator("table.roster tbody tr")
    assert roster.count() == 1 and "疑似辍学" in roster.first.inner_text()
    shot = tmp_path / "county-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)

    roster.first.locator(".case-link").click()
    page.wait_for_url("**/cases/*")
    assert page.locator("h1").inner_text() == "个案 STU-A01"
    assert page.locator(".owner").first.inner_text() == "teacher_c1"
    page.select_option(".close-form select[name=status]", "returned")
    page.fill(".close-form textarea[name=reason]", "已返校，班主任每日点名")
    page.click(".close-form button[type=submit]")
    page.wait_for_url("**/cases/*?saved=closed")
    assert page.locator(".case-status").inner_text() == "已返校"
    assert "已返校，班主任每日点名" in page.locator(".close-reason").inner_text()
    assert page.locator(".close-form").count() == 0
    shot = tmp_path / "case-closed.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)

    page.goto(f"{server}/")
    row = page.locator("table.roster tbody tr").first.inner_text()
    assert "已返校" in row and "county_admin" in row
    assert not errors, errors
    context.close()


def test_student_page_calendar_and_trend_read_on_a_phone(browser, server, shots, tmp_path):
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, server, "teacher_c1")
    page.goto(f"{server}/students/STU-A01")
    assert page.locator(".month").count() == 7
    assert page.locator("td.day-unexcused").count() == 3
    red = page.locator("td.day-unexcused").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert red == "rgb(198, 40, 40)"
    assert page.locator(".trend-chart").count() == 3
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.locator("#cal-h").scroll_into_view_if_needed()
    shot = tmp_path / "student-calendar-phone.png"
    page.screenshot(path=str(shot))
    shots.append(shot)
    assert not errors, errors
    context.close()


def test_principal_dashboard_and_an_upload_rejected_then_accepted(browser, server, shots, tmp_path):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, server, "principal_a")
    assert page.locator("h1").inner_text() == "全校概况"
    shot = tmp_path / "principal-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)

    page.click("a.upload-link")
    page.wait_for_url(f"{server}/upload")
    bad = b"student_id,date,status\nSTU-A03,2024-03-04,late\nSTU-A04,2024-03-05,sick\n"
    page.set_input_files(
        "input[name=files]", {"name": "attendance.csv", "mimeType": "text/csv", "buffer": bad}
    )
    page.click(".upload-form button[type=submit]")
    page.wait_for_selector(".rejected")
    row = page.locator("tr.violation").first
    assert row.locator(".v-file").inner_text() == "attendance.csv"
    assert row.locator(".v-row").inner_text() == "3"
    assert row.locator(".v-column").inner_text() == "status"
    assert "不在允许的取值中" in page.locator(".rejected").inner_text()
    shot = tmp_path / "upload-rejected.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)

    good = b"student_id,date,status\nSTU-A03,2024-03-04,late\n"
    page.set_input_files(
        "input[name=files]", {"name": "attendance.csv", "mimeType": "text/csv", "buffer": good}
    )
    page.click(".upload-form button[type=submit]")
    page.wait_for_selector(".accepted")
    assert "已接受" in page.locator(".accepted h2").inner_text()
    shot = tmp_path / "upload-accepted.png"
    page.screenshot(path=str(shot), full_page=True)
    shots.append(shot)
    # the rejected upload answers 422 on purpose; anything else is a CSP or script error
    assert not [e for e in errors if "status of 422" not in e], errors
    context.close()
