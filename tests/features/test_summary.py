"""The one-screen summary of a validated export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.sources import load_export
from features.summary import format_summary, school_year_of, summarize
from tests.features.export_factory import build_tables, write_valid_export


def test_summary_counts_what_a_person_checks(tmp_path: Path) -> None:
    tables = load_export(write_valid_export(tmp_path / "export")).tables

    summary = summarize(tables)

    assert summary.rows["students"] == 20
    assert summary.rows["attendance"] == len(build_tables().attendance)
    assert summary.first_day == pd.Timestamp("2024-09-02")
    assert summary.last_day == pd.Timestamp("2024-10-31")
    assert summary.schools_by_level == {"primary": 1, "junior": 1, "nine_year": 0}
    assert summary.students_by_year_grade.loc[2024].to_dict() == {5: 5, 6: 5, 7: 5, 8: 5}
    assert summary.dropouts_by_school_year == {2024: 1}


def test_formatted_summary_fits_one_screen() -> None:
    text = format_summary(summarize(build_tables()))
    lines = text.splitlines()
    assert len(lines) <= 30 and max(len(line) for line in lines) <= 100
    assert "Calendar: 2024-09-02 .. 2024-10-31 (39 distinct school days)" in lines
    assert "Schools: 2 (primary 1, junior 1, nine_year 0)" in lines
    assert "  2024       5      5      5      5" in lines
    assert "Dropout events by school year (Aug-Jul): 2024-25: 1" in lines


def test_school_year_starts_in_august() -> None:
    dates = pd.Series(pd.to_datetime(["2024-07-31", "2024-08-01", "2025-01-15"]))
    assert school_year_of(dates).tolist() == [2023, 2024, 2024]


def test_summary_of_an_export_without_dropouts() -> None:
    tables = build_tables()
    events = tables.status_events[tables.status_events["event"] != "dropout"]
    text = format_summary(summarize(tables.replace(status_events=events)))
    assert "Dropout events by school year (Aug-Jul): none" in text
