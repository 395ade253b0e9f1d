"""Reading exports from real files: valid ones load typed, bad ones name every problem."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sources import load_export, read_export, write_export
from features.tables import ALL_TABLES, COLUMNS, RawTables
from features.validation import InputTableError, Violation
from tests.features.export_factory import build_tables, write_valid_export

EXPECTED_DTYPES = {
    "schools": ["str", "str", "str", "str", "str", "bool"],
    "calendar": ["str", "datetime64[ns]"],
    "students": ["str", "str", "datetime64[ns]", *["bool"] * 6, "str", "bool", "str", "bool"]
    + ["bool", "str"],
    "enrolments": ["str", "int64", "str", "str", "int64", "datetime64[ns]", "datetime64[ns]"]
    + ["str"],
    "attendance": ["str", "datetime64[ns]", "str"],
    "grades": ["str", "int64", "int64", "str", "str", "float64", "float64", "datetime64[ns]"],
    "status_events": ["str", "datetime64[ns]", "str", "str"],
    "interventions": ["str", "datetime64[ns]", "str", "str", "str"],
    "student_attributes": ["str", "str", "float64"],
}


def _dtypes(frame: pd.DataFrame) -> list[str]:
    return [str(d) for d in frame.dtypes]


# ------------------------------------------------------------------------ valid input


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_valid_export_loads_with_contract_dtypes(tmp_path: Path, fmt: str) -> None:
    export = write_valid_export(tmp_path / "export", fmt)  # type: ignore[arg-type]

    loaded = load_export(export)

    assert loaded.warnings == []
    assert set(loaded.files) == set(ALL_TABLES)
    assert loaded.files["attendance"].name == f"attendance.{fmt}"
    expected = build_tables()
    for name in ALL_TABLES:
        frame = getattr(loaded.tables, name)
        assert list(frame.columns) == list(COLUMNS[name]), name
        assert _dtypes(frame) == EXPECTED_DTYPES[name], name
        assert len(frame) == len(getattr(expected, name)), name
    assert loaded.tables.schools["name"].tolist() == ["石桥小学", "石桥初级中学"]
    names = loaded.tables.students["name"]
    assert names.tolist()[:2] == ["王浩然", "李欣怡"]
    assert names.isna().tolist() == [False] * 19 + [True]  # S020 has no name
    assert names.iloc[18] == "阿卜杜热合曼·买买提明"
    class_names = loaded.tables.enrolments["class_name"]
    assert class_names.iloc[0] == "五年级(1)班" and class_names.isna().sum() == 10
    assert loaded.tables.grades["score"].isna().sum() == 1  # the missed exam stays missing
    pd.testing.assert_frame_equal(
        loaded.tables.attendance, expected.attendance, check_dtype=False, check_index_type=False
    )


def test_read_export_returns_the_tables(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    assert isinstance(read_export(export), RawTables)


def test_absent_optional_tables_and_columns_get_defaults(tmp_path: Path) -> None:
    tables = build_tables()
    tables = tables.replace(
        interventions=tables.interventions.iloc[:0],
        student_attributes=tables.student_attributes.iloc[:0],
        students=tables.students.drop(columns=["ethnic_minority", "name"]),
        enrolments=tables.enrolments.drop(columns=["start_date", "end_date", "class_name"]),
    )
    export = write_export(tables, tmp_path / "export")
    assert not (export / "interventions.csv").exists()

    loaded = load_export(export).tables

    assert loaded.interventions.empty
    assert _dtypes(loaded.interventions) == EXPECTED_DTYPES["interventions"]
    assert _dtypes(loaded.student_attributes) == EXPECTED_DTYPES["student_attributes"]
    assert loaded.students["ethnic_minority"].isna().all()
    assert loaded.students["name"].isna().all() and loaded.enrolments["class_name"].isna().all()
    assert _dtypes(loaded.students) == EXPECTED_DTYPES["students"][:-2] + ["boolean", "str"]
    assert _dtypes(loaded.enrolments) == EXPECTED_DTYPES["enrolments"]
    assert (loaded.enrolments["start_date"] == pd.Timestamp("2024-08-01")).all()
    assert (loaded.enrolments["end_date"] == pd.Timestamp("2025-07-31")).all()


def test_empty_enrolment_dates_get_defaults_per_row(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    _edit_csv(export / "enrolments.csv", lambda f: _set(f, 0, "start_date", ""))
    enrolments = load_export(export).tables.enrolments
    assert enrolments.loc[0, "start_date"] == pd.Timestamp("2024-08-01")


def test_header_only_event_tables_are_fine(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    for name in ("attendance", "grades", "status_events"):
        (export / f"{name}.csv").write_text(",".join(COLUMNS[name]) + "\n", encoding="utf-8")
    loaded = load_export(export).tables
    assert loaded.attendance.empty and _dtypes(loaded.attendance) == EXPECTED_DTYPES["attendance"]


def test_bom_file_reads_without_warning(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    path = export / "schools.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    loaded = load_export(export)
    assert loaded.warnings == []
    assert loaded.tables.schools["school_id"].tolist() == ["P01", "J01"]


def test_gbk_file_reads_with_a_warning(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    path = export / "schools.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    loaded = load_export(export)
    assert loaded.tables.schools["township"].tolist() == ["石桥镇", "石桥镇"]
    assert len(loaded.warnings) == 1 and "schools.csv" in loaded.warnings[0]
    assert "GBK" in loaded.warnings[0]


def test_extra_columns_are_dropped_with_a_warning(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    _edit_csv(export / "students.csv", lambda f: f.assign(姓名="x", note=""))
    loaded = load_export(export)
    assert "note" not in loaded.tables.students.columns
    assert loaded.warnings == ["students.csv: ignored extra column(s) 姓名, note"]


def test_boolean_spellings(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    spellings = ["TRUE", "false", "1", "0", "True", "FALSE"]
    _edit_csv(export / "schools.csv", lambda f: f.assign(rural=spellings[: len(f)]))
    assert load_export(export).tables.schools["rural"].tolist() == [True, False]


def test_grade_level_outside_school_level_is_a_warning(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    _edit_csv(export / "enrolments.csv", lambda f: _set(f, 0, "grade_level", "8"))
    loaded = load_export(export)
    assert len(loaded.warnings) == 1
    assert "enrolments.csv" in loaded.warnings[0] and "row(s) 2" in loaded.warnings[0]


# -------------------------------------------------------------------------- bad input


def _edit_csv(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame).to_csv(path, index=False)


def _set(frame: pd.DataFrame, index: int, column: str, value: str) -> pd.DataFrame:
    frame.loc[index, column] = value
    return frame


def _cell(table: str, index: int, column: str, value: str) -> Callable[[Path], None]:
    return lambda d: _edit_csv(d / f"{table}.csv", lambda f: _set(f, index, column, value))


def _duplicate_row(table: str, index: int) -> Callable[[Path], None]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([frame, frame.iloc[[index]]], ignore_index=True)

    return lambda d: _edit_csv(d / f"{table}.csv", edit)


def _drop_column(table: str, column: str) -> Callable[[Path], None]:
    return lambda d: _edit_csv(d / f"{table}.csv", lambda f: f.drop(columns=column))


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _replace_with(name: str, data: bytes) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        (d / name).with_suffix(".csv").unlink()
        (d / name).write_bytes(data)

    return corrupt


def _also_parquet(table: str) -> Callable[[Path], None]:
    def corrupt(d: Path) -> None:
        pd.read_csv(d / f"{table}.csv", dtype=str).to_parquet(d / f"{table}.parquet")

    return corrupt


def _header_only(table: str) -> Callable[[Path], None]:
    return _write(f"{table}.csv", (",".join(COLUMNS[table]) + "\n").encode())


@dataclass(frozen=True)
class Case:
    corrupt: Callable[[Path], None]
    rule: str
    file: str
    row: int | None
    column: str | None


# The first attendance row is S002 on 2024-09-05 (a Thursday); 2024-09-07 is a Saturday.
CASES: dict[str, Case] = {
    "unknown status": Case(
        _cell("attendance", 0, "status", "absnt"), "unknown_value", "attendance.csv", 2, "status"
    ),
    "date that is not a date": Case(
        _cell("attendance", 2, "date", "2024-13-01"), "bad_date", "attendance.csv", 4, "date"
    ),
    "attendance student not in students": Case(
        _cell("attendance", 1, "student_id", "S999"),
        "foreign_key",
        "attendance.csv",
        3,
        "student_id",
    ),
    "enrolment school not in schools": Case(
        _cell("enrolments", 3, "school_id", "X01"), "foreign_key", "enrolments.csv", 5, "school_id"
    ),
    "attendance on a non-school day": Case(
        _cell("attendance", 0, "date", "2024-09-07"), "not_school_day", "attendance.csv", 2, "date"
    ),
    "attendance on another school's day only": Case(
        _cell("attendance", 0, "date", "2025-09-01"), "not_enrolled", "attendance.csv", 2, "date"
    ),
    "score above max_score": Case(
        _cell("grades", 3, "score", "150"), "score_above_max", "grades.csv", 5, "score"
    ),
    "negative score": Case(
        _cell("grades", 3, "score", "-1"), "out_of_range", "grades.csv", 5, "score"
    ),
    "score not a number": Case(
        _cell("grades", 4, "score", "sixty"), "bad_number", "grades.csv", 6, "score"
    ),
    "grade_level out of range": Case(
        _cell("enrolments", 0, "grade_level", "12"),
        "out_of_range",
        "enrolments.csv",
        2,
        "grade_level",
    ),
    "school year not plausible": Case(
        _cell("grades", 0, "school_year", "24"), "out_of_range", "grades.csv", 2, "school_year"
    ),
    "term not 1 or 2": Case(
        _cell("grades", 0, "term", "3"), "unknown_value", "grades.csv", 2, "term"
    ),
    "empty required cell": Case(
        _cell("students", 5, "sex", ""), "missing_value", "students.csv", 7, "sex"
    ),
    "bad boolean": Case(
        _cell("students", 2, "dibao", "yes"), "bad_boolean", "students.csv", 4, "dibao"
    ),
    "duplicate student": Case(
        _duplicate_row("students", 4), "duplicate_key", "students.csv", 22, "student_id"
    ),
    "duplicate attendance key": Case(
        _duplicate_row("attendance", 0), "duplicate_key", "attendance.csv", 32, "student_id, date"
    ),
    "duplicate calendar day": Case(
        _duplicate_row("calendar", 3), "duplicate_key", "calendar.csv", 80, "school_id, date"
    ),
    "enrolment starts after it ends": Case(
        _cell("enrolments", 1, "start_date", "2025-08-01"),
        "start_after_end",
        "enrolments.csv",
        3,
        "start_date",
    ),
    "missing required column": Case(
        _drop_column("attendance", "status"), "missing_column", "attendance.csv", None, "status"
    ),
    "missing file": Case(
        lambda d: (d / "grades.csv").unlink(), "missing_file", "grades.csv", None, None
    ),
    "empty file": Case(_write("calendar.csv", b""), "empty_file", "calendar.csv", None, None),
    "header-only schools": Case(_header_only("schools"), "no_rows", "schools.csv", None, None),
    "not UTF-8 or GBK": Case(
        _write("students.csv", b"student_id,sex\n\xff\xfe\xff\x80\n"),
        "encoding",
        "students.csv",
        None,
        None,
    ),
    "both csv and parquet": Case(
        _also_parquet("schools"), "both_formats", "schools.csv", None, None
    ),
    "unreadable parquet": Case(
        _replace_with("student_attributes.parquet", b"PAR1 this is not parquet"),
        "bad_parquet",
        "student_attributes.parquet",
        None,
        None,
    ),
    "ragged csv row": Case(
        lambda d: (d / "schools.csv").write_text(
            "school_id,name,county,township,level,rural\nP01,a,b,c,primary,true,extra\n"
        ),
        "bad_csv",
        "schools.csv",
        2,
        None,
    ),
    "unknown attribute student": Case(
        _cell("student_attributes", 0, "student_id", "S404"),
        "foreign_key",
        "student_attributes.csv",
        2,
        "student_id",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_names_rule_file_row_and_column(tmp_path: Path, case: Case) -> None:
    export = write_valid_export(tmp_path / "export")
    case.corrupt(export)

    with pytest.raises(InputTableError) as caught:
        load_export(export)

    found = [(v.rule, v.file, v.row, v.column) for v in caught.value.violations]
    assert (case.rule, case.file, case.row, case.column) in found, found
    assert all(isinstance(v, Violation) and v.expected for v in caught.value.violations)
    assert "Traceback" not in caught.value.report()


def test_every_file_is_checked_before_raising(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    for name in ("unknown status", "missing file", "bad boolean", "empty file"):
        CASES[name].corrupt(export)
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    assert caught.value.counts() == {
        "unknown_value": 1,
        "missing_file": 1,
        "bad_boolean": 1,
        "empty_file": 1,
    }


def test_unknown_student_is_not_also_reported_as_not_enrolled(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    CASES["attendance student not in students"].corrupt(export)
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    assert caught.value.counts() == {"foreign_key": 1}


def test_overlapping_enrolments(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")

    def add_second_year(frame: pd.DataFrame) -> pd.DataFrame:
        extra = frame.iloc[[0]].assign(school_year="2025", start_date="2025-07-01", end_date="")
        return pd.concat([frame, extra], ignore_index=True)

    _edit_csv(export / "enrolments.csv", add_second_year)
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    [violation] = caught.value.violations
    assert (violation.rule, violation.row, violation.column) == (
        "overlapping_enrolment",
        22,
        "start_date",
    )


def test_parquet_rows_are_numbered_like_a_spreadsheet(tmp_path: Path) -> None:
    tables = build_tables()
    attendance = tables.attendance.copy()
    attendance.loc[4, "status"] = "sick"
    export = write_export(tables.replace(attendance=attendance), tmp_path / "export", "parquet")
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    [violation] = caught.value.violations
    assert (violation.rule, violation.file, violation.row, violation.column, violation.value) == (
        "unknown_value",
        "attendance.parquet",
        6,
        "status",
        "sick",
    )


def test_blank_lines_keep_row_numbers(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    path = export / "attendance.csv"
    lines = path.read_text().splitlines()
    lines.insert(2, "")  # a blank line between data rows 2 and 3
    lines[4] = lines[4].rsplit(",", 1)[0] + ",absnt"  # spreadsheet row 5
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    assert [(v.rule, v.row) for v in caught.value.violations] == [("unknown_value", 5)]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputTableError) as caught:
        load_export(tmp_path / "nowhere")
    assert caught.value.violations[0].rule == "missing_folder"


# ------------------------------------------------------------------------ performance


def _large_export(out_dir: Path, n_students: int, days_per_student: int) -> Path:
    """A valid export with n_students x days_per_student attendance rows."""
    base = build_tables()
    ids = np.array([f"X{i:06d}" for i in range(n_students)])
    school = np.where(np.arange(n_students) % 2 == 0, "P01", "J01")
    days = pd.bdate_range("2024-09-02", "2025-07-10")
    calendar = pd.DataFrame(
        {"school_id": np.repeat(["P01", "J01"], len(days)), "date": np.tile(days.values, 2)}
    )
    students = base.students.sample(n_students, replace=True, random_state=1)
    students = students.assign(student_id=ids).reset_index(drop=True)
    enrolments = pd.DataFrame(
        {
            "student_id": ids,
            "school_year": 2024,
            "school_id": school,
            "class_id": "c1",
            "grade_level": np.where(school == "P01", 3, 8),
        }
    )
    step = len(days) // days_per_student
    attendance = pd.DataFrame(
        {
            "student_id": np.repeat(ids, days_per_student),
            "date": np.tile(days.values[::step][:days_per_student], n_students),
            "status": "absent_unexcused",
        }
    )
    tables = base.replace(
        calendar=calendar,
        students=students,
        enrolments=enrolments,
        attendance=attendance,
        grades=base.grades.iloc[:0],
        status_events=base.status_events.iloc[:0],
        interventions=base.interventions.iloc[:0],
        student_attributes=base.student_attributes.iloc[:0],
    )
    return write_export(tables, out_dir)


@pytest.mark.slow
def test_half_a_million_attendance_rows_load_in_seconds(tmp_path: Path) -> None:
    export = _large_export(tmp_path / "export", n_students=5_000, days_per_student=100)
    started = time.perf_counter()
    tables = load_export(export).tables
    elapsed = time.perf_counter() - started
    assert len(tables.attendance) == 500_000
    assert elapsed < 10, f"load_export took {elapsed:.1f} s"


def test_a_hundred_thousand_attendance_rows_load_quickly(tmp_path: Path) -> None:
    export = _large_export(tmp_path / "export", n_students=1_000, days_per_student=100)
    started = time.perf_counter()
    tables = load_export(export).tables
    elapsed = time.perf_counter() - started
    assert len(tables.attendance) == 100_000
    assert elapsed < 5, f"load_export took {elapsed:.1f} s"
