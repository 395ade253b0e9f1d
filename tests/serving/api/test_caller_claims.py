"""What a caller claims about a visit (issue 21 item 8): a teacher once stored
`by_role: "county"` and visits dated 1900-01-01 and 2999-01-01. The role now comes from
the viewer's account and the date must lie between the student's enrolment and today
(the server's local date); anything else is a 422 naming the field, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt

import pytest

from serving.storage import queries

URL = "/v1/students/STU-A1/interventions"
VISIT = {"kind": "home_visit", "outcome": "contacted"}


def _visits(client) -> list[queries.InterventionRow]:
    with client.app.state.sessions() as session:
        return queries.interventions_for(session, "STU-A1")


def test_the_role_is_the_viewers_not_the_one_sent(client, auth):
    before = len(_visits(client))
    claimed = client.post(
        URL, json={**VISIT, "date": "2024-03-06", "by_role": "county"}, headers=auth["teacher_a1"]
    )
    assert claimed.status_code == 422, claimed.text
    assert claimed.json()["field"] == "by_role" and "homeroom_teacher" in claimed.json()["message"]
    assert len(_visits(client)) == before
    plain = client.post(URL, json={**VISIT, "date": "2024-03-06"}, headers=auth["teacher_a1"])
    assert plain.status_code == 201, plain.text
    assert plain.json()["by_role"] == "homeroom_teacher"
    county = client.post(URL, json={**VISIT, "date": "2024-03-07"}, headers=auth["county"])
    assert county.status_code == 201 and county.json()["by_role"] == "county"
    principal = client.post(URL, json={**VISIT, "date": "2024-03-08"}, headers=auth["admin_a"])
    assert principal.status_code == 201 and principal.json()["by_role"] == "principal"


@pytest.mark.parametrize(
    "date",
    [
        "1900-01-01",
        "2999-01-01",
        (dt.date.today() + dt.timedelta(days=1)).isoformat(),
        "2023-07-31",  # the day before the school year of the first scored week (2024-03-04)
    ],
)
def test_a_date_outside_enrolment_and_today_is_refused_naming_the_field(client, auth, date):
    before = len(_visits(client))
    answer = client.post(URL, json={**VISIT, "date": date}, headers=auth["teacher_a1"])
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_intervention" and body["field"] == "date"
    assert body["message"].startswith(f"date: {date}")
    assert len(_visits(client)) == before


@pytest.mark.parametrize("date", ["2023-08-01", dt.date.today().isoformat()])
def test_dates_from_enrolment_to_today_are_kept(client, auth, date):
    answer = client.post(URL, json={**VISIT, "date": date}, headers=auth["teacher_a1"])
    assert answer.status_code == 201, answer.text
    assert answer.json()["date"] == date
