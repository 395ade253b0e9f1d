"""Weekly lists over HTTP, from stored scores: who may read which school's or class's list."""

from __future__ import annotations

import pytest

from tests.serving.api.conftest import AS_OFS, audit_rows

# (user, school, class_id, expected status, students listed)
MATRIX = [
    ("county", "SCH-A", None, 200, {"STU-A1", "STU-A2"}),
    ("county", "SCH-B", None, 200, {"STU-B1"}),
    ("admin_a", "SCH-A", None, 200, {"STU-A1", "STU-A2"}),
    ("admin_a", "SCH-A", "SCH-A-C2", 200, {"STU-A2"}),
    ("admin_a", "SCH-B", None, 403, None),
    ("teacher_a1", "SCH-A", None, 200, {"STU-A1"}),  # their classes' rows only
    ("teacher_a1", "SCH-A", "SCH-A-C1", 200, {"STU-A1"}),
    ("teacher_a1", "SCH-A", "SCH-A-C2", 403, None),
    ("teacher_a1", "SCH-B", None, 403, None),
    ("researcher", "SCH-A", None, 403, None),
    ("county", "SCH-NONE", None, 404, None),
]


@pytest.mark.parametrize(("user", "school", "class_id", "expected", "listed"), MATRIX)
def test_list_role_matrix(client, auth, user, school, class_id, expected, listed):
    params = {} if class_id is None else {"class_id": class_id}
    response = client.get(f"/v1/lists/{school}", params=params, headers=auth[user])
    assert response.status_code == expected, response.json()
    body = response.json()
    rows = audit_rows(client)
    assert [(r.username, r.student_id, r.school_id) for r in rows] == [(user, None, school)]
    if expected != 200:
        assert body["error"] in {"not_your_student", "forbidden", "list_not_found"}
        return
    assert {r["student_id"] for r in body["rows"]} == listed
    assert [r["rank"] for r in body["rows"]] == list(range(1, len(listed) + 1))
    assert body["as_of"] == AS_OFS[-1].isoformat()


def test_list_rows_carry_tier_change_ladder_and_visits(client, auth):
    body = client.get("/v1/lists/SCH-A", headers=auth["admin_a"]).json()
    first = body["rows"][0]
    assert first["student_id"] == "STU-A1"  # the ladder alert puts them on top
    assert first["ladder"]["level"] == 2
    assert first["tier"] == "high" and first["change"] in {"rising", "unchanged"}
    assert first["visits_this_term"] == 1  # the home visit on 2024-03-05
    assert first["reasons"][0]["reason_code"] == "ABSENCE_RECENT"
    older = client.get("/v1/lists/SCH-A", params={"as_of": "2024-03-04"}, headers=auth["admin_a"])
    assert older.json()["as_of"] == "2024-03-04"
