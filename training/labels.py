"""Labels: did a student drop out within `horizon` after `as_of`?

The label window of a population row is the half-open interval ``[as_of, as_of + horizon)``,
or ``[as_of, label_until)`` when the row carries its own ``label_until`` (university data,
where the horizon is "until the end of the course"). Only `status_events` inside the window
are looked at; nothing before `as_of` and nothing on or after the window end.

* ``label`` is 1 when a ``dropout`` event falls inside the window. A dropout followed by a
  ``return`` inside the same window still counts: the child left school, and a 辍返生 is
  exactly the student a teacher should have visited.
* ``censored`` is True when a ``transfer_out`` falls inside the window with no ``dropout``
  on or before its date: the student left our records for another school, so we cannot tell
  whether they later dropped out. Censored rows are kept in the output (with their label,
  for inspection) and must be left out of training and evaluation; `uncensored` does that.
* A row whose window ends after ``observed_until`` (the last day the export can tell about)
  is not observable: `make_labels` drops it and logs how many it dropped. Use
  `observable_mask` to ask the same question before building snapshots.

Status events follow the ``status_events`` table of docs/data-contract.md
(``student_id``, ``date``, ``event``, ``school_id``).
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

logger = logging.getLogger(__name__)

LABEL_UNTIL = "label_until"


def _window_end(population: pd.DataFrame, *, horizon: dt.timedelta) -> pd.Series:
    """First day after each row's label window (exclusive end), as datetime64[ns]."""
    as_of = pd.to_datetime(population["as_of"]).dt.normalize()
    end = as_of + pd.Timedelta(horizon)
    if LABEL_UNTIL in population.columns:
        until = pd.to_datetime(population[LABEL_UNTIL]).dt.normalize()
        end = until.where(until.notna(), end)
    return end.astype("datetime64[ns]")


def _check_horizon(horizon: dt.timedelta) -> None:
    if horizon <= dt.timedelta(0):
        raise ValueError(f"The label horizon must be positive; got {horizon}.")


def observable_mask(
    population: pd.DataFrame, *, horizon: dt.timedelta, observed_until: dt.date
) -> pd.Series:
    """Which rows have a label window that the export can fully tell about.

    Parameters
    ----------
    population : pd.DataFrame
        Rows with ``as_of`` (datetime64[ns]) and optionally ``label_until``.
    horizon : datetime.timedelta
        How far ahead a label looks when the row has no ``label_until``.
    observed_until : datetime.date
        Last day (inclusive) on which the export records status events.

    Returns
    -------
    pd.Series of bool
        True where the window's last day (window end minus one day) is on or before
        `observed_until`; aligned to ``population.index``.
    """
    _check_horizon(horizon)
    end = _window_end(population, horizon=horizon)
    last_observable_end = pd.Timestamp(observed_until) + pd.Timedelta(days=1)
    return (end <= last_observable_end).rename("observable")


def make_labels(
    status_events: pd.DataFrame,
    population: pd.DataFrame,
    *,
    horizon: dt.timedelta,
    observed_until: dt.date,
) -> pd.DataFrame:
    """Label each population row with dropout within its window, and mark censored rows.

    Parameters
    ----------
    status_events : pd.DataFrame
        The ``status_events`` table: ``student_id``, ``date`` (datetime64[ns]), ``event``
        (the enrolment-event vocabulary of `features.tables.EVENTS`), ``school_id``.
    population : pd.DataFrame
        One row per (``student_id``, ``as_of``), e.g. the id columns of a snapshot;
        ``as_of`` is datetime64[ns]. An optional ``label_until`` column (datetime64, NaT
        allowed) overrides ``as_of + horizon`` as the exclusive window end of that row.
        Other columns are carried through unchanged.
    horizon : datetime.timedelta
        Length of the label window ``[as_of, as_of + horizon)``; must be positive.
    observed_until : datetime.date
        Last day the export can tell about. Rows whose window ends later are dropped
        (count logged at INFO), see `observable_mask`.

    Returns
    -------
    pd.DataFrame
        The observable population rows, original index kept, with two added columns:
        ``label`` (int64, 1 = a ``dropout`` event inside the window) and ``censored``
        (bool, a ``transfer_out`` inside the window with no ``dropout`` on or before it).

    Raises
    ------
    ValueError
        If the horizon is not positive, a required column is missing, a window ends on or
        before its ``as_of``, or the population repeats a (``student_id``, ``as_of``) pair.

    Examples
    --------
    >>> import datetime as dt
    >>> events = pd.DataFrame({"student_id": ["a"], "date": pd.to_datetime(["2024-03-10"]),
    ...                        "event": ["dropout"], "school_id": ["s1"]})
    >>> population = pd.DataFrame({"student_id": ["a", "b"],
    ...                            "as_of": pd.to_datetime(["2024-03-04", "2024-03-04"])})
    >>> make_labels(events, population, horizon=dt.timedelta(days=28),
    ...             observed_until=dt.date(2024, 6, 30))[["student_id", "label", "censored"]]
      student_id  label  censored
    0          a      1     False
    1          b      0     False
    """
    _check_horizon(horizon)
    for name, frame, needed in (
        ("population", population, ("student_id", "as_of")),
        ("status_events", status_events, ("student_id", "date", "event")),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"The {name} table lacks the column(s) {missing}.")
    if population.duplicated(["student_id", "as_of"]).any():
        n_dup = int(population.duplicated(["student_id", "as_of"]).sum())
        raise ValueError(
            f"The population repeats {n_dup} (student_id, as_of) pair(s); "
            "each student needs one row per as_of."
        )

    as_of = pd.to_datetime(population["as_of"]).dt.normalize().astype("datetime64[ns]")
    end = _window_end(population, horizon=horizon)
    if (end <= as_of).any():
        raise ValueError(
            f"{int((end <= as_of).sum())} population row(s) have a label window that ends "
            "on or before their as_of (check label_until)."
        )

    observable = observable_mask(population, horizon=horizon, observed_until=observed_until)
    n_dropped = int((~observable).sum())
    if n_dropped:
        logger.info(
            "Dropped %d of %d population rows whose label window ends after %s "
            "(not observable in this export).",
            n_dropped,
            len(population),
            observed_until,
        )
    kept = population.loc[observable]

    windows = pd.DataFrame(
        {
            "row": range(len(kept)),
            "student_id": kept["student_id"].to_numpy(),
            "start": as_of.loc[observable].to_numpy(),
            "end": end.loc[observable].to_numpy(),
        }
    )
    relevant = status_events.loc[
        status_events["event"].isin(("dropout", "transfer_out")), ["student_id", "date", "event"]
    ].assign(date=lambda f: pd.to_datetime(f["date"]).dt.normalize().astype("datetime64[ns]"))
    hits = windows.merge(relevant, on="student_id", how="inner")
    hits = hits.loc[(hits["date"] >= hits["start"]) & (hits["date"] < hits["end"])]
    first = hits.pivot_table(index="row", columns="event", values="date", aggfunc="min")
    first = first.reindex(index=range(len(kept)), columns=["dropout", "transfer_out"])
    first_dropout = first["dropout"].to_numpy()
    first_transfer = first["transfer_out"].to_numpy()

    has_dropout = pd.notna(first_dropout)
    has_transfer = pd.notna(first_transfer)
    dropout_first = has_dropout & (first_dropout <= first_transfer)
    censored = has_transfer & ~dropout_first

    labels = kept.copy()
    labels["label"] = has_dropout.astype("int64")
    labels["censored"] = censored.astype(bool)
    logger.info(
        "Labelled %d rows: %d positive, %d censored (horizon %s).",
        len(labels),
        int(labels["label"].sum()),
        int(labels["censored"].sum()),
        horizon,
    )
    return labels


def uncensored(labels: pd.DataFrame) -> pd.DataFrame:
    """The rows of `make_labels` output that may enter training and evaluation."""
    return labels.loc[~labels["censored"].astype(bool)]
