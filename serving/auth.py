"""Passwords, access tokens, and who may see which student.

- Passwords are hashed with argon2id (`argon2-cffi`, its RFC 9106 defaults).
- The OAuth2 password flow hands out a JWT (HS256) carrying `sub` (the user id), `role`,
  `ver` (the user's token version) and `exp`; the API looks the user up again on each
  request, so deactivating someone, or raising their token version (logout, password or
  role change), ends their tokens at once.
- `HashGate` bounds the password hashes under way at once (argon2 takes ~0.1 s of CPU
  and 64 MiB each): a login that could not get a slot soon is turned away with
  `LoginBusy` (503 with Retry-After) instead of queueing without end.
- `Viewer` is the logged-in person and their scope. Scope rules:
  county_admin sees every school; school_admin their school; teacher only their own
  classes in their school; researcher no individual student at all, aggregates only.

Errors are domain exceptions with a stable `code` and a message a teacher understands;
`serving/api/errors.py` turns them into JSON. No message names a student.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from serving.storage.tables import USER_ROLES

logger = logging.getLogger(__name__)

TOKEN_ALGORITHM = "HS256"
SECRET_KEY_FILE = "secret_key"
SECRET_KEY_MIN_LENGTH = 32

_hasher = PasswordHasher()


# -- domain errors ----------------------------------------------------------------------


class AuthError(Exception):
    """Base of the authentication and authorisation errors."""

    code = "auth_error"
    default_message = "You are not allowed to do this."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message


class InvalidCredentials(AuthError):
    """Unknown user, wrong password or deactivated account (never says which)."""

    code = "invalid_credentials"
    default_message = "The username or password is wrong."


class InvalidToken(AuthError):
    """A token that is expired, tampered with, or not ours."""

    code = "invalid_token"
    default_message = "Your session has ended. Please log in again."


class Forbidden(AuthError):
    """The viewer's role may not do this at all."""

    code = "forbidden"
    default_message = "Your role does not allow this."


class NotYourStudent(Forbidden):
    """The student is outside the viewer's school or classes."""

    code = "not_your_student"
    default_message = "This student is not in your school or classes."


class TooManyAttempts(Exception):
    """Too many failed logins for one username from one address, or from one address."""

    code = "too_many_attempts"

    def __init__(self, retry_after_s: int, field: str | None = "username") -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        self.field = field
        self.message = (
            f"Too many failed logins. Please wait {self.retry_after_s} seconds and try again."
        )
        super().__init__(self.message)


class LoginBusy(Exception):
    """More logins at once than the password hashing can serve soon: try again shortly."""

    code = "login_busy"

    def __init__(self, retry_after_s: int = 1) -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        self.message = (
            "Too many people are logging in right now. "
            f"Please try again in {self.retry_after_s} second(s)."
        )
        super().__init__(self.message)


# -- passwords --------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted; two calls give different strings)."""
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    """Whether `password` matches `password_hash`; False for a malformed hash too."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with weaker parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# -- the viewer and the scope rules -----------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """The person behind a request and what they may see."""

    user_id: int
    username: str
    role: str
    school_id: str | None = None
    class_ids: frozenset[str] = field(default_factory=frozenset)
    staff_role: str | None = None
    token_version: int = 0

    def __post_init__(self) -> None:
        if self.role not in USER_ROLES:
            raise ValueError(f"role must be one of {', '.join(USER_ROLES)}")
        if not isinstance(self.class_ids, frozenset):
            object.__setattr__(self, "class_ids", frozenset(self.class_ids))

    def can_see(self, school_id: str, class_id: str | None) -> bool:
        """Whether this viewer may see the record of a student in `school_id`/`class_id`."""
        if self.role == "county_admin":
            return True
        if self.role == "school_admin":
            return self.school_id is not None and school_id == self.school_id
        if self.role == "teacher":
            return (
                self.school_id is not None
                and school_id == self.school_id
                and class_id is not None
                and class_id in self.class_ids
            )
        return False  # researcher: no individual student records

    def can_read_aggregates(self, school_id: str | None = None) -> bool:
        """Whether this viewer may read counts and rates (of one school, or the county)."""
        if self.role in ("county_admin", "researcher"):
            return True
        return school_id is not None and school_id == self.school_id

    def check_can_see(self, school_id: str, class_id: str | None) -> None:
        """Raise `NotYourStudent` (or `Forbidden` for a researcher) unless `can_see`."""
        if self.can_see(school_id, class_id):
            return
        if self.role == "researcher":
            raise Forbidden("Researchers see aggregates only, not individual students.")
        raise NotYourStudent()

    def require_role(self, *roles: str) -> None:
        """Raise `Forbidden` unless this viewer has one of `roles`."""
        if self.role not in roles:
            raise Forbidden()


def visible_classes(viewer: Viewer, school_id: str, class_ids: Iterable[str]) -> list[str]:
    """The classes of `school_id` among `class_ids` that `viewer` may see, in order."""
    return [c for c in class_ids if viewer.can_see(school_id, c)]


# -- tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    """What a valid access token says."""

    user_id: int
    role: str
    expires_at: dt.datetime
    version: int


def create_access_token(
    user: Viewer, secret: str, minutes: int, *, now: dt.datetime | None = None
) -> str:
    """A signed token for `user`, valid for `minutes` from `now` (default: the clock)."""
    issued = now or dt.datetime.now(dt.UTC)
    payload = {
        "sub": str(user.user_id),
        "role": user.role,
        "ver": user.token_version,
        "iat": issued,
        "exp": issued + dt.timedelta(minutes=minutes),
    }
    return jwt.encode(payload, secret, algorithm=TOKEN_ALGORITHM)


def decode_access_token(token: str, secret: str) -> TokenClaims:
    """The claims of a valid token; `InvalidToken` if expired, tampered with or malformed."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            options={"require": ["exp", "sub", "role", "ver"]},
        )
        user_id = int(payload["sub"])
        role = str(payload["role"])
        version = payload["ver"]
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken() from error
    except (jwt.InvalidTokenError, ValueError, TypeError) as error:
        raise InvalidToken() from error
    if role not in USER_ROLES or not isinstance(version, int) or isinstance(version, bool):
        raise InvalidToken()
    return TokenClaims(
        user_id=user_id,
        role=role,
        expires_at=dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC),
        version=version,
    )


# -- bounding the password hashes -------------------------------------------------------

T = TypeVar("T")


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class HashGate:
    """At most `slots` password hashes at once; a login that would wait too long is refused.

    A login is admitted (`admit`) before it touches a hash: while the logins already
    admitted would keep the slots busy for more than `max_wait_s` (judged from how long
    recent hashes took), or while its address already has `per_address` logins admitted,
    it is refused with `LoginBusy` at once, costing nothing. An admitted login then hashes
    (`run`) on the gate's own `slots` threads, so a flood of logins can neither pile up
    argon2's 64 MiB per hash nor take the threads and database connections that other
    requests need; nothing holds a database connection while it hashes.
    """

    def __init__(
        self, slots: int | None = None, max_wait_s: float = 0.5, per_address: int | None = None
    ) -> None:
        self.slots = slots or cpu_count()
        self.max_wait_s = max_wait_s
        self.per_address = per_address or max(1, self.slots)
        self.hash_s = 0.1  # a running estimate of one hash's time under the current load
        self._admitted = 0
        self._by_address: dict[str, int] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="password-hash")

    def capacity(self) -> int:
        """How many logins may be admitted at once: the running slots, and as many waiting
        as the slots would serve within `max_wait_s`."""
        return self.slots * (1 + max(0, math.floor(self.max_wait_s / self.hash_s)))

    @contextmanager
    def admit(self, address: str) -> Iterator[None]:
        """Hold one admission for the block; `LoginBusy` when the gate is full."""
        with self._lock:
            busy = self._admitted >= self.capacity()
            if busy or self._by_address.get(address, 0) >= self.per_address:
                raise LoginBusy(math.ceil(self._admitted * self.hash_s / self.slots) or 1)
            self._admitted += 1
            self._by_address[address] = self._by_address.get(address, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1
                left = self._by_address[address] - 1
                if left:
                    self._by_address[address] = left
                else:
                    del self._by_address[address]

    def _timed(self, function: Callable[..., T], *args: object) -> T:
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.hash_s = max(0.005, 0.8 * self.hash_s + 0.2 * elapsed)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on one of the gate's threads (the event loop keeps running)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, function, *args)

    def run_sync(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on one of the gate's threads, from a thread that may block."""
        return self._executor.submit(self._timed, function, *args).result()

    def close(self) -> None:
        """Stop the gate's threads (after the hashes under way)."""
        self._executor.shutdown(wait=True)


# -- the signing key --------------------------------------------------------------------


def secret_key(settings_home: Path, configured: str | None) -> str:
    """The key that signs tokens: `configured` if set, else one kept in `settings_home`.

    The first call without a configured key writes a random key to
    `settings_home/secret_key` with mode 0600; later calls (and restarts) read it back,
    so tokens survive a restart. A key file readable by others is tightened to 0600.
    """
    if configured:
        if len(configured) < SECRET_KEY_MIN_LENGTH:
            raise ValueError(f"secret_key must be at least {SECRET_KEY_MIN_LENGTH} characters")
        return configured
    path = Path(settings_home) / SECRET_KEY_FILE
    if path.exists():
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file, then link it into place: a process starting at the same
    # moment either wins the link or reads the winner's complete key.
    temp = path.with_name(f".{SECRET_KEY_FILE}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read_key(path)
    finally:
        temp.unlink(missing_ok=True)
    logger.info("generated a new token signing key in %s", path.parent)
    return _read_key(path)


def _read_key(path: Path) -> str:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        path.chmod(0o600)
        logger.warning("tightened permissions of the token signing key to 0600")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < SECRET_KEY_MIN_LENGTH:
        raise ValueError(f"the key in {path} is shorter than {SECRET_KEY_MIN_LENGTH} characters")
    return key
