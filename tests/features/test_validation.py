"""Validation rules, the error report, and robustness against arbitrary corruption."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pytest
from hypothesis import HealthCheck, given, settings

from features.schemas import KEYS, schema
from features.sources import load_export
from features.tables import COLUMNS, OPTIONAL_COLUMNS, REQUIRED_TABLES
from features.validation import (
    InputTableError,
    Violation,
    mask_finding,
    passes_schema,
    to_error,
    typed,
    validate_tables,
)
from tests.features.export_factory import build_tables, write_valid_export

# ------------------------------------------------------------------------------ report


def _violations(rule: str, n: int, file: str = "attendance.csv") -> list[Violation]:
    return [
        Violation(rule, file, i + 2, "status", "absnt", "one of: present, late") for i in range(n)
    ]


def test_report_lists_first_twenty_per_rule_then_counts_the_rest() -> None:
    error = InputTableError(
        _violations("unknown_value", 25) + _violations("missing_file", 1, "grades.csv")
    )

    lines = error.report().splitlines()

    assert lines[0].startswith("The export breaks the data contract in 26 places (2 files:")
    assert "Traceback" not in error.report()
    start = lines.index("unknown_value: value not in the allowed list (25)")
    shown = lines[start + 1 : start + 21]
    assert shown[0] == (
        "  attendance.csv, row 2, column status: found 'absnt'; expected one of: present, late"
    )
    assert all(line.startswith("  attendance.csv, row ") for line in shown)
    assert lines[start + 21] == "  ... and 5 more"
    assert "missing_file: required file missing (1)" in lines
    assert "... and 0 more" not in error.report()


def test_report_per_rule_limit_is_adjustable() -> None:
    error = InputTableError(_violations("bad_date", 10))
    assert "  ... and 7 more" in error.report(per_rule=3).splitlines()


def test_counted_but_unlisted_violations_appear_in_totals() -> None:
    frame = pd.DataFrame({"status": ["x"] * 1_000})
    finding = mask_finding(
        "unknown_value", "attendance.csv", "status", frame["status"] == "x", frame["status"], "?"
    )
    assert finding is not None
    error = to_error([finding], limit=100)
    assert len(error.violations) == 100
    assert error.total == 1_000
    assert "  ... and 980 more" in error.report()
    assert [v.row for v in error.violations[:3]] == [2, 3, 4]


def test_long_values_are_truncated() -> None:
    frame = pd.DataFrame({"status": ["x" * 100]})
    finding = mask_finding(
        "unknown_value", "a.csv", "status", frame["status"] != "", frame["status"], "?"
    )
    assert finding is not None
    [violation] = finding.violations(10)
    assert violation.value is not None and len(violation.value) <= 40


# ------------------------------------------------------------------ in-memory tables


def test_valid_tables_in_memory_pass() -> None:
    assert validate_tables(build_tables()) == []


def test_in_memory_coercion_failures_map_to_rows() -> None:
    tables = build_tables()
    attendance = tables.attendance.astype({"date": "str"})
    attendance.loc[3, "date"] = "not a date"
    grades = tables.grades.astype({"term": "str"})
    grades.loc[0, "term"] = "first"

    with pytest.raises(InputTableError) as caught:
        validate_tables(tables.replace(attendance=attendance, grades=grades))

    found = {(v.rule, v.file, v.row, v.column, v.value) for v in caught.value.violations}
    assert ("bad_date", "attendance.csv", 5, "date", "not a date") in found
    assert ("bad_number", "grades.csv", 2, "term", "first") in found


def test_in_memory_cross_table_checks() -> None:
    tables = build_tables()
    grades = tables.grades.copy()
    grades.loc[[2, 7], "score"] = 101.0
    with pytest.raises(InputTableError) as caught:
        validate_tables(tables.replace(grades=grades))
    assert [(v.rule, v.row) for v in caught.value.violations] == [
        ("score_above_max", 4),
        ("score_above_max", 9),
    ]
    assert caught.value.violations[0].value == "101 (max_score 100)"


# ------------------------------------------------------------------ property: never crash

_FREE_TEXT = {"name", "county", "township", "class_id", "subject", "attribute"}
_CORRUPTIBLE = {
    name: [
        c for c in COLUMNS[name] if c not in _FREE_TEXT and c not in OPTIONAL_COLUMNS.get(name, ())
    ]
    for name in REQUIRED_TABLES
}
_VALID = build_tables()
_TEMPLATE = Path(tempfile.mkdtemp(prefix="baoxue-valid-")) / "export"
write_valid_export(_TEMPLATE)

# Cells that no typed, coded or id column accepts: "#" never starts an id in the factory.
junk_cells = st.one_of(
    st.sampled_from(["#", "#junk", "#2024-02-30", "#-1", "#nan", "#true"]),
    st.text(min_size=1, max_size=12).map(lambda t: "#" + t),
)


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[str, str, int, str, str]:
    kind = draw(st.sampled_from(["cell", "drop_column", "duplicate_key"]))
    if kind == "duplicate_key":
        name = draw(st.sampled_from([n for n in REQUIRED_TABLES if n in KEYS]))
    else:
        name = draw(st.sampled_from(REQUIRED_TABLES))
    n_rows = len(getattr(_VALID, name))
    row = draw(st.integers(0, n_rows - 1))
    column = draw(st.sampled_from(_CORRUPTIBLE[name]))
    junk = draw(junk_cells)
    return kind, name, row, column, junk


def _corrupt(export: Path, kind: str, name: str, row: int, column: str, junk: str) -> None:
    path = export / f"{name}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if kind == "cell":
        frame.loc[row, column] = junk
    elif kind == "drop_column":
        frame = frame.drop(columns=column)
    else:
        frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
    frame.to_csv(path, index=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corruptions())
def test_any_corruption_is_reported_never_crashes(
    corruption: tuple[str, str, int, str, str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        shutil.copytree(_TEMPLATE, export)
        _corrupt(export, *corruption)
        with pytest.raises(InputTableError) as caught:
            load_export(export)
    error = caught.value
    assert error.total >= 1 and error.violations
    kind, name, row, column, _ = corruption
    files = {v.file for v in error.violations}
    if kind != "cell" or column not in ("student_id", "school_id"):
        assert f"{name}.csv" in files  # the broken file itself is named
    if kind == "cell" and column not in ("student_id", "school_id", "date"):
        assert any(v.row == row + 2 and v.column == column for v in error.violations)
    assert error.report()


def test_many_bad_cells_are_counted_not_materialised(tmp_path: Path) -> None:
    export = write_valid_export(tmp_path / "export")
    rows = 5_000
    pd.DataFrame({"student_id": "S002", "date": "2024-09-05", "status": np.full(rows, "?")}).to_csv(
        export / "attendance.csv", index=False
    )
    with pytest.raises(InputTableError) as caught:
        load_export(export)
    counts = caught.value.counts()
    assert counts["unknown_value"] == rows
    assert counts["duplicate_key"] == rows - 1
    assert len(caught.value.violations) <= 200
    assert "  ... and 4,980 more" in caught.value.report()


# ------------------------------------------------------- the cheap pre-check vs pandera


def _pandera_passes(name: str, frame: pd.DataFrame) -> bool:
    try:
        schema(name).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors:
        return False
    return True


def _typed_tables() -> dict[str, pd.DataFrame]:
    tables = build_tables()
    out = {}
    for name in REQUIRED_TABLES:
        frame = getattr(tables, name)
        if name == "students" and frame["ethnic_minority"].isna().any():
            frame = frame.assign(ethnic_minority=frame["ethnic_minority"].fillna(False))
        out[name] = typed(name, frame[list(COLUMNS[name])])
    return out


def test_clean_tables_pass_the_pre_check_so_pandera_is_not_run() -> None:
    for name, frame in _typed_tables().items():
        assert _pandera_passes(name, frame), name
        assert passes_schema(schema(name), frame), name


def _broken(name: str, frame: pd.DataFrame, how: str, column: str) -> pd.DataFrame | None:
    out = frame.copy()
    dtype = str(out[column].dtype)
    if how == "missing":
        out[column] = out[column].astype(object)
        out.loc[out.index[0], column] = None
    elif how == "object":
        out[column] = out[column].astype(object)
    elif how == "low" and dtype in ("int64", "float64"):
        out.loc[out.index[0], column] = -5
    elif how == "high" and dtype in ("int64", "float64"):
        out.loc[out.index[-1], column] = 10**6
    elif how == "code" and dtype == "str":
        out.loc[out.index[0], column] = "#junk"
    elif how == "duplicate":
        out = pd.concat([out, out.iloc[[0]]], ignore_index=True)
    elif how == "extra":
        out["extra"] = 1
    elif how == "long" and dtype == "str":
        out.loc[out.index[0], column] = "长" * 200
    elif how == "control" and dtype == "str":
        out.loc[out.index[-1], column] = "王\n明"
    else:
        return None
    return out


@pytest.mark.parametrize(
    "how", ["missing", "object", "low", "high", "code", "duplicate", "extra", "long", "control"]
)
def test_the_pre_check_never_passes_a_frame_pandera_rejects(how: str) -> None:
    rejected = 0
    for name, frame in _typed_tables().items():
        for column in frame.columns:
            broken = _broken(name, frame, how, column)
            if broken is None:
                continue
            if not _pandera_passes(name, broken):
                rejected += 1
                assert not passes_schema(schema(name), broken), (name, column, how)
            elif how == "object":  # pandera coerces it; the pre-check leaves that to pandera
                assert not passes_schema(schema(name), broken), (name, column, how)
    assert rejected > 0 or how == "object"


def test_the_schemas_are_built_once_and_validation_never_imports_dask() -> None:
    # DataFrameModel.to_schema imported dask.dataframe through pandera's typing modules:
    # about a second on the service's first POST /v1/score. A fresh interpreter shows it.
    import subprocess
    import sys

    assert schema("grades") is schema("grades")
    code = (
        "import sys\n"
        "from tests.features.export_factory import build_tables\n"
        "from features.validation import validate_tables\n"
        "assert validate_tables(build_tables()) == []\n"
        "print('dask' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


# ------------------------------------------------------------ names and class names

# Pieces of the bad names below: none may appear in a report or a log line.
_BAD_NAMES = {
    2: ("王" * 30 + "浩然" * 20, "too_long"),  # row 2: 70 characters
    3: ("李\t欣怡", "control_character"),  # a tab inside the cell
    4: ("张子\u202e轩", "control_character"),  # a right-to-left override
}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_bad_names_are_reported_by_row_without_the_name(
    tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    tables = build_tables()
    students = tables.students.copy()
    for row, (name, _) in _BAD_NAMES.items():
        students.loc[row - 2, "name"] = name
    enrolments = tables.enrolments.copy()
    enrolments.loc[19, "class_name"] = "八年级\x00(2)班"
    enrolments.loc[18, "class_name"] = "八年级(2)班" * 10
    from features.sources import write_export

    export = write_export(
        tables.replace(students=students, enrolments=enrolments),
        tmp_path / "export",
        fmt,  # type: ignore[arg-type]
    )

    with caplog.at_level("DEBUG"), pytest.raises(InputTableError) as caught:
        load_export(export)

    error = caught.value
    students_file, enrolments_file = f"students.{fmt}", f"enrolments.{fmt}"
    found = {(v.rule, v.file, v.row, v.column, v.value) for v in error.violations}
    assert found == {
        ("too_long", students_file, 2, "name", None),
        ("control_character", students_file, 3, "name", None),
        ("control_character", students_file, 4, "name", None),
        ("too_long", enrolments_file, 20, "class_name", ("八年级(2)班" * 10)[:39] + "…"),
        ("control_character", enrolments_file, 21, "class_name", "八年级\x00(2)班"),
    }
    by_row = {v.row: v.expected for v in error.violations if v.file == students_file}
    assert by_row[2] == (
        "text of at most 64 characters; the cell is not shown (names are personal data)"
    )
    assert by_row[3].startswith("text without control characters")
    report = error.report()
    assert "too_long: text too long (2)" in report
    assert "control_character: text with a control character (3)" in report
    shown = report + str(error) + "\n".join(r.getMessage() for r in caplog.records)
    for piece in ("王王", "浩然", "欣怡", "张子", "\u202e"):
        assert piece not in shown, piece


def test_names_and_class_names_may_be_empty_or_absent() -> None:
    tables = build_tables()
    assert tables.students["name"].isna().sum() == 1  # S020 has no name
    no_names = tables.replace(
        students=tables.students.drop(columns="name"),
        enrolments=tables.enrolments.drop(columns="class_name"),
    )
    assert validate_tables(no_names) == []
    unnamed = tables.students.assign(name=pd.Series(None, index=tables.students.index, dtype="str"))
    assert validate_tables(tables.replace(students=unnamed)) == []
