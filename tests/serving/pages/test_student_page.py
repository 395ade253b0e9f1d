"""The student page's attendance calendar, score trend per subject and open case, read
from the export in the data folder (cached) and the cases service."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time

from sqlalchemy import select

from serving.pages import views
from serving.services import students
from serving.services.users import get_viewer
from serving.storage.tables import User, utcnow
from tests.serving.pages.conftest import LATEST, TERM_1, TERM_2, school_days
from tests.serving.pages.test_pages import csrf_of, log_in


def cells(html: str, state: str) -> list[str]:
    return re.findall(rf'<td class="day day-{state}" title="([0-9-]+)', html)


def test_the_calendar_colours_every_school_day_of_the_year(client):
    log_in(client, "teacher_c1")
    html = client.get("/students/STU-A01").text
    assert cells(html, "unexcused") == ["2024-03-06", "2024-03-07", "2024-03-08"]
    assert cells(html, "late") == ["2023-10-10"] and cells(html, "leave") == ["2023-11-02"]
    # school days from 2023-09-01 to before the newest week (2024-03-11)
    present = cells(html, "present")
    assert present[0] == "2023-09-01" and present[-1] == "2024-03-05"
    year = school_days(*TERM_1) + school_days(TERM_2[0], LATEST - dt.timedelta(days=1))
    assert len(year) == 116 and len(present) + 5 == len(year)
    assert 'class="count-unexcused">3<' in html
    assert "2024-03-11" not in html.split('class="months"')[1].split("</section>")[0]
    assert html.count('<table class="month"') == 7  # September .. March


def test_the_score_trend_shows_each_subject_as_a_share_of_full_marks(client):
    log_in(client, "teacher_c1")
    html = client.get("/students/STU-A02").text
    charts = html.split('<figure class="trend-chart">')[1:]
    assert [re.search(r"<strong>(.*?)</strong>", c).group(1) for c in charts] == [
        "语文",
        "数学",
        "英语",
    ]
    maths = charts[1]
    assert maths.count('<circle class="dot') == 3
    assert "2023-11-15 期中: 103.2 / 120" in maths  # 0.86 of 120
    assert "最近 56%" in maths
    assert "缺考 1 次" in charts[2] and charts[2].count('<circle class="dot') == 2
    english = client.get("/students/STU-A02?lang=en").text
    assert "Scores by subject" in english and "Maths" in english


def test_only_the_students_own_rows_come_from_a_cached_read(client, settings):
    data = settings.paths.data
    first = students.export_index(data)
    assert students.export_index(data) is first  # cached while the files are unchanged
    mine = students.student_export(
        data, "STU-A02", since=LATEST.replace(month=1, day=1), until=LATEST
    )
    assert set(mine.attendance) == {d for d in mine.attendance if d.year == 2024}
    assert all(g.date < LATEST for g in mine.grades) and len(mine.grades) == 9
    with open(data / "attendance.csv", "a", encoding="utf-8") as f:
        f.write("STU-A02,2024-03-04,late\n")
    assert students.export_index(data) is not first  # a changed file is read again
    again = students.student_export(data, "STU-A02", since=LATEST.replace(day=1), until=LATEST)
    assert again.attendance[LATEST.replace(day=4)] == "late"
    assert students.student_export(data, "NOBODY", since=LATEST, until=LATEST).grades == ()


def test_without_an_export_the_page_says_no_records(client, settings):
    shutil.rmtree(settings.paths.data)
    log_in(client, "teacher_c1")
    page = client.get("/students/STU-A01")
    assert page.status_code == 200
    assert page.text.count("没有记录：数据文件夹中找不到学校导出的数据。") == 2
    assert 'class="day ' not in page.text


def test_the_open_case_shows_owner_due_and_an_editable_plan(client):
    log_in(client, "teacher_c1")
    client.get("/")  # opening the home page opens the week's cases
    html = client.get("/students/STU-A01").text
    case = html.split('id="case"')[1].split("</section>")[0]
    case_id = re.search(r'href="/cases/(\d+)"', case).group(1)
    assert "teacher_c1" in case and "旷课预警 · 第 3 级" in case
    assert "已逾期" not in case  # a level-3 alert is due within the hour of opening
    saved = client.post(
        f"/cases/{case_id}/plan",
        data={"csrf_token": csrf_of(html), "plan": "每天早上电话确认到校", "back": "student"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/students/STU-A01?saved=plan#case"
    html = client.get(saved.headers["location"]).text
    assert "每天早上电话确认到校</textarea>" in html
    assert "每天早上电话确认到校" in client.get(f"/cases/{case_id}").text
    without = client.get("/students/STU-A05").text
    assert "这名学生目前没有未销号的个案。" in without


def test_the_case_is_overdue_after_its_due_time_until_something_is_recorded(client, settings):
    log_in(client, "teacher_c1")
    client.get("/")
    with client.app.state.sessions() as session:
        viewer = get_viewer(session, user_id("teacher_c1", session))
        record = students.student_record(session, viewer, "STU-A01")
        now = utcnow()
        soon = views.open_case(session, viewer, record, now)
        later = views.open_case(session, viewer, record, now + dt.timedelta(hours=2))
    assert soon is not None and not soon.overdue
    assert later is not None and later.overdue and later.view.owner_name == "teacher_c1"


def user_id(username, session) -> int:
    return session.scalar(select(User.id).where(User.username == username))


def test_opening_the_home_page_reads_the_export_in_the_background(client, settings):
    data = settings.paths.data
    log_in(client, "teacher_c1")
    client.get("/")
    deadline = time.monotonic() + 20
    while str(data.resolve()) not in students._cache:
        assert time.monotonic() < deadline, "the export index was not built"
        time.sleep(0.05)
    index = students.export_index(data)
    assert students.warm_export_index(data) is False  # current: nothing to do
    assert students.export_index(data) is index
