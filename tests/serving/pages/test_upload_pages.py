"""The upload page over HTTP: only the school's admin, CSRF, every violation by file, row
and column in the page, an accepted upload replacing the school's rows, the size limit,
the audit trail; and the login lockout page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.pages.conftest import audit_rows
from tests.serving.pages.test_pages import csrf_of, log_in

GOOD = b"student_id,date,status\nSTU-A03,2024-03-04,late\n"
BAD = (
    b"student_id,date,status\nSTU-A03,2024-03-04,late\n"
    b"STU-A04,2024-03-05,sick\nSTU-B01,2024-03-05,late\n"
)


def folder_bytes(settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(settings.paths.data.iterdir())}


def post_files(client: TestClient, files, csrf: str | None = None):
    if csrf is None:
        csrf = csrf_of(client.get("/upload").text)
    return client.post("/upload", data={"csrf_token": csrf}, files=files)


def test_the_principal_finds_the_upload_page_from_the_dashboard(client):
    log_in(client, "principal_a")
    assert 'href="/upload"' in client.get("/").text
    page = client.get("/upload")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text and 'name="files"' in page.text
    assert "每个文件不超过 50 MB" in page.text
    assert audit_rows(client)[-1].action == "GET /upload"
    english = client.get("/upload?lang=en").text
    assert "Upload this week&#39;s export" in english and "at most 50 MB a file" in english


def test_teachers_and_the_county_get_the_refusal_page_audited(client):
    for username in ("teacher_c1", "county_admin"):
        log_in(client, username)
        page = client.get("/upload")
        assert page.status_code == 403 and "只有学校管理员" in page.text
        assert audit_rows(client)[-1].action == "GET /upload -> refused"


def test_an_upload_without_the_form_token_is_refused(client, settings):
    before = folder_bytes(settings)
    log_in(client, "principal_a")
    page = post_files(client, [("files", ("attendance.csv", GOOD, "text/csv"))], csrf="forged")
    assert page.status_code == 403 and folder_bytes(settings) == before


def test_a_bad_upload_shows_every_violation_and_changes_nothing(client, settings):
    before = folder_bytes(settings)
    log_in(client, "principal_a")
    page = post_files(client, [("files", ("attendance.csv", BAD, "text/csv"))])
    assert page.status_code == 422
    assert "未接受：发现 2 处问题" in page.text
    blocks = page.text.split('<div class="rule-block')[1:]
    assert "包含其他学校的记录" in blocks[0] and "不在允许的取值中" in blocks[1]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", b) for b in blocks]
    assert rows[0][:4] == ["attendance.csv", "4", "student_id", "STU-B01"]
    assert rows[1][:4] == ["attendance.csv", "3", "status", "sick"]
    assert folder_bytes(settings) == before
    assert audit_rows(client)[-1].action == "POST /upload -> rejected"
    assert audit_rows(client)[-1].student_id is None


def test_a_good_upload_is_accepted_and_replaces_the_schools_rows(client, settings):
    log_in(client, "principal_a")
    page = post_files(client, [("files", ("attendance.csv", GOOD, "text/csv"))])
    assert page.status_code == 200 and "已接受" in page.text and "本校 1 行" in page.text
    written = (settings.paths.data / "attendance.csv").read_text()
    assert "STU-A03,2024-03-04,late" in written and "STU-A01" not in written
    assert "STU-B01,2024-03-04,absent_unexcused" in written
    assert audit_rows(client)[-1].action == "POST /upload -> accepted"
    # the student page reads the new file at once (the cache follows the file)
    log_in(client, "teacher_c1")
    html = client.get("/students/STU-A01").text
    assert 'class="day day-unexcused"' not in html


def test_a_file_over_the_size_limit_is_refused_with_a_message(settings):
    settings.serving.upload_max_mb = 1
    before = folder_bytes(settings)
    big = GOOD + b"STU-A03,2024-03-05,late\n" * 50_000
    with TestClient(create_app(settings)) as client:
        log_in(client, "principal_a")
        page = post_files(client, [("files", ("attendance.csv", big, "text/csv"))])
    assert page.status_code == 422 and "文件太大" in page.text
    assert "at most 1 MB" in page.text
    assert folder_bytes(settings) == before


def test_too_many_failed_logins_show_the_lockout_page(client):
    for _ in range(5):
        assert log_in(client, "teacher_c1", password="wrong").status_code == 401
    locked = log_in(client, "teacher_c1")  # even the right password, while locked out
    assert locked.status_code == 429
    assert locked.headers["content-type"].startswith("text/html")
    assert re.search(r"登录失败次数过多，请 \d+ 秒后再试。", locked.text)
    assert '<form method="post" action="/login"' in locked.text
    assert client.get("/", follow_redirects=False).status_code == 303  # still logged out


def test_a_body_over_every_tables_limit_is_refused_before_it_is_parsed(settings):
    settings.serving.upload_max_mb = 1
    before = folder_bytes(settings)
    with TestClient(create_app(settings)) as client:
        log_in(client, "principal_a")
        csrf = csrf_of(client.get("/upload").text)
        huge = b"x" * 10_500_000
        page = post_files(client, [("files", ("attendance.csv", huge, "text/csv"))], csrf=csrf)
        assert page.status_code == 413 and "上传的文件太大" in page.text
    assert folder_bytes(settings) == before
