"""Broken-feed warnings for the county dashboard, from the export the weekly batch reads.

The checks are `features.feeds.feed_warnings`, the same the drift report runs; here they
look at the half year before the newest scored week (``[as_of - WINDOW_DAYS, as_of)``,
nothing on or after `as_of`). Reading and validating an export takes seconds, so the
answer is kept per (folder, as_of, the files' sizes and modification times): a new
export or a new week computes it again, a page reload does not. A missing or invalid
export gives no warnings (the weekly batch reports that itself), logged without ids.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import lru_cache
from pathlib import Path

from features.feeds import FeedWarning, feed_warnings

logger = logging.getLogger(__name__)

WINDOW_DAYS = 183


def _signature(data_dir: Path) -> tuple[tuple[str, int, int], ...]:
    if not data_dir.is_dir():
        return ()
    return tuple(
        (p.name, p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(data_dir.iterdir())
        if p.is_file()
    )


@lru_cache(maxsize=4)
def _warnings(
    data_dir: str, as_of: dt.date, signature: tuple[tuple[str, int, int], ...]
) -> tuple[FeedWarning, ...]:
    from features.sources import load_export
    from features.validation import InputTableError

    if not signature:
        logger.info("feed checks: no export at the data folder; no warnings shown")
        return ()
    try:
        tables = load_export(Path(data_dir)).tables
    except (InputTableError, OSError, ValueError) as exc:
        logger.warning("feed checks: the export could not be read (%s)", type(exc).__name__)
        return ()
    start = as_of - dt.timedelta(days=WINDOW_DAYS)
    found = feed_warnings(
        tables, date_from=start, date_to=as_of - dt.timedelta(days=1), since=start
    )
    return tuple(found)


def county_feed_warnings(data_dir: Path, *, as_of: dt.date) -> tuple[FeedWarning, ...]:
    """Broken-feed warnings of every school in the export at `data_dir`, for the week
    `as_of` (by school, then check)."""
    return _warnings(str(Path(data_dir).resolve()), as_of, _signature(Path(data_dir)))
