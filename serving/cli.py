"""The `baoxue` command line: one entry point for every job.

Each command loads the settings, calls one function, and prints a short summary.
Bad input ends with a clear message and a non-zero exit code, never a traceback
(`baoxue --debug ...` shows the traceback for developers).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="baoxue",
    help=(
        "Baoxue (保学): find the pupils at risk of dropping out of compulsory school "
        "before they leave.\n\n"
        "Reads the tables a county or school exports (see docs/data-contract.md), builds "
        "as-of features, trains and evaluates the risk model, and serves weekly at-risk "
        "lists with reasons a teacher can act on.\n\n"
        "Settings come from BAOXUE_* environment variables or ./baoxue.toml; by default "
        "everything lives in ./var (SQLite database, MLflow store, written lists)."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state: dict[str, Any] = {"debug": False}

T = TypeVar("T")


class CommandFailed(Exception):
    """A failure the user can fix; its message is shown without a traceback."""


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs (for developers).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show progress logs.")] = False,
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "numba", "shap"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body, turning known failures into a message and exit code 1."""
    from features.validation import InputTableError

    try:
        return fn()
    except InputTableError as exc:
        if _state["debug"]:
            raise
        _fail(exc.report())
    except (CommandFailed, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if _state["debug"]:
            raise
        _fail(f"error: {exc}")
    except KeyboardInterrupt:
        _fail("interrupted; nothing was changed", 130)
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def step(label: str) -> Iterator[None]:
    """Print one line per long step with how long it took."""
    typer.echo(f"• {label} ...", nl=False)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        typer.echo(" failed")
        raise
    typer.echo(f" done ({time.perf_counter() - started:.1f} s)")


def _settings() -> Settings:
    return get_settings()


# --------------------------------------------------------------------------- data


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the export to (replaced whole).")],
    students: Annotated[
        int, typer.Option("--students", "-n", min=50, help="Pupils enrolled in the first year.")
    ] = 20_000,
    years: Annotated[int, typer.Option("--years", min=1, max=12, help="School years.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same county.")] = 0,
    first_year: Annotated[
        int, typer.Option("--first-year", help="School year the data starts (2023 = 2023-09).")
    ] = 2023,
    fmt: Annotated[
        str, typer.Option("--format", help="File format of the tables: csv or parquet.")
    ] = "csv",
) -> None:
    """Write a synthetic rural county: an export that passes `baoxue validate`.

    Townships with primary, junior and nine-year schools, a real school calendar
    (two terms, weekends, national holidays, Spring Festival, summer), hardship and
    left-behind prevalences of a poor rural county, and a hidden risk that drives
    absences, falling grades and rare dropouts. See docs/synthetic-county.md.
    """
    from features.sources import write_export
    from features.synthetic import generate_county

    if fmt not in ("csv", "parquet"):
        _fail("error: --format must be csv or parquet")

    def body() -> None:
        with step(f"generating {students:,} pupils × {years} school years (seed {seed})"):
            tables = generate_county(
                n_students=students, n_years=years, seed=seed, first_school_year=first_year
            )
        with step(f"writing {fmt} files to {out}"):
            write_export(tables, out, fmt=fmt)  # type: ignore[arg-type]
        _print_summary(tables)

    run_guarded(body)


def _print_summary(tables: Any) -> None:
    from features.summary import format_summary, summarize

    typer.echo(format_summary(summarize(tables)))


@app.command()
def validate(
    export_dir: Annotated[
        Path, typer.Argument(help="Folder with one CSV or Parquet file per table.")
    ],
) -> None:
    """Check an export against the data contract and summarise it.

    Reports every violation at once, grouped by rule, each naming the file, the row
    as a spreadsheet shows it, the column, the bad value and what was expected.
    Exits 0 when the export is valid, 1 otherwise. Extra columns are warned about
    and ignored.
    """
    from features.sources import load_export

    def body() -> None:
        if not export_dir.is_dir():
            raise CommandFailed(f"{export_dir} is not a folder (expected an export folder)")
        loaded = load_export(export_dir)
        for warning in loaded.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"{export_dir}: valid export")
        _print_summary(loaded.tables)

    run_guarded(body)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    students: Annotated[
        int, typer.Option("--students", "-n", min=200, help="Pupils in the demo county.")
    ] = 20_000,
    years: Annotated[int, typer.Option("--years", min=2, max=6, help="School years.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Run the whole pipeline on a synthetic county in the home folder.

    Generates a county into <home>/data, validates it and prints its summary.
    """
    from features.sources import load_export, write_export
    from features.synthetic import generate_county

    settings = _settings()
    data_dir = settings.paths.data

    def body() -> None:
        typer.echo(f"Baoxue demo — home folder {settings.paths.home.resolve()}")
        with step(f"generating a synthetic county of {students:,} pupils × {years} years"):
            tables = generate_county(n_students=students, n_years=years, seed=seed)
        with step(f"writing the export to {data_dir}"):
            write_export(tables, data_dir, fmt="parquet")
        with step("validating it against the data contract"):
            loaded = load_export(data_dir)
        _print_summary(loaded.tables)

    run_guarded(body)


def main() -> None:  # pragma: no cover - console entry for `python -m serving.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
