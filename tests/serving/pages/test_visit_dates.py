"""The visit form's date (issue 21 item 8): bounded by the student's enrolment in the
export and by today; a date outside is shown again with the date field named (422)."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from serving.storage import queries
from tests.serving.pages.test_pages import csrf_of, log_in


def _post(client, date: str):
    token = csrf_of(client.get("/students/STU-A03").text)
    data = {"csrf_token": token, "kind": "home_visit", "date": date, "outcome": "contacted"}
    return client.post("/students/STU-A03/interventions", data=data, follow_redirects=False)


def _visits(client) -> int:
    with client.app.state.sessions() as session:
        return len(queries.interventions_for(session, "STU-A03"))


@pytest.mark.parametrize(
    "date", ["1900-01-01", "2999-01-01", (dt.date.today() + dt.timedelta(days=1)).isoformat()]
)
def test_a_visit_dated_outside_enrolment_and_today_is_refused(client, date):
    log_in(client, "teacher_c1")
    before = _visits(client)
    answer = _post(client, date)
    assert answer.status_code == 422 and "有内容需要修改：日期" in answer.text
    assert _visits(client) == before


def test_the_enrolment_start_comes_from_the_export(client, settings):
    path = settings.paths.data / "enrolments.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # STU-A03 joined on 9 October, not at the school year's start
        row["start_date"] = "2023-10-09" if row["student_id"] == "STU-A03" else ""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log_in(client, "teacher_c1")
    assert _post(client, "2023-10-08").status_code == 422
    assert _post(client, "2023-10-09").status_code == 303
