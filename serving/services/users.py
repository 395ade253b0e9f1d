"""User accounts: create, log in, list, change password, deactivate.

Plain functions taking a session (no HTTP). Usernames are case-insensitive and stored in
lower case. Role and scope must agree:

| role          | school   | classes   | staff_role (default first)                          |
|---------------|----------|-----------|-----------------------------------------------------|
| county_admin  | none     | none      | county                                              |
| school_admin  | required | none      | principal, homeroom_teacher, subject_teacher        |
| teacher       | required | 1 or more | homeroom_teacher, subject_teacher                   |
| researcher    | none     | none      | researcher                                          |

Nothing here logs passwords or hashes; log lines name the user id and role only.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from functools import cache

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.auth import (
    InvalidCredentials,
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
    older parameters is upgraded in the session (the caller commits).
    """
    user = _find(session, username) if USERNAME_PATTERN.fullmatch(username or "") else None
    if user is None:
        verify_password(password, _dummy_hash())
        raise InvalidCredentials()
    if not verify_password(password, user.password_hash) or not user.active:
        raise InvalidCredentials()
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.flush()
    return _viewer(user)


def get_viewer(session: Session, user_id: int) -> Viewer:
    """The viewer for a token's user id; `InvalidCredentials` if gone or deactivated.

    Every authenticated request asks this, so it is one plain query (the user joined to
    their classes), not an ORM load of the user and then of their classes."""
    users, classes = User.__table__.c, UserClass.__table__.c
    query = (
        select(
            users.id, users.username, users.role, users.school_id, users.staff_role,
            users.active, classes.class_id,
        )
        .outerjoin(UserClass.__table__, classes.user_id == users.id)
        .where(users.id == user_id)
    )  # fmt: skip
    rows = session.execute(query).all()
    if not rows or not rows[0].active:
        raise InvalidCredentials("This account no longer exists or was deactivated.")
    first = rows[0]
    return Viewer(
        user_id=first.id,
        username=first.username,
        role=first.role,
        school_id=first.school_id,
        class_ids=frozenset(r.class_id for r in rows if r.class_id is not None),
        staff_role=first.staff_role,
    )


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


def set_password(session: Session, username: str, password: str) -> None:
    """Replace a user's password."""
    check_password(password)
    user = _get(session, username)
    user.password_hash = hash_password(password)
    session.flush()
    logger.info("password changed for user %d", user.id)


def set_classes(session: Session, username: str, class_ids: Iterable[str]) -> UserRow:
    """Replace a teacher's classes (a new school year brings new classes)."""
    user = _get(session, username)
    classes = tuple(dict.fromkeys(class_ids))
    _check_scope(user.role, user.school_id, classes, user.staff_role)
    user.classes = [UserClass(class_id=c) for c in classes]
    session.flush()
    logger.info("user %d now has %d classes", user.id, len(classes))
    return _row(user)


def deactivate(session: Session, username: str) -> UserRow:
    """Stop a user from logging in (their records and audit entries stay)."""
    user = _get(session, username)
    user.active = False
    session.flush()
    logger.info("deactivated user %d", user.id)
    return _row(user)
