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
import re
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
    "too_large_unpacked": "workbook too large once unpacked",
    "too_many_rows": "too many rows in a workbook",
    "too_slow": "workbook took too long to read",
}

XLSX_MAX_COLUMNS = 256  # columns read from a sheet (the contract's tables have at most 16)

_lock = threading.Lock()  # one upload at a time replaces files in a data folder


@dataclass(frozen=True)
class XlsxLimits:
    """What an XLSX upload may hold once unpacked: the upload's size limit counts the
    compressed bytes, and a 1 MB workbook can hold a million rows (issue 21 item 5).

    The defaults fit a large county school's full attendance register for a year
    (2,000 pupils x 190 school days = 380,000 rows, about 60 MB of sheet XML).
    """

    max_rows: int = 400_000
    max_unpacked_mb: int = 100
    max_seconds: float = 120.0


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


def _count_tags(zf: zipfile.ZipFile, member: str, tag: bytes, limit: int) -> int:
    """How many `<tag` elements the member holds, read in 1 MB pieces; stops past `limit`.

    Unpacking is bounded by the member's declared size (zipfile stops there), and the
    count costs a pass of zlib, far less than parsing the XML.
    """
    pattern = re.compile(rb"<(?:\w{1,8}:)?" + tag + rb"[\s>/]")
    carry, count = b"", 0
    with zf.open(member) as f:
        while count <= limit:
            piece = f.read(1 << 20)
            buffer = carry + piece
            if not piece:
                return count + len(pattern.findall(buffer))
            cut = max(len(buffer) - 15, 0)  # a match is at most 15 bytes long
            count += sum(1 for m in pattern.finditer(buffer) if m.start() < cut)
            carry = buffer[cut:]
    return count


def _check_zip(name: str, data: bytes, limits: XlsxLimits) -> tuple[Finding | None, int]:
    """Refuse a workbook whose unpacked size, rows or shared strings exceed `limits`,
    before any XML is parsed (a small file can unpack to gigabytes); else (None, the
    most rows a sheet has)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
            unpacked = sum(m.file_size for m in members)
            if unpacked > limits.max_unpacked_mb * 1_000_000 or len(members) > 10_000:
                expected = (
                    f"a workbook of at most {limits.max_unpacked_mb} MB unpacked; this one"
                    f" unpacks to {unpacked / 1_000_000:.0f} MB (save it as CSV instead)"
                )
                return Finding("too_large_unpacked", name, None, expected), 0
            most = 0
            for m in members:
                folder, file = m.filename.rpartition("/")[::2]
                if folder == "xl/worksheets" and file.endswith(".xml"):
                    rows = _count_tags(zf, m.filename, b"row", limits.max_rows + 1)
                    most = max(most, rows)
                    if rows > limits.max_rows + 1:  # + the header row
                        expected = (
                            f"at most {limits.max_rows:,} rows in a sheet; this one has"
                            " more (save it as CSV, or upload fewer rows)"
                        )
                        return Finding("too_many_rows", name, None, expected), 0
                elif m.filename == "xl/sharedStrings.xml":
                    if _count_tags(zf, m.filename, b"si", limits.max_rows) > limits.max_rows:
                        expected = f"at most {limits.max_rows:,} different texts in the workbook"
                        return Finding("too_many_rows", name, None, expected), 0
    except Exception:  # zipfile and zlib raise many kinds on a damaged archive or member
        return Finding("bad_xlsx", name, None, "an Excel workbook (.xlsx); this is not"), 0
    return None, most


def _read_xlsx(
    name: str, data: bytes, limits: XlsxLimits
) -> tuple[pd.DataFrame | None, list[Finding]]:
    """The first sheet's cells as text, indexed like `features.sources` reads a CSV.

    Bounded: the zip is checked first (`_check_zip`), then rows are streamed
    (read-only mode) up to `limits.max_rows` rows, `XLSX_MAX_COLUMNS` columns and
    `limits.max_seconds`; past any of them the file is refused, not cut.
    """
    from openpyxl import load_workbook

    refused, expected_rows = _check_zip(name, data, limits)
    if refused is not None:
        return None, [refused]
    deadline = time.monotonic() + limits.max_seconds
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a damaged workbook
        return None, [Finding("bad_xlsx", name, None, "an Excel workbook (.xlsx); this is not")]
    too_many = Finding(
        "too_many_rows",
        name,
        None,
        f"at most {limits.max_rows:,} rows in a sheet; this one has more"
        " (save it as CSV, or upload fewer rows)",
    )
    too_slow = Finding(
        "too_slow",
        name,
        None,
        f"a workbook read within {limits.max_seconds:.0f} s; save it as CSV (UTF-8) instead",
    )
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        first = (
            []
            if sheet is None
            else list(
                sheet.iter_rows(min_row=1, max_row=1, max_col=XLSX_MAX_COLUMNS, values_only=True)
            )
        )
        header = [_xlsx_text(c) for c in first[0]] if first else []
        while header and header[-1] == "":
            header.pop()
        width = len(header)
        columns: list[list[str]] = [[] for _ in header]
        reading = time.monotonic()
        if sheet is not None and width:
            # one row past the limit, to tell "at the limit" from "over it"; openpyxl
            # fills skipped row numbers with empty rows, so this also bounds a sheet
            # with one cell in row 1,048,576
            rows = sheet.iter_rows(
                min_row=2, max_row=limits.max_rows + 2, max_col=width, values_only=True
            )
            for count, row in enumerate(rows, start=1):
                if count > limits.max_rows:
                    return None, [too_many]
                for j, cell in enumerate(row[:width]):
                    columns[j].append(_xlsx_text(cell))
                for j in range(len(row), width):
                    columns[j].append("")
                if count % 1024 == 0:
                    # refuse as soon as the pace says the rows counted will not be read
                    # in time, rather than when the time is up
                    now = time.monotonic()
                    pace = (now - reading) / count
                    if now > deadline or now + pace * (expected_rows - count) > deadline:
                        return None, [too_slow]
        if time.monotonic() > deadline:
            return None, [too_slow]
    except Exception:  # openpyxl raises many kinds on a damaged sheet
        return None, [Finding("bad_xlsx", name, None, "a readable first sheet")]
    finally:
        book.close()
    if not header:
        return None, [Finding("empty_file", name, None, "a header row naming the columns in row 1")]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        expected = f"each column name once in the header; repeated: {', '.join(repeated)}"
        return None, [Finding("bad_csv", name, None, expected)]
    frame = pd.DataFrame(dict(zip(header, columns, strict=True)), dtype=object)
    if frame.empty:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in header})
    blank = (frame == "").all(axis=1)
    return frame[~blank], []


def _read_upload(
    table: str, upload: UploadedFile, staging: Path, xlsx: XlsxLimits
) -> tuple[pd.DataFrame | None, list[Finding], list[str]]:
    name = Path(upload.filename.replace("\\", "/")).name
    if Path(name).suffix.lower() == ".xlsx":
        frame, findings = _read_xlsx(name, upload.data, xlsx)
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
    merged: pd.DataFrame  # every column of the file and of the upload, cells as text
    written: pd.DataFrame | None = None  # what a Parquet file gets (typed like it was)
    line_end: str = "\n"
    encoding: str = "utf-8"


@dataclass(frozen=True)
class _Read:
    """The uploaded files, read: table -> (every column as sent, the contract's columns)."""

    files: dict[str, str]
    frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]]
    findings: list[Finding]
    warnings: list[str]


def apply_upload(
    data_dir: Path,
    school_id: str,
    uploads: Sequence[UploadedFile],
    *,
    max_bytes: int,
    xlsx: XlsxLimits = XlsxLimits(),
    transfer: bool = False,
) -> UploadResult:
    """Check `uploads` against the data contract as part of the data folder and, when
    nothing is wrong, replace the school's part of each uploaded table atomically.

    The school may change only pupils it holds now (their newest enrolment row in the
    folder before the upload) and pupils no school holds yet; a row about another
    school's pupil is an `other_school` violation. `transfer=True` (the county
    administrator's upload) lets the upload move other schools' pupils to `school_id`.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    with tempfile.TemporaryDirectory(prefix="baoxue-upload-") as tmp:
        read = _read_files(uploads, max_bytes, xlsx, Path(tmp))  # no lock held: slow
    if read.findings:
        result = _rejected(school_id, read.findings)
    else:
        with _lock:
            result = _apply(data_dir, school_id, read, transfer)
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


def no_school_named() -> UploadResult:
    """The county's upload without the school it is for."""
    expected = "the id of the school whose rows the upload replaces"
    return _rejected("", [Finding("missing_value", "(form)", "school_id", expected)])


def _read_files(
    uploads: Sequence[UploadedFile], max_bytes: int, xlsx: XlsxLimits, staging: Path
) -> _Read:
    """Name, size and contract columns of every uploaded file (nothing of the folder)."""
    findings: list[Finding] = []
    warnings: list[str] = []
    chosen: dict[str, UploadedFile] = {}
    if not uploads:
        expected = "at least one file, named after its table (e.g. attendance.csv)"
        return _Read({}, {}, [Finding("unknown_file", "(no file)", None, expected)], [])
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
    files = {t: Path(u.filename.replace("\\", "/")).name for t, u in chosen.items()}
    if findings:
        return _Read(files, {}, findings, warnings)
    frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for table, upload in chosen.items():
        frame, read_findings, read_warnings = _read_upload(table, upload, staging, xlsx)
        findings += read_findings
        warnings += read_warnings
        if frame is None:
            continue
        columns = check_columns(table, frame, files[table])
        findings += columns.findings
        if columns.frame is not None:
            frames[table] = (frame, columns.frame)
    return _Read(files, frames, findings, warnings)


def _current_schools(enrolments: pd.DataFrame) -> pd.Series:
    """Each pupil's school now: the school of their newest enrolment row (student_id ->
    school_id; pupils without an enrolment row are absent)."""
    e = enrolments.dropna(subset=["student_id", "school_id"])
    if e.empty:
        return pd.Series(dtype=object)
    keys = [c for c in ("school_year", "start_date") if c in e.columns]
    newest = e.sort_values(["student_id", *keys], na_position="first").drop_duplicates(
        "student_id", keep="last"
    )
    return pd.Series(newest["school_id"].astype(object).to_numpy(), index=newest["student_id"])


def _apply(data_dir: Path, school_id: str, read: _Read, transfer: bool) -> UploadResult:
    findings: list[Finding] = []
    if not data_dir.is_dir():  # the path is the operator's, not the school's: not shown
        expected = "the county's data folder (set up by the administrator); it is missing"
        return _rejected(school_id, [Finding("missing_folder", "data folder", None, expected)])

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
        folder_read = read_raw_table(path)
        findings += folder_read.findings
        raw[name] = folder_read.frame
    if findings:
        return _rejected(school_id, findings)
    uploaded = read.frames
    warnings = list(read.warnings)

    # whose rows: enrolments after (and before) the replacement
    def typed_enrolments(frame: pd.DataFrame | None, file: str) -> pd.DataFrame:
        if frame is None or check_columns("enrolments", frame, file).frame is None:
            return pd.DataFrame(columns=["student_id", "school_year", "school_id"])
        return _typed("enrolments", frame, file)

    before = typed_enrolments(raw["enrolments"], names.get("enrolments", "enrolments.csv"))
    # who holds each pupil now is decided by the folder before the upload, never by it
    now = _current_schools(before)
    after = before[before["school_id"] != school_id]
    if "enrolments" in uploaded:
        new_rows = _typed("enrolments", uploaded["enrolments"][1], read.files["enrolments"])
        after = pd.concat([after, new_rows[new_rows["school_id"] == school_id]])
    else:
        after = before

    tables: list[_Table] = []
    for table, (full, frame) in uploaded.items():
        file = read.files[table]
        typed = _typed(table, frame, file)
        owner = _owners(table, typed, after)
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
        held = typed["student_id"].map(now) if "student_id" in typed.columns else None
        if held is not None and not transfer:
            theirs = held.notna() & (held != school_id) & ~other
            finding = mask_finding(
                "other_school",
                file,
                "student_id",
                theirs,
                frame["student_id"],
                f"pupils of school {school_id} only: this pupil is at another school now."
                " Moving a pupil between schools is a transfer the county administrator"
                " makes (转学由县教育局办理), not an upload",
            )
            if finding is not None:
                findings.append(finding)
                other = other | theirs
        frame = frame[~other.fillna(False).astype(bool)]
        full = full.loc[frame.index]
        existing = raw[table]
        target = paths[table] or data_dir / f"{table}.csv"
        if existing is None:
            existing = pd.DataFrame({c: pd.Series(dtype=object) for c in full.columns})
        existing_text = _as_text(existing) if target.suffix == ".parquet" else existing
        existing_file = names.get(table, f"{table}.csv")
        if check_columns(table, existing_text, existing_file).frame is None:
            kept = existing_text  # broken already: validation below names what is missing
        else:
            contract = [c for c in COLUMNS[table] if c in existing_text.columns]
            typed_existing = _typed(table, existing_text[contract], existing_file)
            mine = _owners(table, typed_existing, after) == school_id
            if table not in SCHOOL_TABLES:
                mine |= _owners(table, typed_existing, before) == school_id
            kept = existing_text[~mine.fillna(False).astype(bool)]
        # every column the file has (in its order), then the upload's new ones
        order = [*existing_text.columns, *(c for c in full.columns if c not in existing_text)]
        merged = pd.concat(
            [kept.reindex(columns=order), full.reindex(columns=order)], ignore_index=True
        )
        merged = merged.astype(object).where(merged.notna(), "")
        entry = _Table(table, file, target, kept.index.to_numpy(), frame.index.to_numpy(), merged)
        if target.suffix == ".parquet" and paths[table] is not None:
            entry.written = _typed_like(existing.loc[kept.index], full, frame, table, file, order)
        elif paths[table] is not None:
            entry.line_end, entry.encoding = _csv_style(target)
        tables.append(entry)

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
            other_error = to_error(findings)
            found = InputTableError(
                other_error.violations + found.violations,
                {
                    r: other_error.omitted.get(r, 0) + found.omitted.get(r, 0)
                    for r in {*other_error.omitted, *found.omitted}
                },
            )
        return UploadResult(school_id, False, error=found)
    if findings:
        return _rejected(school_id, findings)
    warnings += [w for w in validated.warnings if "ignored extra column" not in w]

    _write_atomically(tables)
    counts = {t.name: len(t.uploaded) for t in tables}
    files = tuple(t.upload_file for t in tables)
    return UploadResult(school_id, True, counts, files, None, tuple(warnings))


def _csv_style(path: Path) -> tuple[str, str]:
    """The line ending and encoding a CSV in the folder was written with, to keep them."""
    with open(path, "rb") as f:
        head = f.read(65_536)
    line_end = "\r\n" if b"\r\n" in head.split(b"\n", 1)[0] + b"\n" else "\n"
    encoding = "utf-8-sig" if head.startswith(b"\xef\xbb\xbf") else "utf-8"
    return line_end, encoding


def _typed_like(
    kept: pd.DataFrame,
    full: pd.DataFrame,
    contract: pd.DataFrame,
    table: str,
    file: str,
    order: list[str],
) -> pd.DataFrame:
    """The merged table for a Parquet file: the kept rows exactly as the file had them,
    the uploaded rows' cells in the file's column types (contract columns as validation
    types them; other columns as numbers when the file's are, else text)."""
    parsed = _typed(table, contract, file)
    rows: dict[str, pd.Series] = {}
    for col in order:
        if col not in full.columns:
            rows[col] = pd.Series(pd.NA, index=full.index, dtype=object)
            continue
        text = full[col].where(full[col].astype(str).str.strip() != "")
        value = parsed[col] if col in parsed.columns else text
        if col in kept.columns:
            dtype = kept[col].dtype
            if col not in parsed.columns and pd.api.types.is_numeric_dtype(dtype):
                value = pd.to_numeric(text, errors="coerce")
            try:
                value = value.astype(dtype) if value.notna().all() else value
            except (TypeError, ValueError):
                pass
        rows[col] = value
    new = pd.DataFrame(rows, index=full.index)
    merged = pd.concat([kept.reindex(columns=order), new], ignore_index=True)
    for col in order:  # a column pyarrow cannot write as one type is written as text
        if merged[col].dtype == object and not _one_type(merged[col]):
            merged[col] = merged[col].map(lambda v: None if pd.isna(v) else str(v))
    return merged


def _one_type(column: pd.Series) -> bool:
    kinds = {type(v) for v in column.dropna()}
    return len(kinds) <= 1


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
                frame = t.written if t.written is not None else t.merged.astype(str)
                frame.to_parquet(tmp, index=False)
            else:
                t.merged.to_csv(tmp, index=False, encoding=t.encoding, lineterminator=t.line_end)
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
    "XlsxLimits",
    "apply_upload",
    "no_school_named",
    "grouped",
    "rule_heading",
    "table_of",
]
