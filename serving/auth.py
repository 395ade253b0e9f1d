"""Passwords, access tokens, and who may see which student.

- Passwords are hashed with argon2id (`argon2-cffi`, its RFC 9106 defaults).
- The OAuth2 password flow hands out a JWT (HS256) carrying `sub` (the user id), `role`
  and `exp`; the API looks the user up again on each request, so deactivating someone
  takes effect at once.
- `Viewer` is the logged-in person and their scope. Scope rules:
  county_admin sees every school; school_admin their school; teacher only their own
  classes in their school; researcher no individual student at all, aggregates only.

Errors are domain exceptions with a stable `code` and a message a teacher understands;
`serving/api/errors.py` turns them into JSON. No message names a student.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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


def create_access_token(
    user: Viewer, secret: str, minutes: int, *, now: dt.datetime | None = None
) -> str:
    """A signed token for `user`, valid for `minutes` from `now` (default: the clock)."""
    issued = now or dt.datetime.now(dt.UTC)
    payload = {
        "sub": str(user.user_id),
        "role": user.role,
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
            options={"require": ["exp", "sub", "role"]},
        )
        user_id = int(payload["sub"])
        role = str(payload["role"])
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken() from error
    except (jwt.InvalidTokenError, ValueError, TypeError) as error:
        raise InvalidToken() from error
    if role not in USER_ROLES:
        raise InvalidToken()
    return TokenClaims(
        user_id=user_id,
        role=role,
        expires_at=dt.datetime.fromtimestamp(int(payload["exp"]), dt.UTC),
    )


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
