"""Logging in under attack: the limit counted in the database, the hash off the connection.

`LoginGuard.login` is the one way the service checks a password (the API's
`POST /v1/auth/token` and the login page both call it):

1. **Admit first.** The app's `HashGate` admits a login only while the hashes already
   admitted would be done within `login_queue_s`, and only a few per address at once;
   any other is refused at once with `LoginBusy` (503 with Retry-After), costing no
   database work and no hash, and never queued until a connection pool times out. A
   flood from one address cannot take the slots from everyone else.
2. **Count, atomically.** An admitted attempt adds one to two counters in one statement
   each (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, on SQLite and PostgreSQL
   alike) before any password is checked: one per (username, address), at most
   `user_failures` in `user_window_s`, and one per address across usernames, at most
   `address_failures` in `address_window_s` (password spraying). An attempt that brings
   either over its limit is refused (`TooManyAttempts`, 429) without hashing, so
   concurrent guesses get `user_failures` real tries, not one per request that happened
   to check before the others had failed. The counters live in the `login_attempts`
   table, so a restart or a second worker keeps them; a process also remembers the keys
   it saw locked and refuses those without asking the database until the lock ends.
3. **No connection while hashing.** The user's hash is read in the counting
   transaction, which ends before the password is hashed on one of the gate's threads
   (at most one hash per CPU at once).
4. A good password clears its (username, address) counter and gives back its address
   attempt (a school behind one address is not locked out by its own teachers' logins);
   a wrong one stays counted.

Counters are kept under a SHA-256 of their scope: no username (people type passwords
into that field) and no address is stored in the clear. Windows are fixed (a counter
restarts `window_s` after its first attempt).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from serving.auth import (
    HashGate,
    InvalidCredentials,
    TooManyAttempts,
    Viewer,
    hash_password,
    password_needs_rehash,
    verify_password,
)
from serving.services.users import LoginRecord, dummy_hash, find_login, store_rehash
from serving.settings import ServingSettings
from serving.storage.tables import LoginAttempt, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")
SWEEP_EVERY = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class LoginLimits:
    """How many login attempts may fail, per (username, address) and per address."""

    user_failures: int = 5
    user_window_s: int = 60
    address_failures: int = 30
    address_window_s: int = 900


@dataclass(frozen=True)
class Scope:
    """One counter: its key, its limit and window, and the field a refusal names."""

    key: str
    limit: int
    window_s: int
    field: str | None


def scope_key(kind: str, *parts: str) -> str:
    """The stored key of a counter: a SHA-256 of its kind and parts."""
    return hashlib.sha256("\x1f".join((kind, *parts)).encode("utf-8", "replace")).hexdigest()


def count_attempt(
    session: Session, key: str, window_s: int, now: dt.datetime
) -> tuple[int, dt.datetime]:
    """Add one attempt to `key`'s counter in one statement; its count and window start.

    A counter whose window began `window_s` or more before `now` starts again at 1.
    Concurrent callers each see a different count (the row is locked by the upsert).
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    proposed = insert(LoginAttempt).values(key=key, window_start=now, attempts=1)
    expired = LoginAttempt.window_start <= now - dt.timedelta(seconds=window_s)
    statement = proposed.on_conflict_do_update(
        index_elements=[LoginAttempt.key],
        set_={
            "attempts": case((expired, 1), else_=LoginAttempt.attempts + 1),
            "window_start": case(
                (expired, proposed.excluded.window_start), else_=LoginAttempt.window_start
            ),
        },
    ).returning(LoginAttempt.attempts, LoginAttempt.window_start)
    row = session.execute(statement).one()
    return int(row.attempts), row.window_start


def give_back(session: Session, key: str) -> None:
    """Take one attempt off `key`'s counter (an attempt that turned out not to count)."""
    session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.key == key, LoginAttempt.attempts > 0)
        .values(attempts=LoginAttempt.attempts - 1)
    )


def forget(session: Session, key: str) -> None:
    """Remove `key`'s counter (after a good password)."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.key == key))


def sweep(session: Session, before: dt.datetime) -> int:
    """Delete counters whose window began before `before`; how many went."""
    result = session.execute(delete(LoginAttempt).where(LoginAttempt.window_start < before))
    return int(getattr(result, "rowcount", 0) or 0)


class LoginGuard:
    """Checks passwords for the service: counted, off the connection, bounded (see module)."""

    def __init__(self, limits: LoginLimits | None = None, gate: HashGate | None = None) -> None:
        self.limits = limits or LoginLimits()
        self.gate = gate or HashGate()
        self._locked: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()
        self._sqlite_writer = threading.Lock()
        self._next_sweep = dt.datetime.min.replace(tzinfo=dt.UTC)

    def scopes(self, username: str, address: str) -> tuple[Scope, Scope]:
        """The (username, address) counter and the address counter of an attempt."""
        limits = self.limits
        return (
            Scope(
                scope_key("user", username.lower(), address),
                limits.user_failures,
                limits.user_window_s,
                "username",
            ),
            Scope(
                scope_key("address", address),
                limits.address_failures,
                limits.address_window_s,
                None,
            ),
        )

    async def login(
        self, sessions: sessionmaker[Session], username: str, password: str, address: str
    ) -> Viewer:
        """The viewer for a good username and password from `address`.

        Raises `TooManyAttempts` (over a limit), `LoginBusy` (no hash slot soon) or
        `InvalidCredentials` (unknown user, wrong password, deactivated account; all
        alike and about as slow).
        """
        scopes = self.scopes(username, address)
        self._refuse_if_locked(scopes, utcnow())
        with self.gate.admit(address):
            found = await _in_thread(self._count_and_find, sessions, scopes, username)
            stored = found.password_hash if found is not None else dummy_hash()
            good = await self.gate.run(verify_password, password, stored)
        if not good or found is None or found.viewer is None:
            raise InvalidCredentials()
        await _in_thread(self._succeeded, sessions, scopes, found, password)
        return found.viewer

    def _refuse_if_locked(self, scopes: tuple[Scope, ...], now: dt.datetime) -> None:
        with self._lock:
            for scope in scopes:
                until = self._locked.get(scope.key)
                if until is None:
                    continue
                if until > now:
                    raise TooManyAttempts(_seconds(until - now), scope.field)
                del self._locked[scope.key]

    def _count_and_find(
        self, sessions: sessionmaker[Session], scopes: tuple[Scope, ...], username: str
    ) -> LoginRecord | None:
        """Count the attempt against every scope and read the user, in one short
        transaction; `TooManyAttempts` if any scope is over its limit."""
        refusal: TooManyAttempts | None = None
        with self._writing(sessions), sessions.begin() as session:
            now = utcnow()
            for scope in scopes:
                attempts, window_start = count_attempt(session, scope.key, scope.window_s, now)
                if attempts > scope.limit:
                    until = window_start + dt.timedelta(seconds=scope.window_s)
                    with self._lock:
                        self._locked[scope.key] = until
                        if len(self._locked) > 10_000:  # keep memory bounded
                            self._locked = {k: v for k, v in self._locked.items() if v > now}
                    refusal = refusal or TooManyAttempts(_seconds(until - now), scope.field)
            if refusal is not None:
                logger.info("login refused: over the %s limit", refusal.field or "address")
                raise refusal
            found = find_login(session, username)
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_EVERY
                longest = max(s.window_s for s in scopes)
                sweep(session, now - dt.timedelta(seconds=longest))
        return found

    def _writing(self, sessions: sessionmaker[Session]) -> AbstractContextManager[object]:
        """On SQLite, one login transaction of this process at a time: SQLite has one
        writer anyway, and writers that find it taken back off for up to 100 ms each, so
        a flood's hundred concurrent counts took seconds instead of milliseconds."""
        bind = sessions.kw.get("bind")
        if bind is not None and bind.dialect.name == "sqlite":
            return self._sqlite_writer
        return nullcontext()

    def _succeeded(
        self,
        sessions: sessionmaker[Session],
        scopes: tuple[Scope, Scope],
        found: LoginRecord,
        password: str,
    ) -> None:
        new_hash = None
        if password_needs_rehash(found.password_hash):
            new_hash = self.gate.run_sync(hash_password, password)
        with self._writing(sessions), sessions.begin() as session:
            user_scope, address_scope = scopes
            forget(session, user_scope.key)
            give_back(session, address_scope.key)
            if new_hash is not None:
                store_rehash(session, found.user_id, found.password_hash, new_hash)


def _seconds(delta: dt.timedelta) -> int:
    return max(1, int(delta.total_seconds() + 0.999))


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(function, *args)


def guard_from_settings(serving: ServingSettings) -> LoginGuard:
    """The login guard that `serving`'s login settings describe."""
    limits = LoginLimits(
        user_failures=serving.login_max_failures,
        user_window_s=serving.login_window_s,
        address_failures=serving.login_address_max_failures,
        address_window_s=serving.login_address_window_s,
    )
    return LoginGuard(limits, HashGate(serving.login_hash_slots, serving.login_queue_s))
