"""User accounts: create, log in, list, change password or role, deactivate, log out.

Plain functions taking a session (no HTTP); the caller commits. Usernames are
case-insensitive and stored in lower case. Role and scope must agree:

| role          | school   | classes   | staff_role (default first)                          |
|---------------|----------|-----------|-----------------------------------------------------|
| county_admin  | none     | none      | county                                              |
| school_admin  | required | none      | principal, homeroom_teacher, subject_teacher        |
| teacher       | required | 1 or more | homeroom_teacher, subject_teacher                   |
| researcher    | none     | none      | researcher                                          |

Every token and page session carries the user's `token_version`; `get_viewer` refuses
one whose version is not the user's current one. A password change, a role change,
deactivation and logout (`end_sessions`) raise the version, which ends every token and
session of that user at once.

Nothing here logs passwords or hashes; log lines name the user id and role only.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, Select, select, update
from sqlalchemy.orm import Session

from serving.auth import (
    InvalidCredentials,
    InvalidToken,
    Viewer,
    hash_password,
    password_needs_rehash,
    verify_password,
)
from serving.storage.tables import ID_LENGTH, USER_ROLES, User, UserClass

logger = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{3,64}")
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024  # argon2 takes anything, but a megabyte password is an attack

STAFF_ROLES_BY_ROLE: dict[str, tuple[str, ...]] = {
    "county_admin": ("county",),
    "school_admin": ("principal", "homeroom_teacher", "subject_teacher"),
    "teacher": ("homeroom_teacher", "subject_teacher"),
    "researcher": ("researcher",),
}


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both failures take as long."""
    return hash_password("not-a-password-anyone-has")


class InvalidUser(ValueError):
    """A user that cannot be created or changed as asked; `field` names the culprit."""

    code = "invalid_user"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UsernameTaken(InvalidUser):
    """The username already exists."""

    code = "username_taken"


class UserNotFound(LookupError):
    """No user with that username or id."""

    code = "user_not_found"


class UserRow(BaseModel):
    """A stored user, without the password hash."""

    model_config = ConfigDict(frozen=True)

    id: int
    username: str
    role: str
    staff_role: str | None
    school_id: str | None
    class_ids: tuple[str, ...]
    active: bool
    created_at: dt.datetime


def _row(user: User) -> UserRow:
    return UserRow(
        id=user.id,
        username=user.username,
        role=user.role,
        staff_role=user.staff_role,
        school_id=user.school_id,
        class_ids=tuple(sorted(c.class_id for c in user.classes)),
        active=user.active,
        created_at=user.created_at,
    )


def _viewer(user: User) -> Viewer:
    return Viewer(
        user_id=user.id,
        username=user.username,
        role=user.role,
        school_id=user.school_id,
        class_ids=frozenset(c.class_id for c in user.classes),
        staff_role=user.staff_role,
        token_version=user.token_version,
    )


def normalise_username(username: str) -> str:
    """The stored form of a username, or `InvalidUser` if it breaks the rules."""
    if not USERNAME_PATTERN.fullmatch(username or ""):
        raise InvalidUser(
            "A username has 3 to 64 characters: letters, digits, '_', '.' or '-'.",
            field="username",
        )
    return username.lower()


def check_password(password: str) -> None:
    """`InvalidUser` unless `password` is long enough (and not absurdly long)."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidUser(
            f"A password needs at least {PASSWORD_MIN_LENGTH} characters.", field="password"
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise InvalidUser(
            f"A password has at most {PASSWORD_MAX_LENGTH} characters.", field="password"
        )


def _check_scope(
    role: str, school_id: str | None, class_ids: tuple[str, ...], staff_role: str | None
) -> str:
    """Check that role, school, classes and staff role agree; return the staff role."""
    if role not in USER_ROLES:
        raise InvalidUser(f"The role must be one of {', '.join(USER_ROLES)}.", field="role")
    for value, name in [(school_id, "school_id"), *((c, "class_ids") for c in class_ids)]:
        if value is not None and not (0 < len(value) <= ID_LENGTH):
            raise InvalidUser(f"Each id has 1 to {ID_LENGTH} characters.", field=name)
    if role in ("teacher", "school_admin") and not school_id:
        raise InvalidUser(f"A {role} needs a school (school_id).", field="school_id")
    if role == "teacher" and not class_ids:
        raise InvalidUser("A teacher needs at least one class (class_ids).", field="class_ids")
    if role in ("county_admin", "researcher") and school_id:
        raise InvalidUser(f"A {role} sees the whole county and takes no school.", field="school_id")
    if role != "teacher" and class_ids:
        raise InvalidUser(
            f"Only teachers are given classes; a {role} takes none.", field="class_ids"
        )
    allowed = STAFF_ROLES_BY_ROLE[role]
    if staff_role is None:
        return allowed[0]
    if staff_role not in allowed:
        raise InvalidUser(f"A {role} can have staff role {', '.join(allowed)}.", field="staff_role")
    return staff_role


def _find(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.lower()))


def _get(session: Session, username: str) -> User:
    user = _find(session, username)
    if user is None:
        raise UserNotFound("There is no user with that username.")
    return user


def add_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Create an active user; `InvalidUser` with a clear message when something disagrees."""
    name = normalise_username(username)
    check_password(password)
    classes = tuple(dict.fromkeys(class_ids))
    staff = _check_scope(role, school_id, classes, staff_role)
    if _find(session, name) is not None:
        raise UsernameTaken("That username is taken.", field="username")
    user = User(
        username=name,
        password_hash=hash_password(password),
        role=role,
        staff_role=staff,
        school_id=school_id or None,
        active=True,
        classes=[UserClass(class_id=c) for c in classes],
    )
    session.add(user)
    session.flush()
    logger.info("added user %d (%s)", user.id, role)
    return _row(user)


def authenticate(session: Session, username: str, password: str) -> Viewer:
    """The viewer for a username and password; `InvalidCredentials` otherwise.

    Unknown users, wrong passwords and deactivated accounts fail the same way and take
    about as long (a dummy hash is verified when the user is unknown). A hash made with
    older parameters is upgraded in the session (the caller commits). This holds the
    session's connection while it hashes: the service's login goes through
    `serving.services.logins`, which reads with `find_login` and hashes without one.
    """
    found = find_login(session, username)
    if found is None:
        verify_password(password, _dummy_hash())
        raise InvalidCredentials()
    if not verify_password(password, found.password_hash) or not found.viewer:
        raise InvalidCredentials()
    if password_needs_rehash(found.password_hash):
        store_rehash(session, found.viewer.user_id, found.password_hash, hash_password(password))
    return found.viewer


class LoginRecord(BaseModel):
    """What a login needs of a user: the hash, and the viewer if the account is active."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    user_id: int
    password_hash: str
    viewer: Viewer | None


def find_login(session: Session, username: str) -> LoginRecord | None:
    """The stored hash and viewer of `username` (None if unknown or not a valid name).

    One plain query, like `get_viewer`; the caller can end its transaction before hashing.
    """
    if not USERNAME_PATTERN.fullmatch(username or ""):
        return None
    rows = session.execute(
        _viewer_query().add_columns(User.__table__.c.password_hash)
        .where(User.__table__.c.username == username.lower())
    ).all()  # fmt: skip
    if not rows:
        return None
    first = rows[0]
    return LoginRecord(
        user_id=first.id,
        password_hash=first.password_hash,
        viewer=_viewer_of(rows) if first.active else None,
    )


def dummy_hash() -> str:
    """A hash no password matches in practice: verified for unknown users, so that an
    unknown username takes as long to refuse as a wrong password."""
    return _dummy_hash()


def store_rehash(session: Session, user_id: int, old_hash: str, new_hash: str) -> None:
    """Replace a hash made with older parameters, unless the password changed meanwhile."""
    session.execute(
        update(User)
        .where(User.id == user_id, User.password_hash == old_hash)
        .values(password_hash=new_hash)
    )


def _viewer_query() -> Select[Any]:
    users, classes = User.__table__.c, UserClass.__table__.c
    return select(
        users.id, users.username, users.role, users.school_id, users.staff_role,
        users.active, users.token_version, classes.class_id,
    ).outerjoin(UserClass.__table__, classes.user_id == users.id)  # fmt: skip


def _viewer_of(rows: Sequence[Row[Any]]) -> Viewer:
    first = rows[0]
    return Viewer(
        user_id=first.id,
        username=first.username,
        role=first.role,
        school_id=first.school_id,
        class_ids=frozenset(r.class_id for r in rows if r.class_id is not None),
        staff_role=first.staff_role,
        token_version=first.token_version,
    )


def get_viewer(session: Session, user_id: int, token_version: int | None = None) -> Viewer:
    """The viewer for a token's user id; `InvalidCredentials` if gone or deactivated,
    `InvalidToken` if `token_version` is given and is not the user's current one (the
    user logged out or changed password since the token was issued).

    Every authenticated request asks this, so it is one plain query (the user joined to
    their classes), not an ORM load of the user and then of their classes."""
    rows = session.execute(_viewer_query().where(User.__table__.c.id == user_id)).all()
    if not rows or not rows[0].active:
        raise InvalidCredentials("This account no longer exists or was deactivated.")
    if token_version is not None and token_version != rows[0].token_version:
        raise InvalidToken()
    return _viewer_of(rows)


def get_user(session: Session, username: str) -> UserRow:
    """One user by username; `UserNotFound` if there is none."""
    return _row(_get(session, username))


def list_users(
    session: Session, school_id: str | None = None, include_inactive: bool = False
) -> list[UserRow]:
    """Users ordered by username (one school's, or all), active ones unless asked."""
    query = select(User).order_by(User.username)
    if school_id is not None:
        query = query.where(User.school_id == school_id)
    if not include_inactive:
        query = query.where(User.active.is_(True))
    return [_row(user) for user in session.scalars(query)]


def _bump(user: User) -> None:
    user.token_version = (user.token_version or 0) + 1


def set_password(session: Session, username: str, password: str) -> UserRow:
    """Replace a user's password; every token and page session of theirs ends."""
    check_password(password)
    user = _get(session, username)
    user.password_hash = hash_password(password)
    _bump(user)
    session.flush()
    logger.info("password changed for user %d", user.id)
    return _row(user)


def set_classes(session: Session, username: str, class_ids: Iterable[str]) -> UserRow:
    """Replace a teacher's classes (a new school year brings new classes)."""
    user = _get(session, username)
    classes = tuple(dict.fromkeys(class_ids))
    _check_scope(user.role, user.school_id, classes, user.staff_role)
    user.classes = [UserClass(class_id=c) for c in classes]
    session.flush()
    logger.info("user %d now has %d classes", user.id, len(classes))
    return _row(user)


def set_role(
    session: Session,
    username: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Give a user another role and the scope it needs (checked as for `add_user`).

    The new scope replaces the old one entirely (school, classes, staff role); every
    token and page session of the user ends, so they log in again under the new role.
    """
    user = _get(session, username)
    classes = tuple(dict.fromkeys(class_ids))
    staff = _check_scope(role, school_id, classes, staff_role)
    user.role = role
    user.school_id = school_id or None
    user.staff_role = staff
    user.classes = [UserClass(class_id=c) for c in classes]
    _bump(user)
    session.flush()
    logger.info("user %d now has role %s", user.id, role)
    return _row(user)


def deactivate(session: Session, username: str) -> UserRow:
    """Stop a user from logging in and end their tokens and page sessions (their records
    and audit entries stay). `InvalidUser` if already deactivated."""
    user = _get(session, username)
    if not user.active:
        raise InvalidUser("That user is already deactivated.", field="username")
    user.active = False
    _bump(user)
    session.flush()
    logger.info("deactivated user %d", user.id)
    return _row(user)


def reactivate(session: Session, username: str) -> UserRow:
    """Let a deactivated user log in again (with a password set by `set_password`)."""
    user = _get(session, username)
    if user.active:
        raise InvalidUser("That user is active already.", field="username")
    user.active = True
    session.flush()
    logger.info("reactivated user %d", user.id)
    return _row(user)


def end_sessions(session: Session, user_id: int) -> None:
    """Log a user out everywhere: every token and page session issued so far ends."""
    session.execute(
        update(User).where(User.id == user_id).values(token_version=User.token_version + 1)
    )
    logger.info("ended the sessions of user %d", user_id)
