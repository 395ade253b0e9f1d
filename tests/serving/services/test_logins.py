"""The login limit's counters in the database, and the gate that bounds password hashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select

from serving.auth import HashGate, InvalidCredentials, LoginBusy, TooManyAttempts
from serving.services import logins, users
from serving.storage.tables import LoginAttempt
from tests.serving.conftest import BACKENDS

NOW = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
PASSWORD = "long enough"


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    """The counters' SQL differs by dialect: run on SQLite and PostgreSQL."""
    return str(request.param)


def test_concurrent_attempts_each_get_their_own_count(db_sessions) -> None:
    # The old limiter checked, then counted: concurrent guesses all saw "fewer than 5".
    counts: list[int] = []
    start = threading.Barrier(20)

    def attempt() -> None:
        start.wait()
        with db_sessions.begin() as session:
            counts.append(logins.count_attempt(session, "k", 60, NOW)[0])

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == list(range(1, 21))


def test_a_counter_starts_again_after_its_window_and_can_be_given_back(db_sessions) -> None:
    later = NOW + dt.timedelta(seconds=30)
    with db_sessions.begin() as session:
        assert logins.count_attempt(session, "k", 60, NOW) == (1, NOW)
        assert logins.count_attempt(session, "k", 60, later) == (2, NOW)
        logins.give_back(session, "k")
        assert logins.count_attempt(session, "k", 60, later) == (2, NOW)
        after = NOW + dt.timedelta(seconds=60)
        assert logins.count_attempt(session, "k", 60, after) == (1, after)
        logins.count_attempt(session, "old", 60, NOW)
        assert logins.sweep(session, after) == 1
        logins.forget(session, "k")
        assert session.scalars(select(LoginAttempt.key)).all() == []


def test_keys_store_neither_username_nor_address() -> None:
    guard = logins.LoginGuard()
    user, address = guard.scopes("Li.Teacher", "10.1.2.3")
    assert user.key == guard.scopes("li.teacher", "10.1.2.3")[0].key  # case-insensitive
    assert len(user.key) == len(address.key) == 64
    assert "teacher" not in user.key and "10.1" not in address.key
    assert (user.field, address.field) == ("username", None)


def test_two_guards_on_one_database_share_the_counts(db_sessions) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
    limits = logins.LoginLimits(user_failures=3)
    one, two = logins.LoginGuard(limits), logins.LoginGuard(limits)

    async def attempt(guard: logins.LoginGuard, password: str):
        return await guard.login(db_sessions, "li.teacher", password, "10.0.0.1")

    for guard in (one, two, one):
        with pytest.raises(InvalidCredentials):
            asyncio.run(attempt(guard, "wrong password"))
    with pytest.raises(TooManyAttempts) as caught:
        asyncio.run(attempt(two, PASSWORD))
    assert caught.value.field == "username" and 1 <= caught.value.retry_after_s <= 60
    other = asyncio.run(two.login(db_sessions, "li.teacher", PASSWORD, "10.0.0.2"))
    assert other.username == "li.teacher"


def test_a_good_login_clears_its_user_counter_and_gives_back_the_address_attempt(
    db_sessions,
) -> None:
    with db_sessions.begin() as session:
        users.add_user(session, "li.teacher", PASSWORD, "teacher", "A", ["A-1"])
    guard = logins.LoginGuard(logins.LoginLimits(user_failures=2, address_failures=2))
    for _ in range(5):  # five teachers of one school behind one address, all fine
        asyncio.run(guard.login(db_sessions, "li.teacher", PASSWORD, "10.0.0.1"))
    with pytest.raises(InvalidCredentials):
        asyncio.run(guard.login(db_sessions, "li.teacher", "wrong password", "10.0.0.1"))
    asyncio.run(guard.login(db_sessions, "li.teacher", PASSWORD, "10.0.0.1"))
    with db_sessions() as session:
        assert session.scalars(select(LoginAttempt.attempts)).all() == [1]  # the address's


def test_the_gate_refuses_beyond_its_capacity_and_beyond_an_addresses_share() -> None:
    gate = HashGate(slots=2, max_wait_s=0.2, per_address=2)
    gate.hash_s = 0.1
    assert gate.capacity() == 2 * (1 + 2)
    with gate.admit("a"), gate.admit("a"):
        with pytest.raises(LoginBusy), gate.admit("a"):
            pass
        with gate.admit("b"), gate.admit("b"), gate.admit("c"), gate.admit("c"):
            with pytest.raises(LoginBusy) as caught, gate.admit("d"):
                pass
            assert caught.value.retry_after_s >= 1
    with gate.admit("a"):  # everything was given back
        pass
    gate.close()


def test_the_gate_runs_at_most_its_slots_at_once_and_learns_the_hash_time() -> None:
    gate = HashGate(slots=2)
    gate.hash_s = 1.0
    running, most = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def many() -> None:
        await asyncio.gather(*(gate.run(work) for _ in range(8)))

    asyncio.run(many())
    gate.run_sync(work)
    gate.close()
    assert most == 2
    assert 0.04 < gate.hash_s < 0.5  # from 1.0 towards the 0.05 s each call took
