"""A school's weekly export files, uploaded on a page, checked and swapped into the data folder.

Plain functions (no HTTP). `apply_upload(data_dir, school_id, files)`:

1. Each file must be named after its table (`attendance.csv`, `grades.xlsx`, ...), be CSV
   or XLSX, and be no bigger than the limit; XLSX cells are read as the text a CSV would
   hold (dates as `YYYY-MM-DD`), so both go through the same reading as `baoxue validate`.
2. The school's part of each uploaded table is what the upload replaces:
   - tables with a `school_id` (schools, calendar, enrolments, status_events): its rows;
   - attendance and interventions: rows on a day the student's enrolment row in force is
     at the school; grades: rows of a school year the student was enrolled at the
     school; students and student_attributes: students whose newest enrolment row is at
     the school. Enrolments are those of the folder after the replacement (and, to drop
     what the school no longer lists, those before it).
   An uploaded row that belongs to another school is an `other_school` violation.
3. The folder as it would be after the replacement (other schools' rows + the uploaded
   rows) is checked with `features.validation.validate_raw`, the same checks as
   `baoxue validate`. Violations in uploaded rows name the uploaded file and its row.
4. Only when nothing is wrong: each replaced table is written complete to a temporary
   file in the data folder, then all are moved into place with `os.replace`. A rejected
   or failed upload changes nothing. The next weekly run reads the new files.

Nothing here logs a student id or a cell value.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import locate_table, read_raw_table
from features.tables import ALL_TABLES, COLUMNS
from features.validation import (
    MAX_LISTED,
    Finding,
    InputTableError,
    Violation,
    check_columns,
    mask_finding,
    parse_table,
    to_error,
    validate_raw,
)

logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".csv", ".xlsx")
SCHOOL_TABLES = ("schools", "calendar", "enrolments", "status_events")
DATED_TABLES = ("attendance", "interventions")
YEAR_TABLES = ("grades",)
STUDENT_TABLES = ("students", "student_attributes")
UPLOAD_RULES = {
    "too_large": "file too large",
    "unknown_file": "file name is not a table of the contract",
    "duplicate_file": "one table uploaded twice",
    "bad_xlsx": "not a readable XLSX workbook",
    "other_school": "row of another school",
}

_lock = threading.Lock()  # one upload at a time replaces files in a data folder


@dataclass(frozen=True)
class UploadedFile:
    """A file as the browser sent it."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class UploadResult:
    """What happened to an upload: accepted (tables replaced) or the error listing why not."""

    school_id: str
    accepted: bool
    tables: dict[str, int] = field(default_factory=dict)  # table -> the school's rows now
    files: tuple[str, ...] = ()
    error: InputTableError | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0


# -- reading uploaded files ----------------------------------------------------------------


def table_of(filename: str) -> str | None:
    """The table a file name stands for (`Attendance.XLSX` -> attendance), else None."""
    path = Path(filename.replace("\\", "/")).name
    stem, suffix = Path(path).stem.strip().lower(), Path(path).suffix.lower()
    return stem if stem in ALL_TABLES and suffix in UPLOAD_SUFFIXES else None


def _xlsx_text(value: object) -> str:
    """A cell as the text a CSV export would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_xlsx(name: str, data: bytes) -> tuple[pd.DataFrame | None, list[Finding]]:
    """The first sheet's cells as text, indexed like `features.sources` reads a CSV."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError):
        return None, [Finding("bad_xlsx", name, None, "an Excel workbook (.xlsx); this is not")]
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        rows = [] if sheet is None else [list(r) for r in sheet.iter_rows(values_only=True)]
    except Exception:  # openpyxl raises many kinds on a damaged sheet
        return None, [Finding("bad_xlsx", name, None, "a readable first sheet")]
    finally:
        book.close()
    if not rows or all(_xlsx_text(c) == "" for c in rows[0]):
        return None, [Finding("empty_file", name, None, "a header row naming the columns in row 1")]
    header = [_xlsx_text(c) for c in rows[0]]
    while header and header[-1] == "":
        header.pop()
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        expected = f"each column name once in the header; repeated: {', '.join(repeated)}"
        return None, [Finding("bad_csv", name, None, expected)]
    width = len(header)
    body = [[_xlsx_text(c) for c in r[:width]] + [""] * (width - len(r)) for r in rows[1:]]
    frame = pd.DataFrame(body, columns=header, dtype=object)
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in header})
    blank = (frame == "").all(axis=1)
    return frame[~blank], []


def _read_upload(
    table: str, upload: UploadedFile, staging: Path
) -> tuple[pd.DataFrame | None, list[Finding], list[str]]:
    name = Path(upload.filename.replace("\\", "/")).name
    if Path(name).suffix.lower() == ".xlsx":
        frame, findings = _read_xlsx(name, upload.data)
        return frame, findings, []
    path = staging / name
    path.write_bytes(upload.data)
    read = read_raw_table(path)
    return read.frame, list(read.findings), list(read.warnings)


# -- whose rows ----------------------------------------------------------------------------


def _typed(name: str, raw: pd.DataFrame, file: str) -> pd.DataFrame:
    """The table's cells in their types (unreadable cells NA), for deciding ownership."""
    present = [c for c in COLUMNS[name] if c in raw.columns]
    return parse_table(name, raw[present], file).frame  # type: ignore[return-value]


def _owners(name: str, typed: pd.DataFrame, enrolments: pd.DataFrame) -> pd.Series:
    """The school each row belongs to (NA when no enrolment row says)."""
    out = pd.Series(pd.NA, index=typed.index, dtype=object)
    if name in SCHOOL_TABLES:
        return typed["school_id"].astype(object).where(typed["school_id"].notna(), pd.NA)
    if typed.empty or enrolments.empty:
        return out
    rows = typed.reset_index(names="_row")
    e = enrolments[["student_id", "school_year", "school_id", "start_date", "end_date"]].dropna()
    if name in DATED_TABLES:
        joined = rows[["_row", "student_id", "date"]].merge(e, on="student_id")
        joined = joined[
            (joined["date"] >= joined["start_date"]) & (joined["date"] <= joined["end_date"])
        ]
    elif name in YEAR_TABLES:
        joined = rows[["_row", "student_id", "school_year"]].merge(
            e, on=["student_id", "school_year"]
        )
    else:
        newest = e.sort_values(["student_id", "start_date"]).drop_duplicates(
            "student_id", keep="last"
        )
        joined = rows[["_row", "student_id"]].merge(newest, on="student_id")
    first = joined.drop_duplicates("_row").set_index("_row")["school_id"]
    out.loc[first.index] = first.to_numpy()
    return out


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as CSV text (a Parquet file's typed columns become what a CSV would hold)."""
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            out[col] = s.dt.strftime("%Y-%m-%d").fillna("")
        elif pd.api.types.is_bool_dtype(s.dtype):
            out[col] = s.map({True: "true", False: "false"}).fillna("").astype(object)
        else:
            out[col] = s.map(_xlsx_text).astype(object)
    return out


# -- the whole upload ----------------------------------------------------------------------


@dataclass
class _Table:
    """One uploaded table: where its rows of the merged file came from."""

    name: str
    upload_file: str
    target: Path  # the data folder's file (existing, or the CSV to create)
    kept: np.ndarray  # existing rows kept (their data row positions)
    uploaded: np.ndarray  # uploaded rows (their data row positions)
    merged: pd.DataFrame


def apply_upload(
    data_dir: Path, school_id: str, uploads: Sequence[UploadedFile], *, max_bytes: int
) -> UploadResult:
    """Check `uploads` against the data contract as part of the data folder and, when
    nothing is wrong, replace the school's part of each uploaded table atomically."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    with _lock, tempfile.TemporaryDirectory(prefix="baoxue-upload-") as tmp:
        result = _apply(data_dir, school_id, uploads, max_bytes, Path(tmp))
    seconds = time.perf_counter() - started
    logger.info(
        "upload for school %s %s: %d file(s), %s in %.1f s",
        school_id,
        "accepted" if result.accepted else "rejected",
        len(uploads),
        ", ".join(f"{t} {n} rows" for t, n in result.tables.items())
        if result.accepted
        else f"{result.error.total if result.error else 0} violation(s)",
        seconds,
    )
    return UploadResult(
        result.school_id,
        result.accepted,
        result.tables,
        result.files,
        result.error,
        result.warnings,
        seconds,
    )


def _rejected(school_id: str, findings: list[Finding]) -> UploadResult:
    return UploadResult(school_id, False, error=to_error(findings))


def _apply(
    data_dir: Path, school_id: str, uploads: Sequence[UploadedFile], max_bytes: int, staging: Path
) -> UploadResult:
    findings: list[Finding] = []
    chosen: dict[str, UploadedFile] = {}
    if not uploads:
        expected = "at least one file, named after its table (e.g. attendance.csv)"
        return _rejected(school_id, [Finding("unknown_file", "(no file)", None, expected)])
    for upload in uploads:
        name = Path(upload.filename.replace("\\", "/")).name or "(no name)"
        table = table_of(name)
        if len(upload.data) > max_bytes:
            limit = f"a file of at most {max_bytes / 1_000_000:.0f} MB; this one has"
            findings.append(
                Finding("too_large", name, None, f"{limit} {len(upload.data) / 1_000_000:.1f} MB")
            )
        elif table is None:
            known = ", ".join(ALL_TABLES)
            expected = f"a .csv or .xlsx file named after its table ({known})"
            findings.append(Finding("unknown_file", name, None, expected))
        elif table in chosen:
            expected = f"one file for table {table}; also got {chosen[table].filename}"
            findings.append(Finding("duplicate_file", name, None, expected))
        else:
            chosen[table] = upload
    if findings:
        return _rejected(school_id, findings)
    if not data_dir.is_dir():
        expected = f"a data folder at {data_dir} holding the county's export"
        return _rejected(school_id, [Finding("missing_folder", data_dir.name, None, expected)])

    # the data folder as it is (raw cells; the same reading as `baoxue validate`)
    raw: dict[str, pd.DataFrame | None] = {}
    names: dict[str, str] = {}
    paths: dict[str, Path | None] = {}
    for name in ALL_TABLES:
        path, located = locate_table(data_dir, name)
        findings += located
        paths[name] = path
        if path is None:
            raw[name] = None
            continue
        names[name] = path.name
        read = read_raw_table(path)
        findings += read.findings
        raw[name] = read.frame

    # the uploaded files
    uploaded: dict[str, pd.DataFrame] = {}
    warnings: list[str] = []
    for table, upload in chosen.items():
        file = Path(upload.filename.replace("\\", "/")).name
        frame, read_findings, read_warnings = _read_upload(table, upload, staging)
        findings += read_findings
        warnings += read_warnings
        if frame is None:
            continue
        columns = check_columns(table, frame, file)
        findings += columns.findings
        warnings += columns.warnings
        if columns.frame is not None:
            uploaded[table] = columns.frame
    if findings:
        return _rejected(school_id, findings)

    # whose rows: enrolments after (and before) the replacement
    def typed_enrolments(frame: pd.DataFrame | None, file: str) -> pd.DataFrame:
        if frame is None or check_columns("enrolments", frame, file).frame is None:
            return pd.DataFrame(columns=["student_id", "school_year", "school_id"])
        return _typed("enrolments", frame, file)

    before = typed_enrolments(raw["enrolments"], names.get("enrolments", "enrolments.csv"))
    after = before[before["school_id"] != school_id]
    if "enrolments" in uploaded:
        new_rows = _typed("enrolments", uploaded["enrolments"], chosen["enrolments"].filename)
        after = pd.concat([after, new_rows[new_rows["school_id"] == school_id]])
    else:
        after = before

    tables: list[_Table] = []
    for table, frame in uploaded.items():
        file = Path(chosen[table].filename.replace("\\", "/")).name
        owner = _owners(table, _typed(table, frame, file), after)
        other = owner.notna() & (owner != school_id)
        column = "school_id" if table in SCHOOL_TABLES else "student_id"
        finding = mask_finding(
            "other_school",
            file,
            column,
            other,
            frame[column],
            f"rows of school {school_id} only (upload other schools' rows from their account)",
        )
        if finding is not None:  # reported; the rest of the file is still checked
            findings.append(finding)
            frame = frame[~other.fillna(False).astype(bool)]
        existing = raw[table]
        target = paths[table] or data_dir / f"{table}.csv"
        if existing is None:
            existing = pd.DataFrame({c: pd.Series(dtype=object) for c in frame.columns})
        elif target.suffix == ".parquet":
            existing = _as_text(existing)
        existing_file = names.get(table, f"{table}.csv")
        present = [c for c in COLUMNS[table] if c in existing.columns]
        if check_columns(table, existing, existing_file).frame is None:
            kept = existing  # broken already: validation below names what is missing
        else:
            typed_existing = _typed(table, existing, existing_file)
            mine = _owners(table, typed_existing, after) == school_id
            if table not in SCHOOL_TABLES:
                mine |= _owners(table, typed_existing, before) == school_id
            kept = existing[~mine.fillna(False).astype(bool)]
        order = [c for c in COLUMNS[table] if c in frame.columns or c in present]
        merged = pd.concat(
            [
                kept.reindex(columns=order, fill_value=""),
                frame.reindex(columns=order, fill_value=""),
            ],
            ignore_index=True,
        ).fillna("")
        tables.append(
            _Table(table, file, target, kept.index.to_numpy(), frame.index.to_numpy(), merged)
        )

    # the folder after the replacement, checked as `baoxue validate` checks it
    candidate = dict(raw)
    candidate_names = dict(names)
    for t in tables:
        candidate[t.name] = t.merged
        candidate_names[t.name] = t.target.name
    try:
        validated = validate_raw(candidate, candidate_names)
    except InputTableError as error:
        found = _to_upload_rows(error, tables)
        if findings:  # rows of another school first, then the contract's rules
            other = to_error(findings)
            found = InputTableError(
                other.violations + found.violations,
                {
                    r: other.omitted.get(r, 0) + found.omitted.get(r, 0)
                    for r in {*other.omitted, *found.omitted}
                },
            )
        return UploadResult(school_id, False, error=found)
    if findings:
        return _rejected(school_id, findings)
    warnings += validated.warnings

    _write_atomically(tables)
    counts = {t.name: len(t.uploaded) for t in tables}
    files = tuple(t.upload_file for t in tables)
    return UploadResult(school_id, True, counts, files, None, tuple(warnings))


def _to_upload_rows(error: InputTableError, tables: list[_Table]) -> InputTableError:
    """Violations in merged files re-addressed: uploaded rows by the uploaded file and its
    row; kept rows by the data folder's file and its row there."""
    by_file = {t.target.name: t for t in tables}
    out: list[Violation] = []
    for v in error.violations:
        t = by_file.get(v.file)
        if t is None:  # a table the upload did not replace
            file = f"{v.file} (data folder)"
            out.append(Violation(v.rule, file, v.row, v.column, v.value, v.expected))
            continue
        if v.row is None:
            out.append(Violation(v.rule, t.upload_file, None, v.column, v.value, v.expected))
            continue
        position = v.row - 2
        if position >= len(t.kept):
            row = int(t.uploaded[position - len(t.kept)]) + 2
            out.append(Violation(v.rule, t.upload_file, row, v.column, v.value, v.expected))
        else:
            row = int(t.kept[position]) + 2
            file = f"{t.target.name} (data folder)"
            out.append(Violation(v.rule, file, row, v.column, v.value, v.expected))
    return InputTableError(out, error.omitted)


def _write_atomically(tables: list[_Table]) -> None:
    """Write every merged table to a temporary file beside its target, then rename all."""
    written: list[tuple[Path, Path]] = []
    try:
        for t in tables:
            fd, name = tempfile.mkstemp(
                prefix=f".{t.target.name}.", suffix=".upload", dir=t.target.parent
            )
            os.close(fd)
            tmp = Path(name)
            written.append((tmp, t.target))
            if t.target.suffix == ".parquet":
                t.merged.astype(str).to_parquet(tmp, index=False)
            else:
                t.merged.to_csv(tmp, index=False, encoding="utf-8")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, target in written:
        os.replace(tmp, target)


def rule_heading(rule: str) -> str:
    """The English heading of a rule (contract rules and the upload's own)."""
    from features.validation import RULES

    return RULES.get(rule) or UPLOAD_RULES.get(rule, rule)


def grouped(error: InputTableError, per_rule: int = 20) -> list[tuple[str, int, list[Violation]]]:
    """(rule, count, first `per_rule` violations) in the report's order, like the CLI."""
    counts = error.counts()
    order = [r for r in (*UPLOAD_RULES, *_contract_rules()) if r in counts]
    order += sorted(r for r in counts if r not in order)
    return [(r, counts[r], [v for v in error.violations if v.rule == r][:per_rule]) for r in order]


def _contract_rules() -> tuple[str, ...]:
    from features.validation import RULES

    return tuple(RULES)


__all__ = [
    "ALL_TABLES",
    "MAX_LISTED",
    "UploadResult",
    "UploadedFile",
    "apply_upload",
    "grouped",
    "rule_heading",
    "table_of",
]
