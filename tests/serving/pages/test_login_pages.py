"""The login page under attack and page sessions that end (issue 21, items 3, 4 and 7)."""

from __future__ import annotations

import asyncio
import collections

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.pages.session import COOKIE_NAME
from serving.services import users
from serving.settings import Settings
from tests.serving.live import client_from, flood, live_server, timed_post
from tests.serving.pages.conftest import PASSWORD
from tests.serving.pages.test_pages import csrf_of, log_in

LEGIT_BOUND_S = 10.0  # see tests/serving/api/test_auth.py: the suite may share its cores


def with_serving(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"serving": settings.serving.model_copy(update=changes)})


def test_a_page_cookie_replayed_after_logout_is_no_session(client):
    # Before: logout only deleted the cookie in the browser; a copy kept working.
    log_in(client, "teacher_c1")
    kept = client.cookies.get(COOKIE_NAME)
    token = csrf_of(client.get("/").text)
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set(COOKIE_NAME, kept)
    replayed = client.get("/", follow_redirects=False)
    assert replayed.status_code == 303 and replayed.headers["location"] == "/login"
    client.cookies.clear()
    assert log_in(client, "teacher_c1").status_code == 303  # a new login works


def test_a_page_session_ends_when_the_password_changes(client):
    log_in(client, "teacher_c1")
    assert client.get("/", follow_redirects=False).status_code == 200
    with client.app.state.sessions.begin() as session:
        users.set_password(session, "teacher_c1", "a brand new password")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert log_in(client, "teacher_c1", "a brand new password").status_code == 303


def test_the_cookie_is_secure_behind_a_trusted_tls_proxy_only(settings):
    https = {"X-Forwarded-Proto": "https"}
    with TestClient(create_app(settings)) as plain:
        assert "secure" not in plain.get("/login", headers=https).headers["set-cookie"].lower()
    trusted = with_serving(settings, trust_proxy_headers=True)
    with TestClient(create_app(trusted)) as proxied:
        page = proxied.get("/login", headers=https)
        assert "; secure" in page.headers["set-cookie"].lower()
        # The test client talks plain http, so it would not send a Secure cookie back.
        cookie = f"{COOKIE_NAME}={page.cookies[COOKIE_NAME]}"
        login = proxied.post(
            "/login",
            data={"username": "teacher_c1", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            headers={**https, "Cookie": cookie},
            follow_redirects=False,
        )
        assert login.status_code == 303 and "; secure" in login.headers["set-cookie"].lower()
        assert "secure" not in proxied.get("/login").headers["set-cookie"].lower()  # plain http


def test_the_login_page_is_limited_per_address_too(settings):
    with TestClient(create_app(with_serving(settings, login_address_max_failures=3))) as client:
        for i in range(3):
            assert log_in(client, f"nobody{i}", "Spring2026!").status_code == 401
        locked = log_in(client, "teacher_c1")
        assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 900
        assert "登录失败次数过多" in locked.text


def test_a_flood_on_the_login_page_gets_no_500_and_a_real_user_gets_in(settings):
    with live_server(settings) as base:

        async def attack():
            async with client_from(base, "127.0.0.3") as attacker:
                page = await attacker.get("/login")
                token = csrf_of(page.text)
                forms = [
                    {"username": f"ghost{i}", "password": "guess it", "csrf_token": token}
                    for i in range(60)
                ]
                return await flood([attacker], "/login", forms)

        async def user():
            async with client_from(base, "127.0.0.2") as browser:
                token = csrf_of((await browser.get("/login")).text)
                await asyncio.sleep(0.1)
                form = {"username": "teacher_c1", "password": PASSWORD, "csrf_token": token}
                return await timed_post(browser, "/login", form)

        async def both():
            return await asyncio.gather(attack(), user())

        answers, legit = asyncio.run(both())
    statuses = collections.Counter(a.status for a in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert all(a.retry_after for a in answers if a.status in (429, 503))
    busy = next(a for a in answers if a.status == 503)
    assert "现在登录的人太多" in busy.body
    assert legit.status == 303 and legit.seconds < LEGIT_BOUND_S
