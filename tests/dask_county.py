"""A small synthetic county split into school partitions, and a local Dask cluster, for
the tests of the Dask path (`features/distributed.py`, `training/distributed.py`,
`serving/services/distributed_scoring.py`). Small on purpose: each test stays in seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.distributed import partition_export
from features.sources import read_export, write_export
from features.synthetic import generate_county
from features.tables import RawTables

N_STUDENTS = 400
N_YEARS = 2
SEED = 5
SCHOOLS_PER_PARTITION = 4
AS_OFS = (dt.date(2024, 11, 4), dt.date(2025, 5, 12))


@dataclass(frozen=True)
class PartitionedCounty:
    export_dir: Path
    parts_dir: Path
    partitions: list[int]
    tables: RawTables  # the whole export, read the usual way (the in-memory path)


@contextmanager
def local_client(*, processes: bool = False) -> Iterator[Any]:
    """A `distributed.LocalCluster` of 2 single-threaded workers and its client."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            # No memory limit: in-thread workers would measure the whole pytest process,
            # which passes 1 GiB late in the suite; the workers then pause and gather hangs.
            memory_limit=0,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def partitioned_county(root: Path, *, fmt: str = "parquet") -> PartitionedCounty:
    """Write the county as an export under `root` and split it (on the current client)."""
    county = generate_county(n_students=N_STUDENTS, n_years=N_YEARS, seed=SEED)
    export_dir = write_export(county, root / "export", fmt=fmt)  # type: ignore[arg-type]
    parts = partition_export(
        export_dir, root / "parts", schools_per_partition=SCHOOLS_PER_PARTITION
    )
    return PartitionedCounty(export_dir, root / "parts", parts, read_export(export_dir))


def with_bad_attendance_cell(export_dir: Path, out: Path, line: int) -> str:
    """A copy of a CSV export whose attendance line `line` has an unknown status;
    returns that row's student id (which no message may show)."""
    import shutil

    shutil.copytree(export_dir, out)
    attendance = (out / "attendance.csv").read_text(encoding="utf-8").splitlines()
    student, day, _ = attendance[line].split(",")
    attendance[line] = f"{student},{day},absent-ish"  # not an attendance status
    (out / "attendance.csv").write_text("\n".join(attendance) + "\n", encoding="utf-8")
    return student


def run_cli_on_dask(args: list[str], *, home: Path, scheduler: str, monkeypatch: Any) -> Any:
    """`baoxue <args>` through typer's runner with compute.backend = dask on `scheduler`
    and the service home `home`; the settings cache is cleared before and after."""
    from typer.testing import CliRunner

    from serving.cli import app
    from serving.settings import get_settings

    monkeypatch.setenv("BAOXUE_PATHS__HOME", str(home))
    monkeypatch.setenv("BAOXUE_COMPUTE__BACKEND", "dask")
    monkeypatch.setenv("BAOXUE_COMPUTE__SCHEDULER", scheduler)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, args, catch_exceptions=False)
    finally:
        get_settings.cache_clear()
