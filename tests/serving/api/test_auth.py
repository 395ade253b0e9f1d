"""Logging in over HTTP: good and bad passwords, expired and tampered tokens, the limit."""

from __future__ import annotations

import datetime as dt

import jwt

from tests.serving.api.conftest import PASSWORD, SECRET, bearer


def login(client, username: str, password: str = PASSWORD):
    return client.post("/v1/auth/token", data={"username": username, "password": password})


def test_login_returns_a_bearer_token_that_opens_the_api(client):
    response = login(client, "Admin_A")  # usernames are case-insensitive
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["role"] == "school_admin"
    assert body["expires_in"] == 480 * 60
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["role"] == "school_admin"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/v1/students/STU-A1", headers=headers).status_code == 200


def test_wrong_password_and_unknown_user_fail_the_same_way(client):
    wrong = login(client, "admin_a", "not the password")
    unknown = login(client, "nobody_here", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_credentials"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_missing_form_fields_are_named(client):
    response = client.post("/v1/auth/token", data={"username": "admin_a"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["field"] == "password"


def test_no_token_expired_token_and_tampered_token_answer_401_json(client, viewers):
    url = "/v1/students/STU-A1"
    missing = client.get(url)
    expired = client.get(
        url,
        headers=bearer(
            viewers["county"], minutes=5, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        ),
    )
    token = bearer(viewers["teacher_a1"])["Authorization"].removeprefix("Bearer ")
    header, payload, signature = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        b'{"sub":"'
        + str(viewers["county"].user_id).encode()
        + b'","role":"county_admin","exp":9999999999}'
    ).decode()
    tampered = client.get(
        url, headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"}
    )
    other_key = jwt.encode(
        {"sub": str(viewers["county"].user_id), "role": "county_admin", "exp": 9999999999},
        "another-secret-key-that-is-long-enough-0000",
        algorithm="HS256",
    )
    foreign = client.get(url, headers={"Authorization": f"Bearer {other_key}"})
    garbage = client.get(url, headers={"Authorization": "Bearer not-a-token"})
    for response in (missing, expired, tampered, foreign, garbage):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        assert set(response.json()) >= {"error", "message", "field"}


def test_deactivated_user_is_refused_with_a_valid_token(client, viewers):
    from serving.services.users import deactivate

    with client.app.state.sessions.begin() as session:
        deactivate(session, "admin_a")
    response = client.get("/v1/students/STU-A1", headers=bearer(viewers["admin_a"]))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_credentials"
    assert login(client, "admin_a").status_code == 401


def test_five_failures_a_minute_lock_out_that_username_from_that_address(client):
    for _ in range(5):
        assert login(client, "teacher_a1", "wrong password!").status_code == 401
    locked = login(client, "teacher_a1")  # even the right password, for now
    assert locked.status_code == 429
    assert locked.json()["error"] == "too_many_attempts"
    assert 1 <= int(locked.headers["Retry-After"]) <= 61
    assert login(client, "admin_a").status_code == 200  # other usernames are unaffected


def test_the_limiter_forgets_failures_after_the_window():
    from serving.api.deps import LoginLimiter
    from serving.api.errors import TooManyAttempts

    limiter = LoginLimiter(max_failures=2, window_s=60)
    limiter.failed("u", "1.2.3.4", now=0)
    limiter.failed("u", "1.2.3.4", now=10)
    try:
        limiter.check("u", "1.2.3.4", now=30)
    except TooManyAttempts as exc:
        assert exc.retry_after_s == 31
    else:
        raise AssertionError("expected a lock-out")
    limiter.check("u", "1.2.3.4", now=61)  # the first failure has aged out
    limiter.check("u", "5.6.7.8", now=30)  # another address
