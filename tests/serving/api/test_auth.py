"""Logging in over HTTP: good and bad passwords, expired and tampered tokens, the limit,
a login flood against a real server, and tokens that end (logout, password change)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt

import jwt
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.services import users
from serving.settings import Settings
from tests.serving.api.conftest import PASSWORD, SECRET, bearer
from tests.serving.live import client_from, flood, live_server, timed_post


def login(client, username: str, password: str = PASSWORD, headers=None):
    data = {"username": username, "password": password}
    return client.post("/v1/auth/token", data=data, headers=headers)


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


def with_serving(settings: Settings, **changes: object) -> Settings:
    """`settings` with some `serving` values changed."""
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=changes)})


# -- the login flood (issue 21, item 3) ---------------------------------------------------

TOKEN_URL = "/v1/auth/token"
# bench/load.py measures the legitimate login against 1 s on a quiet machine. Here the
# suite may share two cores with other jobs (a hundred requests that only fail form
# validation took 3 s there at a load of 12), so the bound only separates "answered"
# from the old behaviour (76 s, and 500s from the connection pool's 30 s timeout).
LEGIT_BOUND_S = 10.0


def bogus(n: int, username: str | None = None) -> list[dict[str, str]]:
    return [
        {"username": username or f"ghost{i}", "password": f"guess number {i}"} for i in range(n)
    ]


async def flood_and_log_in(base: str, forms, flood_addresses, legit_address="127.0.0.2"):
    """Post `forms` at once from `flood_addresses`; 0.1 s in, log in as admin_a from
    `legit_address`. The flood's answers and the legitimate one."""
    clients = [client_from(base, a) for a in flood_addresses]
    legit_client = client_from(base, legit_address)
    try:

        async def legit():
            await asyncio.sleep(0.1)
            good = {"username": "admin_a", "password": PASSWORD}
            return await timed_post(legit_client, TOKEN_URL, good)

        answers, answer = await asyncio.gather(flood(clients, TOKEN_URL, forms), legit())
    finally:
        for client in [*clients, legit_client]:
            await client.aclose()
    return answers, answer


def test_a_login_flood_gets_no_500_and_a_real_user_still_logs_in_quickly(settings):
    # Before: 100 concurrent unknown usernames held a database connection each while
    # argon2 hashed; the pool (15) ran dry, 56 of them answered 500 and a real login
    # waited 76 s.
    with live_server(settings) as base:
        answers, legit = asyncio.run(flood_and_log_in(base, bogus(100), ["127.0.0.3"]))
    statuses = collections.Counter(a.status for a in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses[401] <= 30  # at most the address limit's tries hashed
    assert statuses[503] > 0  # one address may hold only its share of the hash slots
    assert all(a.retry_after for a in answers if a.status in (429, 503))
    assert legit.status == 200, legit.body
    assert legit.seconds < LEGIT_BOUND_S


def test_a_flood_from_many_addresses_is_turned_away_with_503_never_500(settings):
    addresses = [f"127.0.1.{k}" for k in range(2, 22)]
    with live_server(settings) as base:
        answers, legit = asyncio.run(flood_and_log_in(base, bogus(100), addresses))
        # Once the flood is over, the legitimate user gets in at once.
        after = asyncio.run(flood_and_log_in(base, [], addresses))[1]
    statuses = collections.Counter(a.status for a in answers)
    assert set(statuses) <= {401, 503}, statuses
    assert statuses[503] > 0  # more than the hash slots can serve within the wait
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in answers if a.status == 503)
    assert legit.status in (200, 503) and legit.seconds < LEGIT_BOUND_S
    assert after.status == 200


# -- the limit counted atomically, per address, in the database (item 4) ------------------


def test_a_hundred_concurrent_guesses_for_one_user_get_five_real_tries(settings):
    # Before: the limit was checked before the failure was counted: 44 real tries.
    # Eight slots per address here, so that many guesses are counted at the same moment.
    roomy = with_serving(settings, login_hash_slots=8, login_queue_s=30)
    with live_server(roomy) as base:

        async def guess():
            async with client_from(base, "127.0.0.4") as client:
                answers = await flood([client], TOKEN_URL, bogus(100, "teacher_a1"))
                good = {"username": "teacher_a1", "password": PASSWORD}
                return answers, await timed_post(client, TOKEN_URL, good)

        answers, right = asyncio.run(guess())
    statuses = collections.Counter(a.status for a in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert 1 <= statuses[401] <= 5  # wrong passwords actually checked
    assert right.status == 429  # locked out, even with the right password


def test_spraying_one_password_over_many_users_is_limited_per_address(settings):
    # Before: the limit was per (username, address): every new username was a fresh try.
    with TestClient(create_app(with_serving(settings, login_address_max_failures=6))) as client:
        answers = [login(client, f"user{i}", "Spring2026!") for i in range(8)]
        assert [a.status_code for a in answers] == [401] * 6 + [429] * 2
        assert answers[-1].json()["error"] == "too_many_attempts"
        assert answers[-1].json()["field"] is None
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 900
        assert login(client, "admin_a").status_code == 429  # the address is locked


def test_the_counts_survive_a_restart_and_are_shared_by_a_second_worker(settings):
    # Before: the counts lived in one process's memory.
    first, second = create_app(settings), create_app(settings)
    with TestClient(first) as one, TestClient(second) as two:
        for client in (one, two, one, two, one):
            assert login(client, "teacher_a1", "wrong password!").status_code == 401
        assert login(two, "teacher_a1").status_code == 429  # 5 failures over two workers
    with TestClient(create_app(settings)) as restarted:
        assert login(restarted, "teacher_a1").status_code == 429


def test_a_forwarded_address_counts_only_when_the_proxy_is_trusted(settings):
    spoofed = [{"X-Forwarded-For": f"10.0.0.{i}"} for i in range(6)]
    limited = with_serving(settings, login_max_failures=5)
    with TestClient(create_app(limited)) as client:
        for headers in spoofed[:5]:
            assert login(client, "teacher_a1", "wrong!!!", headers).status_code == 401
        assert login(client, "teacher_a1", PASSWORD, spoofed[5]).status_code == 429
    trusted = with_serving(settings, trust_proxy_headers=True)
    with TestClient(create_app(trusted)) as client:
        assert (
            login(client, "admin_b", "wrong!!!", {"X-Forwarded-For": "10.0.0.1"}).status_code == 401
        )
        other = {"X-Forwarded-For": "1.2.3.4, 10.0.0.9"}  # the proxy's own entry is last
        assert login(client, "teacher_a1", PASSWORD, other).status_code == 200


# -- tokens that end (item 7) -------------------------------------------------------------


def test_a_token_ends_when_the_password_changes(client):
    token = login(client, "admin_a").json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/students/STU-A1", headers=headers).status_code == 200
    with client.app.state.sessions.begin() as session:
        users.set_password(session, "admin_a", "a brand new password")
    ended = client.get("/v1/students/STU-A1", headers=headers)
    assert ended.status_code == 401 and ended.json()["error"] == "invalid_token"
    assert login(client, "admin_a", "a brand new password").status_code == 200


def test_logout_ends_every_token_of_the_user(client):
    tokens = [login(client, "county").json()["access_token"] for _ in range(2)]
    first, second = ({"Authorization": f"Bearer {t}"} for t in tokens)
    assert client.post("/v1/auth/logout", headers=first).status_code == 204
    for headers in (first, second):
        ended = client.get("/v1/students/STU-A1", headers=headers)
        assert ended.status_code == 401 and ended.json()["error"] == "invalid_token"
    again = {"Authorization": f"Bearer {login(client, 'county').json()['access_token']}"}
    assert client.get("/v1/students/STU-A1", headers=again).status_code == 200


def test_a_role_change_or_deactivation_ends_the_tokens(client, viewers):
    teacher = bearer(viewers["teacher_a1"])
    with client.app.state.sessions.begin() as session:
        users.set_role(session, "teacher_a1", "school_admin", school_id="SCH-A")
    assert client.get("/v1/students/STU-A1", headers=teacher).status_code == 401
    token = {"Authorization": f"Bearer {login(client, 'teacher_a1').json()['access_token']}"}
    assert client.get("/v1/students/STU-A2", headers=token).status_code == 200  # now all of A
    with client.app.state.sessions.begin() as session:
        users.deactivate(session, "teacher_a1")
    assert client.get("/v1/students/STU-A2", headers=token).status_code == 401
    assert login(client, "teacher_a1").status_code == 401


def test_a_token_without_a_version_is_refused(client, viewers):
    old_style = jwt.encode(
        {"sub": str(viewers["county"].user_id), "role": "county_admin", "exp": 9999999999},
        SECRET,
        algorithm="HS256",
    )
    response = client.get("/v1/students/STU-A1", headers={"Authorization": f"Bearer {old_style}"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
