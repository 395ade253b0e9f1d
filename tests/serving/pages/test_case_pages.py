"""The county dashboard, the case page and the overdue panels through `TestClient`:
the roster and the trend, 销号 by the county with its history, a teacher refused the
close form (403 page), scope refusals, CSRF, and the audit rows."""

from __future__ import annotations

import datetime as dt
import re

from serving.services import cases
from serving.services.users import add_user
from serving.storage import queries
from tests.serving.pages.conftest import PASSWORD, audit_rows
from tests.serving.pages.test_pages import csrf_of, log_in

CASE_LINK = re.compile(r'href="/cases/(\d+)">(STU-A\d\d)<')


def roster_ids(html: str) -> dict[str, int]:
    return {student: int(case_id) for case_id, student in CASE_LINK.findall(html)}


def case_id_of(client, student_id: str) -> int:
    with client.app.state.sessions() as session:
        return next(c.id for c in queries.cases_for(session, student_id=student_id, status=None))


def test_the_county_dashboard_shows_schools_roster_trend_and_overdue(client):
    log_in(client, "county_admin")
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "全县控辍保学概况" in html and "此角色暂无网页" not in html
    assert "辍学生花名册" in html and "每周高风险学生人数" in html
    schools = html[html.index('class="plain schools"') : html.index("</table>")]
    cells = re.findall(r"<td>(?:<strong class=\"red\">)?(\w[\w-]*)", schools)
    assert cells[:7] == ["SCH-A", "8", "2", "1", "0", "4", "1"]
    roster = html[html.index('class="plain roster"') :]
    assert set(roster_ids(roster)) == {"STU-A01"}  # the one suspected dropout
    assert "疑似辍学" in roster
    assert html.count('class="trend-bar"') == 4  # four stored weeks
    assert "逾期未跟进" in html  # cases opened now are not yet overdue...
    assert any(a.action == "GET / (county)" for a in audit_rows(client))


def test_the_county_closes_a_case_with_a_reason_and_the_roster_shows_it(client):
    log_in(client, "county_admin")
    home = client.get("/")
    case_id = roster_ids(home.text)["STU-A01"]
    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 200 and "个案 STU-A01" in page.text
    assert "teacher_c1" in page.text  # the homeroom teacher is the responsible adult
    token = csrf_of(page.text)
    refused = client.post(f"/cases/{case_id}/close", data={"status": "returned", "reason": "x"})
    assert refused.status_code == 403  # no CSRF token
    empty = client.post(
        f"/cases/{case_id}/close", data={"csrf_token": token, "status": "returned", "reason": ""}
    )
    assert empty.status_code == 422 and "无法保存" in empty.text
    done = client.post(
        f"/cases/{case_id}/close",
        data={"csrf_token": token, "status": "returned", "reason": "已返校，班主任每日点名"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/cases/{case_id}?saved=closed"
    closed = client.get(done.headers["location"]).text
    assert "已返校，班主任每日点名" in closed and "确认销号" not in closed
    assert closed.count("<strong>销号</strong>") == 1
    roster = client.get("/").text
    row = roster[roster.index(f'href="/cases/{case_id}"') :].split("</tr>")[0]
    assert "已返校" in row and "county_admin" in row
    actions = [a.action for a in audit_rows(client) if a.student_id == "STU-A01"]
    assert "POST /cases/{case_id}/close" in actions and "GET /cases/{case_id}" in actions


def test_plan_and_owner_edits_are_kept_in_the_history(client):
    log_in(client, "principal_a")
    client.get("/")
    case_id = case_id_of(client, "STU-A07")
    page = client.get(f"/cases/{case_id}")
    token = csrf_of(page.text)
    saved = client.post(
        f"/cases/{case_id}/plan",
        data={"csrf_token": token, "plan": "一生一策：结对子，每周谈心"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    html = client.get(f"/cases/{case_id}").text
    assert "一生一策：结对子，每周谈心" in html and "修改一生一策" in html
    assert 'action="/cases/' in html and "确认销号" in html  # the principal may close


def test_a_teacher_cannot_close_and_sees_only_own_classes_cases(client):
    log_in(client, "teacher_c1")
    week = client.get("/")
    assert "逾期未跟进" in week.text
    own = case_id_of(client, "STU-A01")
    page = client.get(f"/cases/{own}")
    assert page.status_code == 200 and "确认销号" not in page.text  # no close form
    token = csrf_of(page.text)
    refused = client.post(
        f"/cases/{own}/close", data={"csrf_token": token, "status": "returned", "reason": "back"}
    )
    assert refused.status_code == 403 and "您的角色不能查看此页" in refused.text
    other = client.get(f"/cases/{case_id_of(client, 'STU-A07')}")
    assert other.status_code == 403 and "这名学生不在您的班级" in other.text
    assert client.get("/cases/99999").status_code == 404
    codes = [a.action for a in audit_rows(client)]
    assert "POST /cases/{case_id}/close -> forbidden" in codes
    assert "GET /cases/{case_id} -> not_your_student" in codes


def test_overdue_follow_ups_show_on_the_principals_dashboard(client):
    with client.app.state.sessions.begin() as session:
        cases.sync_cases(session, None, dt.datetime(2024, 3, 11, 8, tzinfo=dt.UTC))
    log_in(client, "principal_a")
    html = client.get("/").text
    panel = html[html.index('class="card overdue"') :].split("</section>")[0]
    assert set(re.findall(r"STU-A\d\d", panel)) == {"STU-A01", "STU-A02", "STU-A04", "STU-A07"}
    assert panel.index("STU-A01") < panel.index("STU-A04")  # level 3 first


def test_the_county_pages_speak_english_and_a_researcher_gets_no_case(client, pages_template):
    log_in(client, "county_admin")
    html = client.get("/?lang=en").text
    assert "County overview" in html and "Dropout roster" in html
    case_id = roster_ids(html)["STU-A01"]
    page = client.get(f"/cases/{case_id}").text
    assert "Close the case" in page and "Responsible adult" in page
    with client.app.state.sessions.begin() as session:
        add_user(session, "researcher_1", PASSWORD, "researcher")
    client.cookies.clear()
    log_in(client, "researcher_1")
    assert "Research accounts" in client.get("/?lang=en").text
    assert client.get(f"/cases/{case_id}").status_code == 403
