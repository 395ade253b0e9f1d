"""Reading and writing exports (a folder with one CSV or Parquet file per table).

This is the only module in `features/` that touches files. `load_export` reads every
table as raw cells, then hands them to `features.validation` to type and check; any
broken rule in any file ends in one `InputTableError` listing all of them.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from features.tables import ALL_TABLES, COLUMNS, REQUIRED_TABLES, RawTables
from features.validation import Finding, InputTableError, Violation, validate_raw

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]


def _iso_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with its date columns as ISO text (YYYY-MM-DD)."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    return out


def _to_export_frame(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table's contract columns, dates as ISO text for CSV-friendliness."""
    cols = [c for c in COLUMNS[name] if c in frame.columns]
    return _iso_dates(frame[cols])


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as JSON-ready dicts, the shape `POST /v1/score` takes: dates as ISO
    text, missing values as null."""
    out = _iso_dates(frame)
    records: list[dict[str, Any]] = out.astype(object).where(out.notna(), None).to_dict("records")
    return records


def write_export(tables: RawTables, out_dir: Path, fmt: ExportFormat = "csv") -> Path:
    """Write `tables` as an export folder, atomically.

    The files are written to a temporary folder beside `out_dir` and moved into place
    only when all of them are written, so a failure leaves an earlier export intact.
    Empty optional tables are not written.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name in ALL_TABLES:
            frame = getattr(tables, name)
            if name not in REQUIRED_TABLES and frame.empty:
                continue
            data = _to_export_frame(name, frame)
            if fmt == "csv":
                data.to_csv(tmp / f"{name}.csv", index=False, encoding="utf-8")
            else:
                data.to_parquet(tmp / f"{name}.parquet", index=False)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote export to %s (%s)", out_dir, fmt)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing an existing folder with two renames."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class LoadedExport:
    """A validated export: its tables, warnings worth showing, and the files read."""

    tables: RawTables
    warnings: list[str]
    files: dict[str, Path]


@dataclass(frozen=True)
class RawRead:
    """One file's raw cells (None when unreadable), with problems and warnings."""

    frame: pd.DataFrame | None
    findings: list[Finding]
    warnings: list[str]


def load_export(export_dir: Path) -> LoadedExport:
    """Read and validate the export in `export_dir`.

    Raises `InputTableError` listing every violation in every file; never returns a
    partial result. See docs/data-contract.md for the rules.
    """
    started = time.perf_counter()
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise InputTableError(
            [
                Violation(
                    "missing_folder",
                    export_dir.name or str(export_dir),
                    None,
                    None,
                    None,
                    f"a folder of export files at {export_dir}",
                )
            ]
        )
    findings: list[Finding] = []
    warnings: list[str] = []
    raw: dict[str, pd.DataFrame | None] = {}
    paths: dict[str, Path] = {}
    for name in ALL_TABLES:
        path, located = locate_table(export_dir, name)
        findings += located
        if path is None:
            continue
        paths[name] = path
        read = read_raw_table(path)
        findings += read.findings
        warnings += read.warnings
        raw[name] = read.frame
    names = {name: path.name for name, path in paths.items()}
    try:
        validated = validate_raw(raw, names, findings)
    except InputTableError:
        logger.info("export %s rejected after %.1f s", export_dir, time.perf_counter() - started)
        raise
    warnings += validated.warnings
    rows = sum(len(f) for f in validated.tables.as_dict().values())
    logger.info(
        "read export %s: %d tables, %d rows, %d warning(s) in %.1f s",
        export_dir,
        len(paths),
        rows,
        len(warnings),
        time.perf_counter() - started,
    )
    return LoadedExport(validated.tables, warnings, paths)


def read_export(export_dir: Path) -> RawTables:
    """The validated tables of the export in `export_dir` (see `load_export`)."""
    return load_export(export_dir).tables


def locate_table(export_dir: Path, name: str) -> tuple[Path | None, list[Finding]]:
    """The file holding table `name`, or None with the problem (if it is required)."""
    csv, parquet = export_dir / f"{name}.csv", export_dir / f"{name}.parquet"
    found = [p for p in (csv, parquet) if p.exists()]
    if len(found) == 2:
        return None, [
            Finding(
                "both_formats",
                csv.name,
                None,
                f"only one of {csv.name} and {parquet.name}; remove the one that is out of date",
            )
        ]
    if found:
        return found[0], []
    if name in REQUIRED_TABLES:
        return None, [
            Finding(
                "missing_file",
                csv.name,
                None,
                f"a file {csv.name} or {parquet.name} in the export folder",
            )
        ]
    return None, []


def read_raw_table(path: Path) -> RawRead:
    """Raw cells of one file, index = data row position (0 = the row below the header)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return _problem("unreadable_file", path, f"a file that can be opened ({err.strerror})")
    if not data:
        return _problem("empty_file", path, "a header row and data rows; the file is empty")
    if path.suffix == ".parquet":
        return _read_parquet(path, data)
    return _read_csv(path, data)


def _problem(rule: str, path: Path, expected: str, row: int | None = None) -> RawRead:
    rows = None if row is None else pd.Series([row]).to_numpy()
    return RawRead(None, [Finding(rule, path.name, None, expected, rows=rows)], [])


def _read_parquet(path: Path, data: bytes) -> RawRead:
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except Exception:  # pyarrow raises many kinds; any means the same to the user
        return _problem("bad_parquet", path, "a readable Parquet file; this one is not")
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawRead(frame.reset_index(drop=True), [], [])


def _read_csv(path: Path, data: bytes) -> RawRead:
    warnings: list[str] = []
    encoding = _encoding(data)
    if encoding is None:
        return _problem("encoding", path, "text in UTF-8 or GBK (GB18030); the file is neither")
    if encoding == "gb18030":
        warnings.append(
            f"{path.name} is GBK-encoded (as Excel saves it); read it as GB18030."
            " Save as CSV UTF-8 to silence this warning."
        )
    try:
        # header=None: the header is read as a row, so a data row with more cells than
        # the header is a parser error naming its line (not a silent index column).
        cells = pd.read_csv(
            io.BytesIO(data),
            encoding=encoding,
            header=None,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        return _problem("empty_file", path, "a header row naming the columns; the file has none")
    except (pd.errors.ParserError, ValueError) as err:
        return _problem("bad_csv", path, _csv_problem(err), row=_csv_line(err))
    header = [str(c).strip() for c in cells.iloc[0].fillna("")]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        return _problem(
            "bad_csv", path, f"each column name once in the header; repeated: {', '.join(repeated)}"
        )
    frame = cells.iloc[1:].fillna("")
    frame.columns = header
    frame.index = frame.index - 1
    blank = (frame == "").all(axis=1)
    return RawRead(frame[~blank], [], warnings)


def _encoding(data: bytes) -> str | None:
    """`utf-8-sig` (with or without BOM), `gb18030`, or None when neither decodes."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def _csv_line(err: Exception) -> int | None:
    match = re.search(r"line (\d+)", str(err))
    return int(match.group(1)) if match else None


def _csv_problem(err: Exception) -> str:
    match = re.search(r"Expected (\d+) fields in line \d+, saw (\d+)", str(err))
    if match:
        return f"{match.group(1)} comma-separated cells as in the header; found {match.group(2)}"
    return "comma-separated cells with a header row (check quotes and separators)"
