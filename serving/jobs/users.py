"""Accounts of the service, from the command line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from serving.jobs.common import JobFailed
from serving.settings import Settings
from serving.storage.db import session_scope

if TYPE_CHECKING:
    from serving.services.users import UserRow


def add_user(
    settings: Settings,
    username: str,
    password: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Create a user (the database migrated first); `JobFailed` says what disagrees."""
    from serving.services.users import InvalidUser
    from serving.services.users import add_user as add

    try:
        with session_scope(settings) as session:
            return add(session, username, password, role, school_id, class_ids, staff_role)
    except InvalidUser as exc:
        raise JobFailed(str(exc)) from exc


def set_password(settings: Settings, username: str, password: str) -> None:
    """Replace a user's password; `JobFailed` for a short password or an unknown user."""
    from serving.services.users import InvalidUser, UserNotFound
    from serving.services.users import set_password as change

    try:
        with session_scope(settings) as session:
            change(session, username, password)
    except (InvalidUser, UserNotFound) as exc:
        raise JobFailed(str(exc)) from exc


def deactivate(settings: Settings, username: str) -> UserRow:
    """Stop a user from logging in (their records stay)."""
    from serving.services.users import InvalidUser, UserNotFound
    from serving.services.users import deactivate as stop

    try:
        with session_scope(settings) as session:
            return stop(session, username)
    except (InvalidUser, UserNotFound) as exc:
        raise JobFailed(str(exc)) from exc


def reactivate(settings: Settings, username: str) -> UserRow:
    """Let a deactivated user log in again."""
    from serving.services.users import InvalidUser, UserNotFound
    from serving.services.users import reactivate as start

    try:
        with session_scope(settings) as session:
            return start(session, username)
    except (InvalidUser, UserNotFound) as exc:
        raise JobFailed(str(exc)) from exc


def set_role(
    settings: Settings,
    username: str,
    role: str,
    school_id: str | None = None,
    class_ids: Iterable[str] = (),
    staff_role: str | None = None,
) -> UserRow:
    """Give a user another role and scope (replacing the old one); their sessions end."""
    from serving.services.users import InvalidUser, UserNotFound
    from serving.services.users import set_role as change

    try:
        with session_scope(settings) as session:
            return change(session, username, role, school_id, class_ids, staff_role)
    except (InvalidUser, UserNotFound) as exc:
        raise JobFailed(str(exc)) from exc


def list_users(
    settings: Settings, school_id: str | None = None, include_inactive: bool = False
) -> list[UserRow]:
    """Users ordered by username (one school's, or all; active ones unless asked)."""
    from serving.services.users import list_users as listed

    with session_scope(settings) as session:
        return listed(session, school_id, include_inactive)
