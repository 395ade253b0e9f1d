"""Student records over HTTP: the role matrix, notes, interventions, feedback, audit rows."""

from __future__ import annotations

import pytest

from tests.serving.api.conftest import AS_OFS, COMMENT, NOTE, audit_rows

READ = "GET /v1/students/{student_id}"

# (user, student, expected status) for reading, adding an intervention, adding feedback.
MATRIX = [
    ("county", "STU-A1", 200),
    ("county", "STU-B1", 200),
    ("admin_a", "STU-A1", 200),
    ("admin_a", "STU-A2", 200),
    ("admin_a", "STU-B1", 403),
    ("teacher_a1", "STU-A1", 200),
    ("teacher_a1", "STU-A2", 403),
    ("teacher_a1", "STU-B1", 403),
    ("admin_b", "STU-A1", 403),
    ("admin_b", "STU-B1", 200),
    ("researcher", "STU-A1", 403),
    ("researcher", "STU-B1", 403),
    ("county", "STU-NONE", 404),
]
VISIT = {
    "date": "2024-03-12",
    "kind": "home_visit",
    "outcome": "contacted",
    "note": NOTE,
}


def _post_status(expected: int) -> int:
    return 201 if expected == 200 else expected


@pytest.mark.parametrize(("user", "student", "expected"), MATRIX)
def test_read_role_matrix_with_an_audit_row_for_every_attempt(
    client, auth, user, student, expected
):
    response = client.get(f"/v1/students/{student}", headers=auth[user])
    assert response.status_code == expected, response.json()
    rows = audit_rows(client)
    assert len(rows) == 1
    assert rows[0].username == user and rows[0].student_id == student
    if expected == 200:
        body = response.json()
        assert body["student_id"] == student
        assert rows[0].action == READ
        assert rows[0].school_id == body["school_id"]
    else:
        body = response.json()
        assert set(body) >= {"error", "message", "field"}
        assert (
            body["error"]
            == {403: ("not_your_student", "forbidden"), 404: ("student_not_found",)}[expected][
                0 if user != "researcher" else -1
            ]
        )
        assert rows[0].action.startswith(READ + " -> ")
        assert student not in body["message"]


@pytest.mark.parametrize(("user", "student", "expected"), MATRIX)
def test_intervention_role_matrix(client, auth, user, student, expected):
    response = client.post(f"/v1/students/{student}/interventions", json=VISIT, headers=auth[user])
    assert response.status_code == _post_status(expected), response.json()
    assert len(audit_rows(client)) == 1


@pytest.mark.parametrize(("user", "student", "expected"), MATRIX)
def test_feedback_role_matrix(client, auth, user, student, expected):
    body = {"kind": "useful"}
    response = client.post(f"/v1/students/{student}/feedback", json=body, headers=auth[user])
    assert response.status_code == _post_status(expected), response.json()


def test_record_shows_current_score_history_ladder_and_reasons(client, auth):
    body = client.get("/v1/students/STU-A1", headers=auth["admin_a"]).json()
    assert body["school_id"] == "SCH-A" and body["class_id"] == "SCH-A-C1"
    assert [p["as_of"] for p in body["history"]] == [d.isoformat() for d in AS_OFS]
    assert body["current"]["as_of"] == AS_OFS[-1].isoformat()
    assert body["current"]["risk_score"] == pytest.approx(0.25)
    reason = body["current"]["reasons"][0]
    assert reason["reason_code"] == "ABSENCE_RECENT" and reason["contribution"] == 0.8
    assert reason["text_zh"] and "6" in reason["text_zh"] and reason["text_en"]
    assert body["ladder"]["escalation_level"] == 2
    assert body["ladder"]["alert"]["level"] == 2 and body["ladder"]["alert"]["action_zh"]


def test_notes_are_shown_to_the_schools_staff_only(client, auth):
    for user, visible in [("admin_a", True), ("teacher_a1", True), ("county", False)]:
        body = client.get("/v1/students/STU-A1", headers=auth[user]).json()
        assert body["notes_visible"] is visible
        assert [i["note"] for i in body["interventions"]] == [NOTE if visible else None]
        assert body["interventions"][0]["kind"] == "home_visit"


def test_interventions_and_feedback_are_stored_and_returned(client, auth, viewers):
    created = client.post(
        "/v1/students/STU-A1/interventions", json=VISIT, headers=auth["teacher_a1"]
    )
    assert created.status_code == 201
    assert created.json()["note"] == NOTE
    assert created.json()["recorded_by"] == viewers["teacher_a1"].user_id
    feedback = client.post(
        "/v1/students/STU-A1/feedback",
        json={"kind": "wrongly_flagged", "comment": COMMENT},
        headers=auth["teacher_a1"],
    )
    assert feedback.status_code == 201
    assert feedback.json()["as_of"] == AS_OFS[-1].isoformat()  # the newest scored week
    body = client.get("/v1/students/STU-A1", headers=auth["admin_a"]).json()
    assert [i["date"] for i in body["interventions"]] == ["2024-03-12", "2024-03-05"]
    assert body["interventions"][0]["note"] == NOTE
    assert [(f["kind"], f["comment"]) for f in body["feedback"]] == [("wrongly_flagged", COMMENT)]
    county = client.get("/v1/students/STU-A1", headers=auth["county"]).json()
    assert [f["comment"] for f in county["feedback"]] == [None]
    with client.app.state.sessions() as session:
        from serving.storage.queries import interventions_for

        stored = interventions_for(session, "STU-A1")[0]
    assert (stored.school_id, stored.class_id) == ("SCH-A", "SCH-A-C1")  # from our records


def test_intervention_fields_are_checked_and_named(client, auth):
    bad = {**VISIT, "kind": "text_message"}
    response = client.post("/v1/students/STU-A1/interventions", json=bad, headers=auth["admin_a"])
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] == "kind"
    extra = {**VISIT, "school_id": "SCH-B"}  # the school comes from our records, not the client
    response = client.post("/v1/students/STU-A1/interventions", json=extra, headers=auth["admin_a"])
    assert response.status_code == 422 and response.json()["field"] == "school_id"
    long_note = {**VISIT, "note": "x" * 4001}
    response = client.post(
        "/v1/students/STU-A1/interventions", json=long_note, headers=auth["admin_a"]
    )
    assert response.status_code == 422 and response.json()["field"] == "note"


def test_feedback_kind_must_be_known(client, auth):
    response = client.post(
        "/v1/students/STU-A1/feedback", json={"kind": "great"}, headers=auth["county"]
    )
    assert response.status_code == 422 and response.json()["field"] == "kind"


def test_every_read_writes_one_audit_row(client, auth):
    for _ in range(3):
        client.get("/v1/students/STU-A1", headers=auth["admin_a"])
    client.get("/v1/students/STU-B1", headers=auth["admin_a"])  # refused, audited too
    rows = audit_rows(client)
    assert [(r.student_id, r.action) for r in rows] == [("STU-A1", READ)] * 3 + [
        ("STU-B1", READ + " -> not_your_student")
    ]
    assert {r.username for r in rows} == {"admin_a"}


def test_concurrent_reads_and_writes_are_all_answered_and_audited(client, auth):
    """Sixteen readers and a writer at once: reads go through the group-commit audit
    writer, the visits through their own transactions; nothing is lost or refused."""
    from concurrent.futures import ThreadPoolExecutor

    def read(_: int) -> int:
        return client.get("/v1/students/STU-A1", headers=auth["admin_a"]).status_code

    def visit(_: int) -> int:
        response = client.post(
            "/v1/students/STU-A1/interventions", json=VISIT, headers=auth["admin_a"]
        )
        return response.status_code

    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(visit if i % 8 == 7 else read, i) for i in range(72)]
        codes = [job.result() for job in jobs]
    assert [c for i, c in enumerate(codes) if i % 8 != 7] == [200] * 63
    assert [c for i, c in enumerate(codes) if i % 8 == 7] == [201] * 9
    rows = audit_rows(client)
    assert sum(r.action == READ for r in rows) == 63
    assert sum(r.action == "POST /v1/students/{student_id}/interventions" for r in rows) == 9
