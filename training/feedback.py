"""Teacher feedback and recorded interventions as data: joined onto label rows, and
pseudonymised for researchers.

The service database keeps two kinds of record a researcher wants beside the training
rows (`training.matrices.labelled_snapshots`: one row per student per weekly ``as_of``):

* **feedback** (``student_id``, ``as_of``, ``kind``, ``user_id``): a teacher's verdict on
  one week's flag, ``useful``, ``not_useful`` or ``wrongly_flagged``;
* **interventions** (``student_id``, ``school_id``, ``class_id``, ``date``, ``kind``,
  ``by_role``, ``outcome``, ``recorded_by``): what someone did for a pupil (家访, 电话, ...)
  and how it ended (``returned``: back in school).

`attach_feedback` and `attach_interventions` add per-row columns; `visit_led_returns`
marks the rows the evaluation counts as caught even without a dropout label (see
`training.evaluate.evaluate_with_visits` and docs/model.md). `pseudonymise` replaces ids by
a keyed hash (HMAC-SHA256 with a salt the caller draws fresh per export and never
writes), and `drop_free_text` removes notes, comments, plans. `research_tables` puts it
all together for `baoxue export research`.

Everything here is pure: frames, dates and a salt in, frames out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import CATALOG_VERSION
from features.tables import RawTables
from training.matrices import labelled_snapshots

logger = logging.getLogger(__name__)

FEEDBACK_KINDS = ("useful", "not_useful", "wrongly_flagged")
RETURNED_OUTCOME = "returned"
RETURN_EVENT = "return"
# Free text never leaves the service: visit notes, feedback comments, case plans and reasons.
FREE_TEXT_COLUMNS = ("note", "comment", "plan", "close_reason", "detail", "text")
# Ids that name a person: students and the service's users.
PERSON_ID_COLUMNS = ("student_id", "user_id", "recorded_by")
HASH_CHARS = 20
MIN_SALT_BYTES = 16

FEEDBACK_COLUMNS = ("student_id", "as_of", "kind", "user_id")
INTERVENTION_COLUMNS = (
    "student_id",
    "school_id",
    "class_id",
    "date",
    "kind",
    "by_role",
    "outcome",
    "recorded_by",
)
VISIT_COLUMNS = (
    "n_interventions",
    "visited",
    "days_to_first_intervention",
    "outcome_returned",
    "return_event",
    "visit_led_return",
)


# --------------------------------------------------------------------------- pseudonyms


def pseudonym(value: Any, salt: bytes) -> str | None:
    """The keyed hash of one id: the first `HASH_CHARS` hex digits of
    HMAC-SHA256(salt, str(value)); None stays None (and NaN becomes None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    digest = hmac.new(salt, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_CHARS]


def pseudonymise(
    frame: pd.DataFrame, salt: bytes, columns: Iterable[str] = PERSON_ID_COLUMNS
) -> pd.DataFrame:
    """A copy of `frame` with every id column in `columns` (those present) replaced by
    `pseudonym`. The same id gives the same pseudonym under one salt, in every table, so
    tables of one export still join; under another salt nothing links.

    Raises ValueError for a salt shorter than `MIN_SALT_BYTES` bytes.
    """
    if len(salt) < MIN_SALT_BYTES:
        raise ValueError(f"the salt must have at least {MIN_SALT_BYTES} random bytes")
    out = frame.copy()
    for column in columns:
        if column in out.columns:
            values = out[column].astype("object")
            unique = values.dropna().unique()
            mapping = {v: pseudonym(v, salt) for v in unique}
            out[column] = values.map(mapping).astype("object")
    return out


def drop_free_text(frame: pd.DataFrame, columns: Iterable[str] = FREE_TEXT_COLUMNS) -> pd.DataFrame:
    """`frame` without its free-text columns (notes, comments, plans)."""
    return frame.drop(columns=[c for c in columns if c in frame.columns])


# --------------------------------------------------------------------------- joins


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.normalize().astype("datetime64[ns]")


def _rows(labels: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": np.arange(len(labels)),
            "student_id": labels["student_id"].astype("str").to_numpy(),
            "as_of": _dates(labels["as_of"]).to_numpy(),
        }
    )


def attach_feedback(labels: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """`labels` with one count column per feedback kind on that row's week.

    Feedback is given on one week's flag (``as_of``), so it joins on (``student_id``,
    ``as_of``): ``feedback_useful``, ``feedback_not_useful``, ``feedback_wrongly_flagged``
    (int64 counts, 0 when nobody gave any). Index and other columns are kept.
    """
    out = labels.copy()
    rows = _rows(labels)
    counts = pd.DataFrame(0, index=rows.index, columns=list(FEEDBACK_KINDS), dtype="int64")
    if not feedback.empty:
        given = pd.DataFrame(
            {
                "student_id": feedback["student_id"].astype("str"),
                "as_of": _dates(feedback["as_of"]),
                "kind": feedback["kind"].astype("str"),
            }
        )
        unknown = sorted(set(given["kind"]) - set(FEEDBACK_KINDS))
        if unknown:
            raise ValueError(f"feedback kind(s) {unknown} are not one of {list(FEEDBACK_KINDS)}")
        merged = rows.merge(given, on=["student_id", "as_of"], how="inner")
        table = pd.crosstab(merged["row"], merged["kind"])
        table = table.reindex(index=rows["row"], columns=list(FEEDBACK_KINDS), fill_value=0)
        counts = pd.DataFrame(table.to_numpy(dtype="int64"), columns=list(FEEDBACK_KINDS))
    for kind in FEEDBACK_KINDS:
        out[f"feedback_{kind}"] = counts[kind].to_numpy(dtype="int64")
    return out


def attach_interventions(
    labels: pd.DataFrame,
    interventions: pd.DataFrame,
    status_events: pd.DataFrame,
    *,
    horizon: dt.timedelta,
) -> pd.DataFrame:
    """`labels` with what was done for each row's student within its horizon.

    For the row's window ``[as_of, as_of + horizon)`` (the label's window):

    * ``n_interventions`` (int64): interventions recorded with a date in the window;
    * ``visited`` (bool): at least one;
    * ``days_to_first_intervention`` (float, NaN when none): days from ``as_of``;
    * ``outcome_returned`` (bool): one of them has the outcome ``returned``;
    * ``return_event`` (bool): a ``return`` status event on or after the first
      intervention's date and inside the window;
    * ``visit_led_return`` (bool): ``visited`` and (``outcome_returned`` or
      ``return_event``), the return that `training.evaluate.evaluate_with_visits` counts
      as caught.

    Parameters
    ----------
    labels : pd.DataFrame
        Rows with ``student_id`` and ``as_of`` (one per student and week).
    interventions : pd.DataFrame
        ``student_id``, ``date``, ``outcome`` (the service's and/or the export's).
    status_events : pd.DataFrame
        The export's ``status_events``: ``student_id``, ``date``, ``event``.
    horizon : datetime.timedelta
        Length of the window; positive.
    """
    if horizon <= dt.timedelta(0):
        raise ValueError(f"the horizon must be positive; got {horizon}")
    for name, frame, needed in (
        ("labels", labels, ("student_id", "as_of")),
        ("interventions", interventions, ("student_id", "date", "outcome")),
        ("status_events", status_events, ("student_id", "date", "event")),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} table lacks the column(s) {missing}")
    rows = _rows(labels)
    rows["end"] = rows["as_of"] + pd.Timedelta(horizon)
    n = len(rows)
    n_interventions = np.zeros(n, dtype="int64")
    first = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    outcome_returned = np.zeros(n, dtype=bool)
    return_event = np.zeros(n, dtype=bool)
    if not interventions.empty and n:
        done = pd.DataFrame(
            {
                "student_id": interventions["student_id"].astype("str"),
                "date": _dates(interventions["date"]),
                "returned": interventions["outcome"].astype("str") == RETURNED_OUTCOME,
            }
        )
        hits = rows.merge(done, on="student_id", how="inner")
        hits = hits.loc[(hits["date"] >= hits["as_of"]) & (hits["date"] < hits["end"])]
        per_row = hits.groupby("row").agg(
            n=("date", "size"), first=("date", "min"), returned=("returned", "any")
        )
        index = per_row.index.to_numpy()
        n_interventions[index] = per_row["n"].to_numpy(dtype="int64")
        first[index] = per_row["first"].to_numpy(dtype="datetime64[ns]")
        outcome_returned[index] = per_row["returned"].to_numpy(dtype=bool)
        returns = status_events.loc[
            status_events["event"].astype("str") == RETURN_EVENT, ["student_id", "date"]
        ]
        if not returns.empty and len(index):
            visited_rows = rows.iloc[index].assign(first=first[index])
            back = visited_rows.merge(
                pd.DataFrame(
                    {
                        "student_id": returns["student_id"].astype("str"),
                        "back": _dates(returns["date"]),
                    }
                ),
                on="student_id",
                how="inner",
            )
            back = back.loc[(back["back"] >= back["first"]) & (back["back"] < back["end"])]
            return_event[back["row"].unique()] = True
    visited = n_interventions > 0
    days = (first - rows["as_of"].to_numpy()) / np.timedelta64(1, "D")
    out = labels.copy()
    out["n_interventions"] = n_interventions
    out["visited"] = visited
    out["days_to_first_intervention"] = np.where(visited, days, np.nan).astype("float64")
    out["outcome_returned"] = outcome_returned
    out["return_event"] = return_event
    out["visit_led_return"] = visited & (outcome_returned | return_event)
    return out


def visit_led_returns(
    labels: pd.DataFrame,
    interventions: pd.DataFrame,
    status_events: pd.DataFrame,
    *,
    horizon: dt.timedelta,
) -> pd.Series:
    """Bool Series aligned to `labels`: the row's student was visited within the horizon
    and came back to school after it (see `attach_interventions`)."""
    joined = attach_interventions(labels, interventions, status_events, horizon=horizon)
    return pd.Series(
        joined["visit_led_return"].to_numpy(), index=labels.index, name="visit_led_return"
    )


def combine_interventions(*frames: pd.DataFrame) -> pd.DataFrame:
    """The interventions of several sources (the service database, the export) in one
    frame with `INTERVENTION_COLUMNS` (absent columns are None), free text dropped."""
    parts = []
    for frame in frames:
        if frame is None or frame.empty:
            continue
        part = drop_free_text(frame)
        part = part.reindex(columns=list(INTERVENTION_COLUMNS))
        parts.append(part.astype("object").assign(date=_dates(part["date"])))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in INTERVENTION_COLUMNS})
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- the export


@dataclass(frozen=True)
class ResearchTables:
    """What `baoxue export research` writes: ``frames`` by file stem, ``manifest`` facts."""

    frames: Mapping[str, pd.DataFrame]
    manifest: Mapping[str, Any] = field(default_factory=dict)


def research_tables(
    tables: RawTables,
    *,
    as_ofs: Sequence[dt.date],
    horizon: dt.timedelta,
    feedback: pd.DataFrame,
    interventions: pd.DataFrame,
    salt: bytes,
) -> ResearchTables:
    """Training rows with feedback and interventions, pseudonymised, free text dropped.

    Parameters
    ----------
    tables : RawTables
        The export (its ``interventions`` table, when present, joins those of the service).
    as_ofs : sequence of date
        The weekly as_ofs to export (each one's label window must be observable).
    horizon : datetime.timedelta
        The label horizon (the trainer's).
    feedback, interventions : pd.DataFrame
        The service database's records (`FEEDBACK_COLUMNS`, `INTERVENTION_COLUMNS`; any
        free-text column is dropped here too).
    salt : bytes
        Fresh random bytes for this export only; never stored.

    Returns
    -------
    ResearchTables
        ``training_rows`` (snapshot columns, ``label``, the feedback counts and
        `VISIT_COLUMNS`), ``feedback`` and ``interventions`` of the exported students, all
        with ``student_id``/``user_id``/``recorded_by`` replaced by pseudonyms.
    """
    if not as_ofs:
        raise ValueError("no weekly as_of to export (check --from, --to and --horizon)")
    rows = labelled_snapshots(tables, as_ofs=list(as_ofs), horizon=horizon)
    done = combine_interventions(interventions, tables.interventions)
    rows = attach_feedback(rows, drop_free_text(feedback))
    rows = attach_interventions(rows, done, tables.status_events, horizon=horizon)
    students = set(rows["student_id"].astype("str"))
    given = drop_free_text(feedback).reindex(columns=list(FEEDBACK_COLUMNS))
    given = given.loc[given["student_id"].astype("str").isin(students)]
    given = given.assign(as_of=_dates(given["as_of"])).reset_index(drop=True)
    done = done.loc[done["student_id"].astype("str").isin(students)].reset_index(drop=True)
    frames = {
        "training_rows": pseudonymise(rows.reset_index(drop=True), salt),
        "feedback": pseudonymise(given, salt),
        "interventions": pseudonymise(done, salt),
    }
    manifest: dict[str, Any] = {
        "from": min(as_ofs).isoformat(),
        "to": max(as_ofs).isoformat(),
        "n_as_of": len(set(as_ofs)),
        "horizon_days": horizon.days,
        "catalog_version": CATALOG_VERSION,
        "rows": {name: len(frame) for name, frame in frames.items()},
        "n_students": len(students),
        "n_positive": int(rows["label"].sum()),
        "n_visit_led_returns": int(rows["visit_led_return"].sum()),
        "pseudonymised_columns": list(PERSON_ID_COLUMNS),
        "dropped_free_text": list(FREE_TEXT_COLUMNS),
    }
    logger.info(
        "research export %s .. %s: %d rows, %d students, %d feedback, %d interventions",
        manifest["from"],
        manifest["to"],
        len(rows),
        len(students),
        len(given),
        len(done),
    )
    return ResearchTables(frames=frames, manifest=manifest)


# --------------------------------------------------------------------------- with MLflow


def evaluate_registered_with_visits(
    tables: RawTables,
    config: Any,
    *,
    store: Any,
    ref: str,
    date_from: dt.date,
    date_to: dt.date,
    interventions: pd.DataFrame,
) -> dict[str, Any]:
    """`training.evaluate.evaluate_with_visits` of a registered model on the weekly as_ofs
    of ``[date_from, date_to]`` whose outcome is observable, with the service's
    `interventions` (and the export's own) deciding which rows are visit-led returns.

    `config` is a `training.config.TrainingConfig`, `store` a `training.track.Store`; the
    horizon is the model's own (its contract's), as in `baoxue evaluate`.
    """
    from training import track
    from training.evaluate import evaluate_with_visits
    from training.pipeline import observable_as_ofs

    track.connect(store)
    model, version = track.load_risk_model(store.model_name, ref)
    assert model.contract is not None
    config = config.model_copy(update={"horizon_days": model.contract.horizon_days})
    as_ofs = [d for d in observable_as_ofs(tables, config) if date_from <= d <= date_to]
    if not as_ofs:
        raise ValueError(
            f"no weekly as_of between {date_from} and {date_to} has an observable "
            f"{config.horizon_days}-day outcome in this export"
        )
    rows = labelled_snapshots(
        tables,
        as_ofs=as_ofs,
        horizon=config.horizon,
        horizon_to_enrolment_end=config.horizon_to_enrolment_end,
    )
    model.contract.check(rows, catalog_version=CATALOG_VERSION)
    done = combine_interventions(interventions, tables.interventions)
    rows = attach_interventions(rows, done, tables.status_events, horizon=config.horizon)
    rows["risk_score"] = model.risk_scores(rows)
    result = evaluate_with_visits(rows, score="risk_score", capacity_share=config.capacity_share)
    return {
        "model": store.model_name,
        "version": version,
        "from": as_ofs[0].isoformat(),
        "to": as_ofs[-1].isoformat(),
        "horizon_days": config.horizon_days,
        "n_interventions": len(done),
        **result,
    }
