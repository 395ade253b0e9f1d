"""Snapshots + labels -> the rows, matrices and fairness groups of one split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from features.snapshot import build_snapshots
from features.tables import RawTables, default_enrolment_end
from training.labels import make_labels
from training.splits import Split

logger = logging.getLogger(__name__)

FAIRNESS_GROUPS: tuple[str, ...] = (
    "left_behind",
    "poverty_registered",
    "dibao",
    "sex",
    "disability",
    "migrant_child",
    "ethnic_minority",
)


def observed_until(tables: RawTables) -> date:
    """The last day the export can tell about: its last school day."""
    return pd.Timestamp(tables.calendar["date"].max()).date()


def school_days(tables: RawTables) -> list[date]:
    """Every date that is a school day of at least one school."""
    days = pd.to_datetime(tables.calendar["date"]).drop_duplicates().sort_values()
    return [d.date() for d in days]


def _enrolment_end(tables: RawTables, snapshot: pd.DataFrame) -> pd.Series:
    """End date of the enrolment row each snapshot row sits in."""
    enr = tables.enrolments.copy()
    if "end_date" not in enr.columns:
        enr["end_date"] = pd.NaT
    fallback = enr["school_year"].map(default_enrolment_end)
    enr["end_date"] = pd.to_datetime(enr["end_date"]).fillna(fallback)
    keys = ["student_id", "school_id", "class_id"]
    ends = enr.groupby(keys, as_index=False)["end_date"].max()
    merged = snapshot[keys].merge(ends, on=keys, how="left")
    return pd.Series(merged["end_date"].to_numpy(), index=snapshot.index)


def labelled_snapshots(
    tables: RawTables,
    *,
    as_ofs: Sequence[date],
    horizon: timedelta,
    horizon_to_enrolment_end: bool = False,
) -> pd.DataFrame:
    """Snapshots for every as_of with `label` attached; censored and unobservable rows dropped.

    Returns the snapshot columns plus `label` (0/1).
    """
    snapshot = build_snapshots(tables, as_ofs=list(as_ofs))
    population = snapshot.loc[:, ["student_id", "as_of"]].copy()
    if horizon_to_enrolment_end:
        end = _enrolment_end(tables, snapshot) + pd.Timedelta(days=1)
        population["label_until"] = np.minimum(
            (snapshot["as_of"] + pd.Timedelta(horizon)).to_numpy(), end.to_numpy()
        )
    labels = make_labels(
        tables.status_events,
        population,
        horizon=horizon,
        observed_until=observed_until(tables),
    )
    labels = labels.loc[~labels["censored"].astype(bool), ["student_id", "as_of", "label"]]
    frame = snapshot.merge(labels, on=["student_id", "as_of"], how="inner")
    frame["label"] = frame["label"].astype(np.int64)
    logger.info(
        "%d labelled rows over %d as_of dates, %d positives",
        len(frame),
        frame["as_of"].nunique(),
        int(frame["label"].sum()),
    )
    return frame


@dataclass(frozen=True)
class SplitFrames:
    """The labelled rows of one split, by part."""

    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame


def split_frames(frame: pd.DataFrame, split: Split) -> SplitFrames:
    """Cut labelled rows into the split's train, calibration and test parts."""
    as_of = frame["as_of"].dt.date

    def part(days: Sequence[date]) -> pd.DataFrame:
        return frame.loc[as_of.isin(set(days))].reset_index(drop=True)

    return SplitFrames(
        train=part(split.train_as_ofs),
        calibration=part(split.calibration_as_ofs),
        test=part(split.test_as_ofs),
    )


def with_groups(frame: pd.DataFrame, students: pd.DataFrame) -> pd.DataFrame:
    """Attach the fairness-audit attributes (never features) from the students table."""
    cols = ["student_id"] + [g for g in FAIRNESS_GROUPS if g in students.columns]
    return frame.merge(students.loc[:, cols], on="student_id", how="left")
