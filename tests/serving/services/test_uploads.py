"""A school's upload replaces its part of the data folder, or changes nothing.

Real files in `tmp_path`: the pages' two-school export (SCH-A and SCH-B), CSV and XLSX
uploads, and `features.sources.load_export` (what `baoxue validate` and the weekly run
read) on the folder afterwards.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from features.sources import load_export
from serving.services.uploads import UploadedFile, apply_upload, grouped, table_of
from tests.serving.pages.conftest import write_export

LIMIT = 5_000_000


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_export(tmp_path / "data")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def csv(rows: list[str], header: str = "student_id,date,status") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def attendance(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "attendance.csv", dtype=str)


def test_file_names_map_to_tables():
    assert table_of("Attendance.XLSX") == "attendance"
    assert table_of(r"C:\\exports\\grades.csv") == "grades"
    assert table_of("attendance.parquet") is None and table_of("notes.txt") is None


def test_a_good_upload_replaces_only_the_schools_rows(data):
    before = attendance(data)
    b_rows = before[before["student_id"].str.startswith("STU-B")]
    upload = csv(["STU-A03,2024-03-04,late", "STU-A05,2024-03-05,absent_unexcused"])
    result = apply_upload(data, "SCH-A", [UploadedFile("attendance.csv", upload)], max_bytes=LIMIT)
    assert result.accepted and result.error is None
    assert result.tables == {"attendance": 2}
    after = attendance(data)
    assert sorted(after["student_id"]) == sorted([*b_rows["student_id"], "STU-A03", "STU-A05"])
    # the other school's rows are the same, in the same order
    assert after.iloc[: len(b_rows)].reset_index(drop=True).equals(b_rows.reset_index(drop=True))
    loaded = load_export(data)  # the next weekly run reads it
    assert len(loaded.tables.attendance) == len(b_rows) + 2
    assert not [p for p in data.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_bad_upload_changes_no_byte_and_names_file_row_and_column(data):
    before = snapshot(data)
    upload = csv(
        [
            "STU-A03,2024-03-04,late",
            "STU-A03,2024-03-09,late",  # a Saturday: not a school day
            "STU-A04,2024-03-05,sick",  # not a status
            "STU-A05,05/03/2024,late",  # not a date
        ]
    )
    result = apply_upload(data, "SCH-A", [UploadedFile("attendance.csv", upload)], max_bytes=LIMIT)
    assert not result.accepted and snapshot(data) == before
    found = {(v.rule, v.file, v.row, v.column) for v in result.error.violations}
    assert found == {
        ("not_school_day", "attendance.csv", 3, "date"),
        ("unknown_value", "attendance.csv", 4, "status"),
        ("bad_date", "attendance.csv", 5, "date"),
    }
    rules = [rule for rule, _count, _listed in grouped(result.error)]
    assert rules == ["bad_date", "unknown_value", "not_school_day"]


def test_rows_of_another_school_are_refused(data):
    before = snapshot(data)
    upload = csv(["STU-A03,2024-03-04,late", "STU-B02,2024-03-04,late"])
    result = apply_upload(data, "SCH-A", [UploadedFile("attendance.csv", upload)], max_bytes=LIMIT)
    assert not result.accepted and snapshot(data) == before
    [v] = result.error.violations
    assert (v.rule, v.file, v.row, v.column) == ("other_school", "attendance.csv", 3, "student_id")
    schools = apply_upload(
        data,
        "SCH-A",
        [UploadedFile("calendar.csv", csv(["SCH-B,2024-03-04"], "school_id,date"))],
        max_bytes=LIMIT,
    )
    first, *rest = schools.error.violations
    assert (first.rule, first.row, first.column) == ("other_school", 2, "school_id")
    # the rest of the upload is still checked: without its own days, SCH-A has no school day
    assert {v.rule for v in rest} == {"not_school_day"}
    assert {v.file for v in rest} == {"attendance.csv (data folder)"}
    assert snapshot(data) == before


def test_an_xlsx_upload_is_read_like_a_csv(data):
    book = Workbook()
    sheet = book.active
    sheet.append(
        ["student_id", "school_year", "term", "exam", "subject", "score", "max_score", "date"]
    )
    sheet.append(["STU-A01", 2023, 2, "monthly", "math", 30, 120, dt.datetime(2024, 3, 1)])
    sheet.append(["STU-A01", 2023, 2, "monthly", "chinese", None, 100, dt.date(2024, 3, 1)])
    buffer = io.BytesIO()
    book.save(buffer)
    result = apply_upload(
        data, "SCH-A", [UploadedFile("grades.xlsx", buffer.getvalue())], max_bytes=LIMIT
    )
    assert result.accepted, result.error
    grades = load_export(data).tables.grades
    mine = grades[grades["student_id"].str.startswith("STU-A")]
    assert len(mine) == 2 and mine["score"].isna().sum() == 1
    assert set(mine["date"].dt.date) == {dt.date(2024, 3, 1)}
    assert len(grades[grades["student_id"].str.startswith("STU-B")]) == 18  # untouched


def test_garbage_files_get_a_message_not_a_traceback(data):
    before = snapshot(data)
    junk = bytes(range(256)) * 20

    def violations(*files: UploadedFile, limit: int = LIMIT):
        result = apply_upload(data, "SCH-A", list(files), max_bytes=limit)
        assert not result.accepted
        return [(v.rule, v.file) for v in result.error.violations]

    assert violations(UploadedFile("grades.xlsx", junk)) == [("bad_xlsx", "grades.xlsx")]
    assert violations(UploadedFile("grades.csv", b"\xff\xfe\x00garbage\x81\x82")) == [
        ("encoding", "grades.csv")
    ]
    assert violations(UploadedFile("notes.txt", b"hello")) == [("unknown_file", "notes.txt")]
    assert violations(UploadedFile("attendance.csv", junk), limit=100) == [
        ("too_large", "attendance.csv")
    ]
    assert violations(UploadedFile("grades.csv", b"student_id,date\nx,y\n"))[0] == (
        "missing_column",
        "grades.csv",
    )
    assert snapshot(data) == before


def test_a_parquet_table_in_the_folder_stays_parquet(data):
    frame = pd.read_csv(data / "attendance.csv", dtype=str)
    frame["date"] = pd.to_datetime(frame["date"])
    frame.to_parquet(data / "attendance.parquet", index=False)
    (data / "attendance.csv").unlink()
    upload = csv(["STU-A03,2024-03-04,late"])
    result = apply_upload(data, "SCH-A", [UploadedFile("attendance.csv", upload)], max_bytes=LIMIT)
    assert result.accepted, result.error
    assert not (data / "attendance.csv").exists()
    rows = load_export(data).tables.attendance
    assert sorted(rows["student_id"]) == ["STU-A03", "STU-B01"]
    assert set(rows["date"].dt.date) == {dt.date(2024, 3, 4)}


def test_a_new_pupil_comes_with_the_students_and_enrolments_files(data):
    students = pd.read_csv(data / "students.csv", dtype=str, keep_default_na=False)
    enrolments = pd.read_csv(data / "enrolments.csv", dtype=str, keep_default_na=False)
    mine = students[students["student_id"].str.startswith("STU-A")]
    new = mine.iloc[[0]].assign(student_id="STU-A09")
    enrolled = enrolments[enrolments["school_id"] == "SCH-A"]
    moved_in = enrolled.iloc[[0]].assign(student_id="STU-A09")
    files = [
        UploadedFile("students.csv", pd.concat([mine, new]).to_csv(index=False).encode()),
        UploadedFile(
            "enrolments.csv", pd.concat([enrolled, moved_in]).to_csv(index=False).encode()
        ),
    ]
    result = apply_upload(data, "SCH-A", files, max_bytes=LIMIT)
    assert result.accepted, result.error
    assert result.tables == {"students": 9, "enrolments": 9}
    tables = load_export(data).tables
    assert len(tables.students) == 11 and "STU-A09" in set(tables.students["student_id"])
    assert (tables.enrolments["school_id"] == "SCH-B").sum() == 2
