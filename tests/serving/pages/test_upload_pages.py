"""The upload page over HTTP: only the school's admin, CSRF, every violation by file, row
and column in the page, an accepted upload replacing the school's rows, the size limit,
the audit trail; and the login lockout page."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import select

from serving.app import create_app
from serving.services.users import add_user
from serving.storage import queries
from serving.storage.tables import User
from tests.serving.pages.conftest import LATEST, NOTE, PASSWORD, audit_rows
from tests.serving.pages.test_pages import csrf_of, log_in

GOOD = b"student_id,date,status\nSTU-A03,2024-03-04,late\n"
BAD = (
    b"student_id,date,status\nSTU-A03,2024-03-04,late\n"
    b"STU-A04,2024-03-05,sick\nSTU-B01,2024-03-05,late\n"
)


def folder_bytes(settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(settings.paths.data.iterdir())}


def post_files(client: TestClient, files, csrf: str | None = None, school: str | None = None):
    if csrf is None:
        csrf = csrf_of(client.get("/upload").text)
    form = {"csrf_token": csrf} | ({} if school is None else {"school_id": school})
    return client.post("/upload", data=form, files=files)


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


def test_teachers_get_the_refusal_page_audited_and_the_county_names_a_school(client):
    log_in(client, "teacher_c1")
    page = client.get("/upload")
    assert page.status_code == 403 and "只有学校管理员" in page.text
    assert audit_rows(client)[-1].action == "GET /upload -> refused"
    log_in(client, "county_admin")
    assert 'href="/upload"' in client.get("/").text
    page = client.get("/upload")
    assert page.status_code == 200 and 'name="school_id"' in page.text and "转学" in page.text
    unnamed = post_files(client, [("files", ("attendance.csv", GOOD, "text/csv"))])
    assert unnamed.status_code == 422 and "school_id" in unnamed.text


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


def _school_rows(settings, table: str, school: str, *extra: dict[str, str]) -> bytes:
    """The data folder's rows of `school` in `table`, plus `extra` rows, as a CSV upload."""
    frame = pd.read_csv(settings.paths.data / f"{table}.csv", dtype=str, keep_default_na=False)
    enrolments = pd.read_csv(settings.paths.data / "enrolments.csv", dtype=str)
    pupils = set(enrolments.loc[enrolments["school_id"] == school, "student_id"])
    mine = (
        frame[frame["school_id"] == school]
        if "school_id" in frame
        else frame[frame["student_id"].isin(pupils)]
    )
    return pd.concat([mine, pd.DataFrame(list(extra))]).to_csv(index=False).encode()


def test_a_principal_cannot_take_over_another_schools_pupil_by_upload(client, settings):
    """Issue 21 item 1, the attack as reported: SCH-A's principal uploads SCH-A's enrolment
    rows plus one putting SCH-B's pupil in a later school year at SCH-A, and SCH-A's
    students plus that pupil with a hardship flag flipped. Accepted before the fix (200,
    SCH-B's pupil row changed); now refused as rows of another school, nothing changed."""
    before = folder_bytes(settings)
    log_in(client, "principal_a")
    page = post_files(client, _takeover_files(settings))
    assert page.status_code == 422, "the takeover was accepted"
    assert folder_bytes(settings) == before
    blocks = page.text.split('<div class="rule-block')[1:]
    assert "包含其他学校的记录" in blocks[0]
    rows = {tuple(re.findall(r"<td[^>]*>(.*?)</td>", r)[:4]) for r in blocks[0].split("<tr")}
    assert ("enrolments.csv", "10", "student_id", "STU-B01") in rows
    assert ("students.csv", "10", "student_id", "STU-B01") in rows
    assert "transfer the county administrator makes" in blocks[0]
    assert len(rows - {()}) == 2  # nothing else: SCH-A's own rows are fine


def _takeover_files(settings):
    takeover = {
        "student_id": "STU-B01",
        "school_year": "2024",
        "school_id": "SCH-A",
        "class_id": "SCH-A-C1",
        "grade_level": "8",
    }
    students = pd.read_csv(settings.paths.data / "students.csv", dtype=str)
    pupil = students[students["student_id"] == "STU-B01"].iloc[0].to_dict()
    pupil["poverty_registered"] = "true"
    return [
        ("files", ("enrolments.csv", _school_rows(settings, "enrolments", "SCH-A", takeover))),
        ("files", ("students.csv", _school_rows(settings, "students", "SCH-A", pupil))),
    ]


def test_the_county_moves_a_pupil_between_schools_by_upload(client, settings):
    """The same files from the county's account, for SCH-A: a transfer. SCH-B's past rows
    of the pupil stay; the pupil's newest enrolment is at SCH-A; SCH-B's other pupil and
    every other SCH-B row are untouched."""
    data = settings.paths.data
    enrolments_before = pd.read_csv(data / "enrolments.csv", dtype=str)
    log_in(client, "county_admin")
    page = post_files(client, _takeover_files(settings), school="SCH-A")
    assert page.status_code == 200 and "已接受" in page.text, page.text[-3000:]
    enrolments = pd.read_csv(data / "enrolments.csv", dtype=str)
    pupil = enrolments[enrolments["student_id"] == "STU-B01"]
    assert list(pupil["school_id"]) == ["SCH-B", "SCH-A"]  # the old row kept, the new one
    b_rows = enrolments_before[enrolments_before["school_id"] == "SCH-B"]
    assert pd.merge(b_rows, enrolments, how="left", indicator=True)["_merge"].eq("both").all()
    students = pd.read_csv(data / "students.csv", dtype=str).set_index("student_id")
    assert students.loc["STU-B01", "poverty_registered"] == "true"
    assert students.loc["STU-B02", "poverty_registered"] == "false"
    assert audit_rows(client)[-1].action == "POST /upload -> accepted"
    assert audit_rows(client)[-1].school_id == "SCH-A"


def test_notes_written_at_another_school_stay_with_it(client):
    """A pupil who moved to SCH-A brings a home-visit note written at SCH-B: SCH-A's staff
    read their own school's note (NOTE) but not SCH-B's, on the page and in the API."""
    other_note = "HOMEVISIT-NOTE written at SCH-B"
    with client.app.state.sessions.begin() as session:
        principal = session.scalar(select(User.id).where(User.username == "principal_a"))
        queries.add_intervention(
            session,
            queries.InterventionIn(
                student_id="STU-A02",
                school_id="SCH-B",
                class_id="SCH-B-C1",
                date=dt.date(2024, 1, 10),
                kind="home_visit",
                by_role="homeroom_teacher",
                outcome="contacted",
                note=other_note,
            ),
            recorded_by=None,
        )
        teacher_b = add_user(
            session, "teacher_b1", PASSWORD, "teacher", "SCH-B", ("SCH-B-C1",), "homeroom_teacher"
        )
        for user_id, comment in [(teacher_b.id, "COMMENT-B"), (principal, "COMMENT-A")]:
            queries.add_feedback(
                session,
                queries.FeedbackIn(
                    student_id="STU-A02", as_of=LATEST, kind="useful", comment=comment
                ),
                user_id=user_id,
            )
    log_in(client, "teacher_c1")
    html = client.get("/students/STU-A02").text
    assert NOTE in html and other_note not in html
    assert "2024-01-10" in html  # the visit itself is shown, only its note is not
    log_in(client, "principal_a")
    html = client.get("/students/STU-A02").text
    assert NOTE in html and other_note not in html
    token = client.post(
        "/v1/auth/token", data={"username": "teacher_c1", "password": PASSWORD}
    ).json()["access_token"]
    record = client.get("/v1/students/STU-A02", headers={"Authorization": f"Bearer {token}"})
    notes = {(i["date"], i["note"]) for i in record.json()["interventions"]}
    assert notes == {("2024-03-05", NOTE), ("2024-01-10", None)}
    assert sorted(f["comment"] or "" for f in record.json()["feedback"]) == ["", "COMMENT-A"]


def test_a_missing_data_folder_is_named_without_its_path(client, settings):
    """Issue 21 item 10: the page said 'a data folder at var/data'; the path is the
    operator's business, not the school's."""
    import shutil

    shutil.rmtree(settings.paths.data)
    log_in(client, "principal_a")
    page = post_files(client, [("files", ("attendance.csv", GOOD, "text/csv"))])
    assert page.status_code == 422 and "the county&#39;s data folder" in page.text
    assert str(settings.paths.data) not in page.text and "var/data" not in page.text
    assert settings.paths.data.name not in re.findall(r"<td[^>]*>(.*?)</td>", page.text)
