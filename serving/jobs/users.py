"""Accounts of the service, from the command line."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from serving.jobs.common import JobFailed
from serving.settings import Settings
from serving.storage.db import session_scope

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from serving.services.users import UserRow

T = TypeVar("T")


def _in_session(settings: Settings, change: Callable[[Session], T]) -> T:
    """Run one users-service call in a committed session (the database migrated first);
    the service's refusals (`InvalidUser`, `UserNotFound`) become `JobFailed`."""
    from serving.services.users import InvalidUser, UserNotFound

    try:
        with session_scope(settings) as session:
            return change(session)
    except (InvalidUser, UserNotFound) as exc:
        raise JobFailed(str(exc)) from exc


def add_user(
    settings: Settings,
    username: str,
    password: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Create a user; `JobFailed` says what disagrees."""
    from serving.services import users

    return _in_session(
        settings,
        lambda s: users.add_user(s, username, password, role, school_id, class_ids, staff_role),
    )


def set_password(settings: Settings, username: str, password: str) -> None:
    """Replace a user's password; `JobFailed` for a short password or an unknown user."""
    from serving.services import users

    _in_session(settings, lambda s: users.set_password(s, username, password))


def deactivate(settings: Settings, username: str) -> UserRow:
    """Stop a user from logging in (their records stay)."""
    from serving.services import users

    return _in_session(settings, lambda s: users.deactivate(s, username))


def reactivate(settings: Settings, username: str) -> UserRow:
    """Let a deactivated user log in again."""
    from serving.services import users

    return _in_session(settings, lambda s: users.reactivate(s, username))


def set_role(
    settings: Settings,
    username: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Give a user another role and scope (replacing the old one); their sessions end."""
    from serving.services import users

    return _in_session(
        settings,
        lambda s: users.set_role(s, username, role, school_id, class_ids, staff_role),
    )


def list_users(
    settings: Settings, school_id: str | None = None, include_inactive: bool = False
) -> list[UserRow]:
    """Users ordered by username (one school's, or all; active ones unless asked)."""
    from serving.services import users

    return _in_session(settings, lambda s: users.list_users(s, school_id, include_inactive))
