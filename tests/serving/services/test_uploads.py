"""A school's upload replaces its part of the data folder, or changes nothing.

Real files in `tmp_path`: the pages' two-school export (SCH-A and SCH-B), CSV and XLSX
uploads, and `features.sources.load_export` (what `baoxue validate` and the weekly run
read) on the folder afterwards.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from features.sources import load_export
from serving.services.uploads import (
    UploadedFile,
    XlsxLimits,
    apply_upload,
    grouped,
    table_of,
)
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


# -- an upload keeps what it does not know (issue 21 item 2) --------------------------------


def _with_more_columns(data: Path) -> tuple[list[str], list[str]]:
    """Give students.csv and enrolments.csv optional and extra columns, with SCH-B's cells
    written as a school's own export writes them (dates with slashes, 1/0 flags, a quoted
    comma); returns SCH-B's students and enrolments lines as they are in the files."""
    students = (data / "students.csv").read_text().splitlines()
    out = [students[0] + ",ethnic_minority,name,remark"]
    for line in students[1:]:
        if line.startswith("STU-B"):
            line = line.replace("2011-05-01", "2011/05/01").replace(",false,", ",0,", 1)
            out.append(line + ',1,"王, 小明",转入前在外省')
        else:
            out.append(line + ",false,,")
    (data / "students.csv").write_text("\n".join(out) + "\n")
    enrolments = (data / "enrolments.csv").read_text().splitlines()
    rows = [enrolments[0] + ",class_name,homeroom"]
    rows += [r + (",初一(1)班,李老师" if r.startswith("STU-B") else ",,") for r in enrolments[1:]]
    (data / "enrolments.csv").write_text("\n".join(rows) + "\n")
    b_students = [r for r in out if r.startswith("STU-B")]
    return b_students, [r for r in rows if r.startswith("STU-B")]


def test_an_upload_keeps_every_column_and_other_schools_cells_as_they_were(data):
    """Before the fix the two files were rewritten with the contract's columns only:
    `remark`, `homeroom` (and `name`, `class_name` before the contract named them) were
    gone for every school, and SCH-B's dates and flags were re-written."""
    b_students, b_enrolments = _with_more_columns(data)
    students = pd.read_csv(data / "students.csv", dtype=str, keep_default_na=False)
    mine = students[students["student_id"].str.startswith("STU-A")].drop(columns="remark")
    mine = mine.assign(name="张三", hobby="football")  # a column the folder does not have
    enrolments = pd.read_csv(data / "enrolments.csv", dtype=str, keep_default_na=False)
    enrolled = enrolments[enrolments["school_id"] == "SCH-A"].assign(class_name="初一(2)班")
    files = [
        UploadedFile("students.csv", mine.to_csv(index=False).encode()),
        UploadedFile("enrolments.csv", enrolled.to_csv(index=False).encode()),
    ]
    result = apply_upload(data, "SCH-A", files, max_bytes=LIMIT)
    assert result.accepted, result.error
    lines = (data / "students.csv").read_text().splitlines()
    assert lines[0] == (
        "student_id,sex,birth_date,poverty_registered,dibao,tekun,disability,orphan,"
        "single_parent,left_behind,migrant_child,guardian,boarding,ethnic_minority,name,"
        "remark,hobby"
    )
    assert [r for r in lines if r.startswith("STU-B")] == [r + "," for r in b_students]
    after = pd.read_csv(data / "students.csv", dtype=str, keep_default_na=False)
    a = after[after["student_id"].str.startswith("STU-A")]
    assert set(a["hobby"]) == {"football"} and set(a["name"]) == {"张三"}
    assert set(a["remark"]) == {""}  # the school's upload had no remark: its rows have none
    written = (data / "enrolments.csv").read_text().splitlines()
    assert written[0] == "student_id,school_year,school_id,class_id,grade_level,class_name,homeroom"
    assert [r for r in written if r.startswith("STU-B")] == b_enrolments  # byte for byte
    assert all(r.endswith(",初一(2)班,") for r in written if r.startswith("STU-A"))
    assert len(load_export(data).tables.students) == 10  # the weekly run still reads it


def test_a_parquet_folder_keeps_other_schools_rows_typed_as_they_were(data):
    _with_more_columns(data)
    raw = pd.read_csv(data / "students.csv", dtype=str, keep_default_na=False)
    typed = raw.assign(
        birth_date=pd.to_datetime(raw["birth_date"], format="mixed"),
        poverty_registered=raw["poverty_registered"].isin(["true", "1"]),
    )
    typed.to_parquet(data / "students.parquet", index=False)
    (data / "students.csv").unlink()
    mine = raw[raw["student_id"].str.startswith("STU-A")].assign(hobby="chess")
    result = apply_upload(
        data,
        "SCH-A",
        [UploadedFile("students.csv", mine.to_csv(index=False).encode())],
        max_bytes=LIMIT,
    )
    assert result.accepted, result.error
    assert not (data / "students.csv").exists()
    after = pd.read_parquet(data / "students.parquet")
    assert list(after.columns) == [*typed.columns, "hobby"]
    assert after["birth_date"].dtype.kind == "M" and after["poverty_registered"].dtype == bool
    b_before = typed[typed["student_id"].str.startswith("STU-B")].reset_index(drop=True)
    b_after = after[after["student_id"].str.startswith("STU-B")].reset_index(drop=True)
    pd.testing.assert_frame_equal(b_after[typed.columns], b_before, check_dtype=False)
    assert b_after["birth_date"].dtype == b_before["birth_date"].dtype
    assert set(after.loc[after["student_id"].str.startswith("STU-A"), "hobby"]) == {"chess"}
    assert len(load_export(data).tables.students) == 10


# -- the owner of a pupil is decided before the upload (issue 21 item 1) ---------------------


def test_any_table_about_another_schools_pupil_is_refused_and_new_pupils_are_welcome(data):
    before = snapshot(data)
    rows = {
        "student_attributes.csv": csv(["STU-B02,hukou,rural"], "student_id,attribute,value"),
        "status_events.csv": csv(
            ["STU-B02,2024-03-04,transfer_in,SCH-A"], "student_id,date,event,school_id"
        ),
        "grades.csv": csv(
            ["STU-B02,2024,1,midterm,math,80,120,2024-11-15"],
            "student_id,school_year,term,exam,subject,score,max_score,date",
        ),
    }
    for name, body in rows.items():
        result = apply_upload(data, "SCH-A", [UploadedFile(name, body)], max_bytes=LIMIT)
        assert not result.accepted, name
        found = {(v.rule, v.file, v.row, v.column, v.value) for v in result.error.violations}
        assert ("other_school", name, 2, "student_id", "STU-B02") in found, found
    assert snapshot(data) == before


# -- XLSX that unpacks to much more than it weighs (issue 21 item 5) ------------------------


def _xlsx_bomb(rows: int) -> bytes:
    """A real workbook of `rows` attendance rows, written as XML straight into the zip
    (openpyxl would take minutes to write it): 140 bytes a row unpacked, ~0.3 packed."""
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="'
            'application/vnd.openxmlformats-package.relationships+xml"/><Default Extension='
            '"xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
            'main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="'
            'application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
            'officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.'
            'openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.'
            'openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="s" '
            'sheetId="1" r:id="rId1"/></sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="'
            "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"
            '" Target="worksheets/sheet1.xml"/></Relationships>'
        ),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, text in parts.items():
            zf.writestr(name, text)
        with zf.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
                b'openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                b'<row r="1"><c r="A1" t="inlineStr"><is><t>student_id</t></is></c>'
                b'<c r="B1" t="inlineStr"><is><t>date</t></is></c>'
                b'<c r="C1" t="inlineStr"><is><t>status</t></is></c></row>'
            )
            row = (  # no row or cell numbers (they are optional): a bomb compresses best
                b'<row><c t="inlineStr"><is><t>STU-A03</t></is></c>'
                b'<c t="inlineStr"><is><t>2024-03-04</t></is></c>'
                b'<c t="inlineStr"><is><t>late</t></is></c></row>'
            )
            for start in range(0, rows, 10_000):
                sheet.write(row * min(10_000, rows - start))
            sheet.write(b"</sheetData></worksheet>")
    return buffer.getvalue()


def test_an_xlsx_bomb_is_refused_quickly_without_unpacking_it(data):
    """Before the fix a 0.97 MB workbook of a million rows took 146 s and +2.6 GB (and held
    the upload lock); now the zip's directory and a count of its rows refuse it first."""
    import tracemalloc

    before = snapshot(data)
    bomb = _xlsx_bomb(1_000_000)
    assert len(bomb) < 5_000_000  # well under the 50 MB upload limit
    tracemalloc.start()
    started = time.perf_counter()
    result = apply_upload(data, "SCH-A", [UploadedFile("attendance.xlsx", bomb)], max_bytes=LIMIT)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    [v] = result.error.violations
    assert (v.rule, v.file) == ("too_large_unpacked", "attendance.xlsx"), v
    assert "at most 100 MB unpacked" in v.expected or "at most 400,000 rows" in v.expected
    assert seconds < 5 and peak < 50_000_000, (seconds, peak)
    assert snapshot(data) == before


def test_an_xlsx_under_the_size_but_over_the_rows_is_refused_before_parsing(data):
    limits = XlsxLimits(max_rows=50_000, max_unpacked_mb=100, max_seconds=60)
    started = time.perf_counter()
    result = apply_upload(
        data,
        "SCH-A",
        [UploadedFile("attendance.xlsx", _xlsx_bomb(200_000))],
        max_bytes=LIMIT,
        xlsx=limits,
    )
    [v] = result.error.violations
    assert v.rule == "too_many_rows" and "at most 50,000 rows" in v.expected
    assert time.perf_counter() - started < 5


def test_an_xlsx_read_is_bounded_in_time(data):
    limits = XlsxLimits(max_rows=400_000, max_unpacked_mb=100, max_seconds=0.5)
    result = apply_upload(
        data,
        "SCH-A",
        [UploadedFile("attendance.xlsx", _xlsx_bomb(100_000))],
        max_bytes=LIMIT,
        xlsx=limits,
    )
    [v] = result.error.violations
    assert v.rule == "too_slow" and "save it as CSV" in v.expected


def test_a_sheet_whose_row_numbers_jump_is_not_read_as_a_million_empty_rows(data):
    """openpyxl fills the row numbers a sheet skips: one cell in row 1,048,576 would be read
    as a million empty rows; reading stops one row past the limit and refuses."""
    book = Workbook()
    sheet = book.active
    sheet.append(["student_id", "date", "status"])
    sheet.append(["STU-A03", "2024-03-04", "late"])
    sheet.cell(row=1_048_576, column=1, value="STU-A03")
    buffer = io.BytesIO()
    book.save(buffer)
    limits = XlsxLimits(max_rows=1_000, max_unpacked_mb=100, max_seconds=60)
    started = time.perf_counter()
    upload = UploadedFile("attendance.xlsx", buffer.getvalue())
    result = apply_upload(data, "SCH-A", [upload], max_bytes=LIMIT, xlsx=limits)
    assert time.perf_counter() - started < 5
    [v] = result.error.violations
    assert v.rule == "too_many_rows" and "at most 1,000 rows" in v.expected
