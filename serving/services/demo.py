"""Demo accounts for `baoxue demo`: a county admin, a principal and a homeroom teacher
placed where the latest weekly list has the most to show."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.orm import Session

from serving.services.users import UserNotFound, add_user, get_user, set_classes, set_password
from serving.storage.queries import scores_for


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    role: str
    school_id: str | None
    class_id: str | None


def busiest_class(session: Session, as_of: dt.date) -> tuple[str, str]:
    """(school_id, class_id) with the most high-tier or ladder-alert pupils this week."""
    rows = scores_for(session, as_of)
    if not rows:
        raise LookupError(f"no weekly scores stored for {as_of}")
    flagged = Counter(
        (r.school_id, r.class_id) for r in rows if r.tier == "high" or r.escalation_level > 0
    )
    if not flagged:
        return rows[0].school_id, rows[0].class_id
    return max(flagged, key=lambda key: (flagged[key], key))


def ensure_demo_accounts(session: Session, as_of: dt.date) -> list[DemoAccount]:
    """Create (or reset the passwords of) the three demo accounts; new passwords each run."""
    school_id, class_id = busiest_class(session, as_of)
    wanted = [
        DemoAccount("county", secrets.token_urlsafe(9), "county_admin", None, None),
        DemoAccount("principal", secrets.token_urlsafe(9), "school_admin", school_id, None),
        DemoAccount("teacher", secrets.token_urlsafe(9), "teacher", school_id, class_id),
    ]
    for account in wanted:
        classes = (account.class_id,) if account.class_id else ()
        try:
            existing = get_user(session, account.username)
        except UserNotFound:
            add_user(
                session,
                account.username,
                account.password,
                account.role,
                account.school_id,
                classes,
            )
            continue
        if existing.role != account.role or existing.school_id != account.school_id:
            raise ValueError(
                f"a user named {account.username!r} already exists with another role or "
                "school; remove the home folder to start the demo afresh"
            )
        set_password(session, account.username, account.password)
        if classes:
            set_classes(session, account.username, classes)
    return wanted
