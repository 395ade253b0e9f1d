"""`baoxue bench`: registered in the `baoxue.commands` entry point group (pyproject.toml),
so the CLI finds it without serving importing bench (bench imports serving, not the
other way round). The suite itself is imported when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def bench(
    students: Annotated[
        int, typer.Option("--students", "-n", min=50, help="Pupils in the synthetic county.")
    ] = 100_000,
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="Only these benchmarks, comma-separated: snapshot, weekly, http, train, "
            "startup (or a-e).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the table to FILE.json and FILE.md."),
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.2, help="Seconds of load per HTTP server.")
    ] = 5.0,
    work: Annotated[
        Path | None,
        typer.Option("--work", help="Keep the county, model and server logs in this folder."),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="Write pyinstrument profiles of our side here."),
    ] = None,
) -> None:
    """Benchmark against references measured in the same run on the same data.

    On a synthetic county of one school year: (a) the snapshot's attendance features vs
    a DuckDB query over Parquet, (b) the weekly batch's scoring vs raw pred_contrib,
    (c) one pupil's score over HTTP vs a minimal FastAPI app and `mlflow models serve`,
    (d) training vs plain lightgbm.train, (e) start-up to the first score. Prints ours,
    the reference, their ratio and the goal for each.
    """
    from bench.suite import format_table, parse_only, run_bench, write_report

    names = parse_only(only)
    report = run_bench(
        students,
        only=names,
        work=work,
        seconds=seconds,
        profile_dir=profile,
        log=lambda line: typer.echo(line, err=True),
    )
    typer.echo(format_table(report))
    if out is not None:
        for path in write_report(report, out):
            typer.echo(f"wrote {path}")
