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
