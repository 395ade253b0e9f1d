"""The app as a whole: no model (503s and /health), error bodies, headers, CORS, OpenAPI."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from serving.app import RedactStudentPaths, create_app, redact_path

ROUTES = {
    ("post", "/v1/auth/token"),
    ("post", "/v1/auth/logout"),
    ("post", "/v1/score"),
    ("get", "/v1/lists/{school_id}"),
    ("get", "/v1/students/{student_id}"),
    ("post", "/v1/students/{student_id}/interventions"),
    ("post", "/v1/students/{student_id}/feedback"),
    ("get", "/v1/model"),
    ("post", "/v1/admin/reload"),
    ("get", "/health"),
}
TINY = {
    "as_of": "2024-03-11",
    "tables": {"schools": [], "calendar": [], "students": [], "enrolments": []},
}


def test_without_a_model_the_app_starts_health_says_not_ready_and_scoring_answers_503(client, auth):
    health = client.get("/health", headers=auth["researcher"])
    assert health.status_code == 503
    assert health.json()["status"] == "not_ready"
    assert health.json()["database"] is True
    assert health.json()["model"]["ready"] is False
    for response in (
        client.get("/v1/model", headers=auth["county"]),
        client.post("/v1/score", json=TINY, headers=auth["county"]),
    ):
        assert response.status_code == 503
        assert response.json()["error"] == "no_champion_model"
        assert "No model to score with" in response.json()["message"]
    # what needs no model still works
    assert client.get("/v1/students/STU-A1", headers=auth["county"]).status_code == 200


def test_reload_is_for_the_county_admin_only(client, auth):
    refused = client.post("/v1/admin/reload", headers=auth["admin_a"])
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    done = client.post("/v1/admin/reload", headers=auth["county"])
    assert done.status_code == 200
    assert done.json()["changed"] is False and done.json()["model"]["ready"] is False


def test_unknown_routes_and_methods_answer_the_error_shape(client, auth):
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "message": "There is nothing at this address.",
        "field": None,
    }
    wrong = client.delete("/v1/model", headers=auth["county"])
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_request_validation_errors_name_the_field(client, auth):
    response = client.post(
        "/v1/score", json={"as_of": "not a date", "tables": {}}, headers=auth["county"]
    )
    assert response.status_code in (422, 503)  # the model is checked first or the body
    bad_query = client.get("/v1/lists/SCH-A", params={"capacity": 0}, headers=auth["county"])
    assert bad_query.status_code == 422
    assert bad_query.json()["error"] == "invalid_request"
    assert bad_query.json()["field"] == "capacity"
    assert "capacity" in bad_query.json()["message"]


def test_an_unexpected_error_is_a_500_json_without_traceback(settings, api_logs):
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError("secret detail STU-A1 should never be shown")

    with TestClient(app) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "Something went wrong on our side. Please try again later.",
        "field": None,
    }
    assert "Traceback" not in response.text and "secret" not in response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    logged = [text for name, text in api_logs.lines if name == "serving.api.errors"]
    assert logged[-1] == "unhandled RuntimeError in GET /boom"


def test_security_headers_on_every_response_and_a_strict_csp_for_json(client, auth):
    for response in (
        client.get("/health"),
        client.get("/v1/students/STU-A1", headers=auth["county"]),
        client.get("/v1/students/STU-A1"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["Cache-Control"] == "no-store"
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "script-src" in docs.headers["Content-Security-Policy"]


def test_cors_is_closed(client):
    preflight = client.options(
        "/v1/students/STU-A1",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_openapi_documents_every_route_with_request_and_response_models(client):
    spec = client.get("/openapi.json").json()
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == ROUTES
    for path, method in ((p, m) for m, p in ROUTES):
        operation = spec["paths"][path][method]
        if path == "/v1/auth/logout":  # no body either way: 204 No Content
            assert "204" in operation["responses"] and "requestBody" not in operation
            assert "ErrorOut" in str(operation["responses"])
            continue
        ok = "201" if path.endswith(("interventions", "feedback")) else "200"
        assert "$ref" in str(operation["responses"][ok]["content"]["application/json"]["schema"])
        if method == "post" and path != "/v1/admin/reload":
            assert "requestBody" in operation
        if path != "/health":
            assert "ErrorOut" in str(operation["responses"])


def test_access_log_paths_lose_their_student_ids():
    assert redact_path("/v1/students/S000123/feedback?x=1") == (
        "/v1/students/{student_id}/feedback?x=1"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/students/STU-A1", "1.1", 200),
        None,
    )
    assert RedactStudentPaths().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /v1/students/{student_id} HTTP/1.1" 200'


def test_add_user_from_cli_creates_a_user_who_can_log_in(settings):
    from serving.app import add_user_from_cli

    row = add_user_from_cli(settings, "newteacher", "a good password", "teacher", "SCH-A", ["C9"])
    assert (row.role, row.school_id, row.class_ids) == ("teacher", "SCH-A", ("C9",))
    with TestClient(create_app(settings)) as test_client:
        response = test_client.post(
            "/v1/auth/token", data={"username": "newteacher", "password": "a good password"}
        )
    assert response.status_code == 200
