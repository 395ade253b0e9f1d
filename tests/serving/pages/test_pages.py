"""The HTML pages through `TestClient`: login, CSRF, scope refusals, a recorded visit,
the language toggle, headers and the audit trail."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from serving.pages.i18n import STRINGS
from serving.pages.session import COOKIE_NAME
from tests.serving.pages.conftest import LATEST, NOTE, PASSWORD, audit_rows

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, username: str, password: str = PASSWORD, next: str = "/"):
    page = client.get("/login")
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(page.text),
            "next": next,
        },
        follow_redirects=False,
    )


def test_every_string_has_both_languages():
    for key, (zh, en) in STRINGS.items():
        assert zh.strip() and en.strip(), key
        assert re.findall(r"{(\w+)}", zh) == re.findall(r"{(\w+)}", en) or sorted(
            re.findall(r"{(\w+)}", zh)
        ) == sorted(re.findall(r"{(\w+)}", en)), key


def test_pages_need_a_login_and_the_login_sets_a_safe_cookie(client):
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login"
    deep = client.get("/students/STU-A01", follow_redirects=False)
    assert deep.headers["location"] == "/login?next=/students/STU-A01"
    login = log_in(client, "teacher_c1", next="/students/STU-A01")
    assert login.status_code == 303 and login.headers["location"] == "/students/STU-A01"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=28800" in cookie
    assert "teacher_c1" not in cookie and "SCH-A" not in cookie  # only a signed id and token
    page = client.get("/")
    assert page.status_code == 200 and "本周关注名单" in page.text


def test_wrong_password_and_open_redirects_are_refused(client):
    bad = log_in(client, "teacher_c1", password="wrong password")
    assert bad.status_code == 401 and "用户名或密码不正确" in bad.text
    evil = log_in(client, "teacher_c1", next="//evil.example/x")
    assert evil.headers["location"] == "/"


def test_a_tampered_cookie_is_no_session(client):
    log_in(client, "teacher_c1")
    value = client.cookies.get(COOKIE_NAME)
    client.cookies.set(COOKIE_NAME, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused_with_a_page(client):
    log_in(client, "teacher_c1")
    visit = {"kind": "home_visit", "date": "2024-03-12", "outcome": "contacted", "note": ""}
    for data in (visit, {**visit, "csrf_token": "forged"}):
        refused = client.post("/students/STU-A01/interventions", data=data)
        assert refused.status_code == 403
        assert "text/html" in refused.headers["content-type"]
        assert "表单已过期" in refused.text
    no_token_login = client.post("/login", data={"username": "teacher_c1", "password": PASSWORD})
    assert no_token_login.status_code == 403
    page = client.get("/students/STU-A01")
    assert "2024-03-12" not in page.text  # nothing was saved


def test_teacher_week_shows_ladder_first_then_ranked_list_and_visit_progress(client):
    log_in(client, "teacher_c1")
    html = client.get("/").text
    assert f"{LATEST.isoformat()} 这一周" in html
    # ladder: 3 days absent (red, within the hour) above 1 day (today)
    alerts = html.split('id="alerts-h"')[1].split('id="ranked-h"')[0]
    assert alerts.index("STU-A01") < alerts.index("STU-A04")
    assert "alert level-3" in alerts and "连续旷课 3 天" in alerts and "1小时内" in alerts
    assert "按疑似辍学处理" in alerts
    ranked = html.split('id="ranked-h"')[1]
    assert ranked.index("STU-A02") < ranked.index("STU-A03")
    assert "STU-A07" not in html  # another class
    assert "tier-high" in ranked and "近30个上学日旷课6天" in ranked
    assert "2024-03-05" in ranked and "家访" in ranked  # last contact of STU-A02
    # progress: 1 of 6 students visited, minimum 3
    assert "已家访 1 人 / 至少 3 人（全班 6 人的一半）" in html and "还差 2 人" in html
    assert NOTE not in html


def test_student_page_shows_history_chart_reasons_visits_and_notes(client):
    log_in(client, "teacher_c1")
    page = client.get("/students/STU-A02")
    assert page.status_code == 200
    html = page.text
    risk = html.split('<figure class="chart">')[1].split("</figure>")[0]
    assert risk.count('<circle class="dot') == 4  # one point per scored week
    assert '<path class="line" d="M' in html
    assert "留守儿童（父母均外出务工）" in html and "+0.50" in html
    assert NOTE in html  # the school's own staff read the note
    assert "31%" in html
    rows = audit_rows(client)
    assert rows[-1].student_id == "STU-A02" and rows[-1].action == "GET /students/{student_id}"
    assert rows[-1].school_id == "SCH-A"


def test_a_recorded_visit_appears_on_the_student_page_and_counts(client):
    log_in(client, "teacher_c1")
    html = client.get("/students/STU-A03").text
    saved = client.post(
        "/students/STU-A03/interventions",
        data={
            "csrf_token": csrf_of(html),
            "kind": "home_visit",
            "date": "2024-03-12",
            "outcome": "contacted",
            "note": "HOMEVISIT-NOTE 家长答应每天送孩子上学",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert saved.headers["location"].startswith("/students/STU-A03?saved=visit")
    after = client.get(saved.headers["location"]).text
    assert "已保存" in after and "2024-03-12" in after and "HOMEVISIT-NOTE" in after
    week = client.get("/").text
    assert "已家访 2 人 / 至少 3 人" in week
    actions = [r.action for r in audit_rows(client) if r.student_id == "STU-A03"]
    assert "POST /students/{student_id}/interventions" in actions


def test_a_bad_visit_form_is_shown_again_with_the_field_named(client):
    log_in(client, "teacher_c1")
    token = csrf_of(client.get("/students/STU-A03").text)
    bad = client.post(
        "/students/STU-A03/interventions",
        data={
            "csrf_token": token,
            "kind": "text_message",
            "date": "2024-03-12",
            "outcome": "contacted",
            "note": "x",
        },
    )
    assert bad.status_code == 422 and "有内容需要修改：方式" in bad.text


def test_feedback_buttons_record_the_verdict(client):
    log_in(client, "teacher_c1")
    token = csrf_of(client.get("/students/STU-A02").text)
    done = client.post(
        "/students/STU-A02/feedback", data={"csrf_token": token, "kind": "wrongly_flagged"}
    )
    assert done.status_code == 200 and "谢谢，已记录您的反馈" in done.text
    assert 'class="choice chosen" aria-pressed="true">不该被标记' in done.text


def test_another_class_gets_the_refusal_page_and_the_attempt_is_audited(client):
    log_in(client, "teacher_c1")
    refused = client.get("/students/STU-A07")
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "这名学生不在您的班级" in refused.text
    assert "STU-A07" not in refused.text.split("<main")[1]
    token = csrf_of(refused.text)
    posted = client.post(
        "/students/STU-A07/interventions",
        data={
            "csrf_token": token,
            "kind": "home_visit",
            "date": "2024-03-12",
            "outcome": "contacted",
        },
    )
    assert posted.status_code == 403
    rows = [r for r in audit_rows(client) if r.student_id == "STU-A07"]
    assert [r.action for r in rows] == [
        "GET /students/{student_id} -> not_your_student",
        "POST /students/{student_id}/interventions -> not_your_student",
    ]
    assert client.get("/students/STU-NOBODY").status_code == 404


def test_language_toggle_by_query_then_cookie(client):
    log_in(client, "teacher_c1")
    english = client.get("/?lang=en")
    assert "This week" in english.text and "本周关注名单" not in english.text
    assert '<html lang="en">' in english.text
    assert "Suspected dropout" in english.text or "suspected dropout" in english.text
    kept = client.get("/")  # the cookie keeps the choice
    assert "Who to see first this week" in kept.text
    back = client.get("/?lang=zh")
    assert "本周优先关注" in back.text


def test_pages_carry_a_strict_csp_and_the_security_headers(client):
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    css = client.get("/static/baoxue.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert "<script" not in page.text and "style=" not in page.text


def test_logout_ends_the_session(client):
    log_in(client, "teacher_c1")
    token = csrf_of(client.get("/").text)
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?notice=logged_out"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_principal_sees_the_school_overview(client):
    log_in(client, "principal_a")
    html = client.get("/").text
    assert "全校概况" in html and "各班风险分布" in html
    assert "STU-A01" in html  # the open 3-day alert
    assert "teacher_c1" in html and "1 / 3" in html  # homeroom: 1 visited of half of 6
    assert "principal_a" in html and "0 / 40" in html


def test_principal_downloads_the_weeks_xlsx_and_others_cannot(client, settings):
    url = f"/lists/SCH-A/{LATEST.isoformat()}.xlsx"
    log_in(client, "principal_a")
    assert url in client.get("/").text
    assert client.get(url).status_code == 404  # the batch has not written it yet
    folder = settings.paths.lists / LATEST.isoformat()
    folder.mkdir(parents=True)
    (folder / "SCH-A.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    answer = client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert answer.content.startswith(b"PK")
    actions = [r.action for r in audit_rows(client)]
    assert f"GET {url}" in actions
    # another school's list
    assert client.get(f"/lists/SCH-B/{LATEST.isoformat()}.xlsx").status_code == 403


def test_a_teacher_cannot_download_the_school_list(client, settings):
    log_in(client, "teacher_c1")
    answer = client.get(f"/lists/SCH-A/{LATEST.isoformat()}.xlsx")
    assert answer.status_code == 403
