"""Keep personal data no longer than needed: the retention purge as a job."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from serving.settings import Settings
from serving.storage.db import session_scope

if TYPE_CHECKING:
    from serving.services.retention import PurgeResult


def purge(settings: Settings, *, today: date) -> PurgeResult:
    """Blank notes and comments and delete audit rows older than retention.years, in one
    transaction on the service database (migrated first)."""
    from serving.services.retention import purge as purge_session

    with session_scope(settings) as session:
        return purge_session(session, today=today, years=settings.retention.years)
