"""Reading and writing exports (a folder with one CSV or Parquet file per table).

This is the only module in `features/` that touches files.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import pandas as pd

from features.tables import ALL_TABLES, COLUMNS, RawTables

logger = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]


def _to_export_frame(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The table's contract columns, dates as ISO text for CSV-friendliness."""
    cols = [c for c in COLUMNS[name] if c in frame.columns]
    out = frame[cols].copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    return out


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
            if name not in ("schools", "calendar", "students", "enrolments", "attendance",
                            "grades", "status_events") and frame.empty:
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
