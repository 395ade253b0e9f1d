"""Write weekly lists as files a school office opens in Excel or WPS: CSV and XLSX.

Layout: ``<lists_dir>/<as_of>/<school_id>.csv|.xlsx`` for a school and
``<lists_dir>/<as_of>/<school_id>/<class_id>.csv|.xlsx`` for each of its classes.

* CSV: UTF-8 with a byte-order mark (so Excel and WPS read the Chinese), one header row
  with bilingual headers ("排名 rank").
* XLSX: a Chinese header row and an English one under it, both frozen; the tier cell
  filled red / amber / green; set column widths.
* Any text cell starting with ``= + - @`` (or a tab / carriage return) gets a leading
  single quote, so a crafted id or note can never run as a formula.

Atomic: `stage_lists` writes every file into a temporary folder beside the target;
`StagedLists.publish` swaps it in with two renames and keeps the previous folder until
`finalize` (or puts it back on `revert`), so a run that fails half-way leaves the
previous lists exactly as they were.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill

if TYPE_CHECKING:
    import datetime as dt

    from serving.services.weekly_lists import ListRow, WeeklyList

logger = logging.getLogger(__name__)

# (key, Chinese header, English header, XLSX column width)
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("rank", "排名", "rank", 6),
    ("student_id", "学生编号", "student id", 14),
    ("class_id", "班级", "class", 18),
    ("grade_level", "年级", "grade", 6),
    ("risk_score", "风险分(%)", "risk score (%)", 10),
    ("tier", "关注等级", "tier", 9),
    ("change", "较上周变化", "change since last week", 12),
    ("ladder", "缺勤预警", "ladder alert", 40),
    ("reasons", "主要原因（前三）", "top three reasons", 60),
    ("actions", "建议措施", "suggested actions", 60),
    ("visits_this_term", "本学期家访次数", "home visits this term", 10),
)
TIER_ZH = {"high": "高", "medium": "中", "low": "低"}
CHANGE_ZH = {
    "new": "新增",
    "rising": "上升",
    "falling": "下降",
    "unchanged": "持平",
    "left": "移出名单",
}
TIER_FILLS = {
    "high": PatternFill("solid", fgColor="FFC7CE"),  # red
    "medium": PatternFill("solid", fgColor="FFEB9C"),  # amber
    "low": PatternFill("solid", fgColor="C6EFCE"),  # green
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER_ROWS = 2
SHEET_TITLE_MAX = 31
_SAFE_NAME = re.compile(r"[^0-9A-Za-z_.\-]+")


def neutralise(value: Any) -> Any:
    """A text value that a spreadsheet would read as a formula, made plain text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_name(identifier: str) -> str:
    """A school or class id as a file name (no separators, no leading dots)."""
    name = _SAFE_NAME.sub("_", identifier).lstrip(".")
    return name or "_"


def row_cells(row: ListRow) -> list[Any]:
    """One list row as cell values, in `COLUMNS` order (Chinese text), neutralised."""
    cells: list[Any] = [
        row.rank,
        row.student_id,
        row.class_id,
        row.grade_level,
        round(row.risk_score * 100, 1),
        TIER_ZH.get(row.tier, row.tier),
        CHANGE_ZH.get(row.change, row.change),
        row.ladder.action_zh if row.ladder else "",
        "；".join(r.text_zh for r in row.reasons[:3]),
        "；".join(a.text_zh for a in row.actions),
        row.visits_this_term,
    ]
    return [neutralise(c) for c in cells]


def write_csv(path: Path, weekly: WeeklyList) -> Path:
    """The list as CSV, UTF-8 with BOM, bilingual header."""
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"{zh} {en}" for _, zh, en, _ in COLUMNS])
        for row in weekly.rows:
            writer.writerow(row_cells(row))
    return path


def _sheet_title(weekly: WeeklyList) -> str:
    title = weekly.class_id or weekly.school_id
    return (re.sub(r"[\[\]:*?/\\]", "_", title) or "list")[:SHEET_TITLE_MAX]


def write_xlsx(path: Path, weekly: WeeklyList) -> Path:
    """The list as XLSX: Chinese and English header rows frozen, tier fills, widths."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = _sheet_title(weekly)
    sheet.append([zh for _, zh, _, _ in COLUMNS])
    sheet.append([en for _, _, en, _ in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for cell in sheet[2]:
        cell.font = Font(italic=True, color="666666")
    tier_column = 1 + [key for key, *_ in COLUMNS].index("tier")
    for row in weekly.rows:
        sheet.append(row_cells(row))
        fill = TIER_FILLS.get(row.tier)
        if fill is not None:
            sheet.cell(row=sheet.max_row, column=tier_column).fill = fill
    wrap = Alignment(wrap_text=True, vertical="top")
    for index, (key, _, _, width) in enumerate(COLUMNS, start=1):
        letter = sheet.cell(row=1, column=index).column_letter
        sheet.column_dimensions[letter].width = width
        if key in ("ladder", "reasons", "actions"):
            for (cell,) in sheet.iter_rows(min_row=HEADER_ROWS + 1, min_col=index, max_col=index):
                cell.alignment = wrap
    sheet.freeze_panes = sheet.cell(row=HEADER_ROWS + 1, column=1)
    book.save(path)
    return path


def list_paths(folder: Path, weekly: WeeklyList) -> tuple[Path, Path]:
    """(csv, xlsx) paths of a list inside the week's folder."""
    if weekly.class_id is None:
        stem = folder / safe_name(weekly.school_id)
    else:
        stem = folder / safe_name(weekly.school_id) / safe_name(weekly.class_id)
    return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".xlsx")


@dataclass
class StagedLists:
    """A week's lists written into a temporary folder, not yet in place."""

    tmp: Path
    target: Path
    relative: list[Path] = field(default_factory=list)
    backup: Path | None = None
    published: bool = False

    @property
    def files(self) -> list[Path]:
        """The files' paths once in place."""
        return [self.target / p for p in self.relative]

    def publish(self) -> None:
        """Swap the new folder in; the previous one is kept until `finalize`."""
        if self.target.exists():
            self.backup = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            if self.backup.exists():
                shutil.rmtree(self.backup)
            os.replace(self.target, self.backup)
        try:
            os.replace(self.tmp, self.target)
        except BaseException:
            if self.backup is not None:
                os.replace(self.backup, self.target)
                self.backup = None
            raise
        self.published = True

    def revert(self) -> None:
        """Undo: drop the new files and put the previous folder back."""
        if self.published:
            shutil.rmtree(self.target, ignore_errors=True)
            if self.backup is not None:
                os.replace(self.backup, self.target)
            self.published = False
            self.backup = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finalize(self) -> None:
        """Forget the previous folder (after the run is committed)."""
        if self.backup is not None:
            shutil.rmtree(self.backup, ignore_errors=True)
            self.backup = None


def stage_lists(lists: Sequence[WeeklyList], *, lists_dir: Path, as_of: dt.date) -> StagedLists:
    """Write every list (CSV and XLSX) into a temporary folder beside
    ``<lists_dir>/<as_of>``; nothing visible changes until `StagedLists.publish`."""
    lists_dir = Path(lists_dir)
    lists_dir.mkdir(parents=True, exist_ok=True)
    target = lists_dir / as_of.isoformat()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=lists_dir))
    tmp.chmod(0o755)  # mkdtemp makes it private; the lists are for the school office
    staged = StagedLists(tmp=tmp, target=target)
    try:
        for weekly in lists:
            for path in list_paths(tmp, weekly):
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.suffix == ".csv":
                    write_csv(path, weekly)
                else:
                    write_xlsx(path, weekly)
                staged.relative.append(path.relative_to(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("staged %d list files for %s", len(staged.relative), as_of)
    return staged
