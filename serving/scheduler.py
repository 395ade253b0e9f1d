"""The weekly run inside the service: once a week at `weekly_run_hour` on
`weekly_run_weekday` (settings; off when the weekday is unset), reload the champion
alias, then score the export and write the lists (`distributed_scoring.weekly_job`: in
this process, or on the Dask cluster when ``compute.backend`` is ``dask``).

The decision "is a run due?" is a pure function of the clock, the schedule and when
the last run started (`is_due`), so it is tested without threads or waiting. The thread
checks once a minute; a run missed while the service was down happens when it comes
back in the same week. A failed run is not retried until the next week's slot (the
failure is in the run table and the log), so a broken export does not loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from serving.services.distributed_scoring import weekly_job
from serving.services.retention import purge
from serving.settings import Settings
from serving.storage.queries import latest_run

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0


def last_slot(now: dt.datetime, weekday: int, hour: int) -> dt.datetime:
    """The newest scheduled time at or before `now` (same time zone as `now`)."""
    days_back = (now.weekday() - weekday) % 7
    slot = (now - dt.timedelta(days=days_back)).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    if slot > now:
        slot -= dt.timedelta(days=7)
    return slot


def next_slot(now: dt.datetime, weekday: int, hour: int) -> dt.datetime:
    """The first scheduled time after `now`."""
    return last_slot(now, weekday, hour) + dt.timedelta(days=7)


def is_due(now: dt.datetime, weekday: int, hour: int, last_started: dt.datetime | None) -> bool:
    """Whether a run is due: no run has started since the newest slot before `now`.

    `now` and `last_started` must be aware datetimes (any zones); the slot is computed
    in `now`'s zone, the school's local time.
    """
    if now.tzinfo is None or (last_started is not None and last_started.tzinfo is None):
        raise ValueError("now and last_started must be timezone-aware")
    slot = last_slot(now, weekday, hour)
    return last_started is None or last_started < slot


def week_as_of(day: dt.date) -> dt.date:
    """The as_of of the week containing `day`: its Monday (records before it count)."""
    return day - dt.timedelta(days=day.weekday())


class WeeklyScheduler:
    """A daemon thread that runs the weekly job when `is_due` says so."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        reload_model: Callable[[], object],
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        weekday = settings.serving.weekly_run_weekday
        if weekday is None:
            raise ValueError("the weekly run is off (serving.weekly_run_weekday is unset)")
        self.settings = settings
        self.weekday = weekday
        self.hour = settings.serving.weekly_run_hour
        self.sessions = sessions
        self.reload_model = reload_model
        self.clock = clock or (lambda: dt.datetime.now().astimezone())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_attempt: dt.datetime | None = None

    def start(self) -> None:
        """Start checking once a minute."""
        self._thread = threading.Thread(target=self._loop, name="baoxue-weekly", daemon=True)
        self._thread.start()
        logger.info(
            "weekly run scheduled: weekday %d at %02d:00, next %s",
            self.weekday,
            self.hour,
            next_slot(self.clock(), self.weekday, self.hour).isoformat(timespec="minutes"),
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop and wait briefly (a running job finishes on its own)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _last_started(self) -> dt.datetime | None:
        with self.sessions() as session:
            run = latest_run(session, status=None)
        started = run.started_at if run else None
        if self._last_attempt and (started is None or self._last_attempt > started):
            return self._last_attempt
        return started

    def tick(self) -> bool:
        """Run the job if it is due; return whether it ran (used by the loop and tests)."""
        now = self.clock()
        if not is_due(now, self.weekday, self.hour, self._last_started()):
            return False
        self._last_attempt = now
        self.run_once(week_as_of(now.date()))
        return True

    def run_once(self, as_of: dt.date) -> None:
        """Reload the champion alias, then run the weekly job for `as_of` (in memory or on
        Dask, as `compute.backend` says)."""
        try:
            self.reload_model()
            result = weekly_job(self.settings)(
                self.settings,
                export_dir=self.settings.paths.data,
                as_of=as_of,
                capacity=None,
            )
        except Exception as exc:  # noqa: BLE001 - the thread must survive a bad week
            logger.error("weekly run for %s failed: %s", as_of, type(exc).__name__)
        else:
            logger.info("weekly run for %s done (%s)", as_of, type(result).__name__)
        self.purge_old_records()

    def purge_old_records(self) -> None:
        """Retention runs with every weekly slot, as after `baoxue score`, even when the
        week's run failed: old notes, comments and audit rows must not outlive it."""
        try:
            with self.sessions.begin() as session:
                done = purge(
                    session, today=self.clock().date(), years=self.settings.retention.years
                )
        except Exception as exc:  # noqa: BLE001 - the thread must survive
            logger.error("retention purge failed: %s", type(exc).__name__)
            return
        logger.info(
            "retention before %s: %d notes, %d comments blanked, %d audit rows removed",
            done.cutoff,
            done.notes_blanked,
            done.comments_blanked,
            done.audit_removed,
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001
                logger.error("weekly scheduler check failed: %s", type(exc).__name__)
            self._stop.wait(CHECK_EVERY_S)
