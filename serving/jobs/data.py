"""Exports: write a synthetic county, check an export, convert OULAD into one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from serving.jobs.common import QUIET, JobFailed, Reporter, load_tables

if TYPE_CHECKING:
    from features.oulad import ImportSummary
    from features.tables import RawTables

Format = Literal["csv", "parquet"]


def synthesize(
    out: Path,
    *,
    students: int,
    years: int,
    seed: int,
    first_year: int,
    fmt: Format,
    report: Reporter = QUIET,
) -> RawTables:
    """Generate a seeded synthetic county and write it to `out` as an export."""
    from features.sources import write_export
    from features.synthetic import generate_county

    with report.step(f"generating {students:,} pupils × {years} school years (seed {seed})"):
        tables = generate_county(
            n_students=students, n_years=years, seed=seed, first_school_year=first_year
        )
    with report.step(f"writing {fmt} files to {out}"):
        write_export(tables, out, fmt=fmt)
    return tables


def validate(export_dir: Path, report: Reporter = QUIET) -> RawTables:
    """The export's tables if they keep the data contract; `InputTableError` otherwise."""
    return load_tables(export_dir, report)


def import_oulad(src: Path, out: Path, *, fmt: Format, report: Reporter = QUIET) -> ImportSummary:
    """Convert the Open University Learning Analytics Dataset in `src` into an export."""
    from features.oulad import OuladInputError
    from features.oulad import import_oulad as convert

    try:
        with report.step(f"importing OULAD from {src}"):
            return convert(src, out, fmt=fmt)
    except OuladInputError as exc:
        raise JobFailed(str(exc)) from exc
