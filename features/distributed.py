"""Snapshots on a Dask cluster: the export split into Parquet partitions by school.

The in-memory path (`features.snapshot.build_snapshots`) needs every table in one process.
For a province that is too much, so here the export is split once into partitions of a
few schools each, and each partition is built by `build_snapshots` on its own, on any
worker. No step holds all students: the split is Dask merges over the tables, and each
task reads one partition.

**What a partition holds.** Every student is *owned* by one partition: the one of their
home school (the school of their latest enrolment row). A partition's tables hold every
row of its owned students, plus every row of their *peers*: students with an enrolment
row in a (school, school year) where an owned student has one, because the exam rank
percentile (`features.academics`) compares a sitting with the other sittings of the same
school, grade and school year. Every other feature looks at one student's own rows and
their school's calendar, which is included for each school those students were at.
So a partition's snapshot rows for its owned students are exactly the in-memory rows;
rows of peers are dropped (their own partition builds them).

Layout on disk (hive-style Parquet, one folder per table and partition)::

    out/<table>/partition=<p>/part.<i>.parquet   cells as read from the export
    out/_owners/partition=<p>/part.<i>.parquet   student_id of the students p owns

A partition is read back through `features.validation.validate_raw`, the same checks
and typing as `features.sources.load_export`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from features.snapshot import build_snapshots
from features.tables import ALL_TABLES, REQUIRED_TABLES, RawTables
from features.validation import validate_raw

logger = logging.getLogger(__name__)

OWNERS = "_owners"
PARTITION = "partition"
SCHOOL_TABLES = ("schools", "calendar")  # keyed by school_id, not student_id
KEY = "string"  # the dtype of join keys, whatever the file format gave


def school_groups(schools: pd.DataFrame, *, schools_per_partition: int) -> pd.DataFrame:
    """Partition number of each school: sorted ids, `schools_per_partition` to a partition.

    Parameters
    ----------
    schools : pd.DataFrame
        The export's `schools` table (``school_id``).
    schools_per_partition : int
        How many schools share a partition (>= 1).

    Returns
    -------
    pd.DataFrame
        ``school_id`` (str), ``partition`` (int64), one row per school.
    """
    if schools_per_partition < 1:
        raise ValueError("schools_per_partition must be at least 1")
    ids = sorted(set(schools["school_id"].astype("str")))
    return pd.DataFrame(
        {
            "school_id": pd.Series(ids, dtype="str"),
            PARTITION: pd.Series(
                [i // schools_per_partition for i in range(len(ids))], dtype="int64"
            ),
        }
    )


def home_schools(enrolments: pd.DataFrame) -> pd.DataFrame:
    """Each student's home school: the school of their latest enrolment row.

    Latest = greatest (``school_year``, ``start_date``, ``school_id``) as read (ISO dates
    and four-digit years order the same as text). Works on any frame holding all the
    rows of the students in it, so it runs per Dask partition after a shuffle by student.

    Returns
    -------
    pd.DataFrame
        ``student_id``, ``school_id`` (str), one row per student.
    """
    keys = pd.DataFrame(
        {
            "student_id": enrolments["student_id"].astype("str"),
            "school_year": enrolments["school_year"].astype("str"),
            "start_date": enrolments["start_date"].astype("str").fillna("")
            if "start_date" in enrolments.columns
            else "",
            "school_id": enrolments["school_id"].astype("str"),
        }
    )
    latest = keys.sort_values(["student_id", "school_year", "start_date", "school_id"])
    latest = latest.drop_duplicates("student_id", keep="last")
    return latest.loc[:, ["student_id", "school_id"]].reset_index(drop=True)


def _dd() -> Any:
    import dask.dataframe as dd

    return dd


def _read_table(export_dir: Path, name: str) -> Any | None:
    """One export table as a Dask DataFrame of raw cells (CSV as text), or None if absent."""
    dd = _dd()
    csv, parquet = export_dir / f"{name}.csv", export_dir / f"{name}.parquet"
    if parquet.exists():
        return dd.read_parquet(parquet)
    if csv.exists():
        return dd.read_csv(
            csv,
            dtype=str,
            keep_default_na=False,
            blocksize="64MB",
            encoding=_csv_encoding(csv),
        )
    return None


def _csv_encoding(path: Path) -> str:
    """`utf-8-sig` (with or without Excel's BOM) or, when the start is not UTF-8, GB18030
    (what `features.sources` also accepts); judged on the first megabyte."""
    import codecs

    with path.open("rb") as file:
        head = file.read(1 << 20)
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8-sig"


def partition_export(
    export_dir: Path, out_dir: Path, *, schools_per_partition: int = 4
) -> list[int]:
    """Split the export in `export_dir` into school partitions under `out_dir`.

    Runs as Dask merges (on the current Dask client, if any); returns the partition
    numbers that own at least one student. `out_dir` is replaced. Reading a partition back
    validates it (`read_partition`); the whole export should pass `baoxue validate` first.
    """
    import os
    import shutil

    from dask.base import compute, persist

    export_dir, out_dir = Path(export_dir), Path(out_dir)
    raw: dict[str, Any] = {name: _read_table(export_dir, name) for name in ALL_TABLES}
    missing = [name for name in REQUIRED_TABLES if raw[name] is None]
    if missing:
        raise FileNotFoundError(f"{export_dir} lacks the table(s) {', '.join(missing)}")
    dd = _dd()
    groups = dd.from_pandas(
        school_groups(
            raw["schools"][["school_id"]].compute(), schools_per_partition=schools_per_partition
        ).astype({"school_id": KEY}),
        npartitions=1,
    )
    enrolments = raw["enrolments"]
    enrol_keys = enrolments.assign(
        student_id=enrolments["student_id"].astype(KEY),
        school_id=enrolments["school_id"].astype(KEY),
        school_year=enrolments["school_year"].astype(KEY),
    )
    columns = ["student_id", "school_year", "school_id"]
    if "start_date" in enrolments.columns:
        columns.append("start_date")
    by_student = enrol_keys[columns].shuffle("student_id", shuffle_method="tasks")
    homes = by_student.map_partitions(
        home_schools, meta={"student_id": "str", "school_id": "str"}
    ).astype(KEY)
    owners = homes.merge(groups, on="school_id")[["student_id", PARTITION]]
    # peers: anyone enrolled in a (school, year) where an owned student is enrolled
    owned_places = (
        enrol_keys[["student_id", "school_id", "school_year"]]
        .merge(owners, on="student_id")[["school_id", "school_year", PARTITION]]
        .drop_duplicates()
    )
    peers = enrol_keys[["student_id", "school_id", "school_year"]].merge(
        owned_places, on=["school_id", "school_year"]
    )[["student_id", PARTITION]]
    members = dd.concat([owners, peers]).drop_duplicates()
    # schools (and their calendars) of every enrolment or event of a partition's members
    places = [enrol_keys[["student_id", "school_id"]]]
    events = raw["status_events"]
    places.append(events[["student_id", "school_id"]].astype(KEY))
    school_members = (
        dd.concat(places).merge(members, on="student_id")[["school_id", PARTITION]]
    ).drop_duplicates()

    # kept on the workers (never gathered), so each table's merge reuses them
    owners, members, school_members = persist(  # type: ignore[no-untyped-call]
        owners, members, school_members
    )
    # written beside out_dir and swapped in at the end: a failed split leaves the old one
    new_dir = out_dir.with_name(f".{out_dir.name}.new-{os.getpid()}")
    shutil.rmtree(new_dir, ignore_errors=True)
    new_dir.mkdir(parents=True)
    writes = [owners.to_parquet(new_dir / OWNERS, partition_on=[PARTITION], compute=False)]
    for name, table in raw.items():
        if table is None:
            continue
        keyed = table.assign(
            **{key: table[key].astype(KEY) for key in ("student_id", "school_id") if key in table}
        )
        on, keys = (
            ("school_id", school_members) if name in SCHOOL_TABLES else ("student_id", members)
        )
        writes.append(
            keyed.merge(keys, on=on).to_parquet(
                new_dir / name, partition_on=[PARTITION], write_index=False, compute=False
            )
        )
    try:
        compute(*writes)  # type: ignore[no-untyped-call]
    except BaseException:
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    old_dir = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old_dir)
    os.replace(new_dir, out_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
    partitions = sorted(int(p) for p in owners[PARTITION].unique().compute())
    logger.info(
        "split export into %d partitions of up to %d schools under %s",
        len(partitions),
        schools_per_partition,
        out_dir,
    )
    return partitions


def _read_part(path: Path, partition: int) -> pd.DataFrame | None:
    if not path.exists():
        return None
    frame = pd.read_parquet(path, filters=[(PARTITION, "==", partition)])
    return frame.drop(columns=[PARTITION]).reset_index(drop=True)


def read_partition(parts_dir: Path, partition: int) -> tuple[RawTables, pd.Series]:
    """The validated tables of one partition and the ids of the students it owns."""
    parts_dir = Path(parts_dir)
    raw = {name: _read_part(parts_dir / name, partition) for name in ALL_TABLES}
    files = {name: f"{name} (partition {partition})" for name in ALL_TABLES}
    tables = validate_raw(raw, files).tables
    owners = _read_part(parts_dir / OWNERS, partition)
    if owners is None:
        raise FileNotFoundError(f"{parts_dir} is not a partitioned export (no {OWNERS})")
    return tables, owners["student_id"].astype("str")


def owned_snapshots(
    tables: RawTables, owned: pd.Series, *, as_ofs: Sequence[dt.date]
) -> pd.DataFrame:
    """`build_snapshots` on one partition's tables, keeping the rows of the students it
    owns (the rows of peers belong to their own partitions)."""
    snapshot = build_snapshots(tables, as_ofs=list(as_ofs))
    keep = snapshot["student_id"].isin(set(owned))
    return snapshot[keep].reset_index(drop=True)


def snapshot_partition(
    parts_dir: Path, partition: int, *, as_ofs: Sequence[dt.date]
) -> pd.DataFrame:
    """`build_snapshots` on one partition, keeping the rows of the students it owns."""
    tables, owned = read_partition(parts_dir, partition)
    return owned_snapshots(tables, owned, as_ofs=as_ofs)


def build_snapshots_dask(
    parts_dir: Path, *, partitions: Sequence[int], as_ofs: Sequence[dt.date]
) -> Any:
    """Snapshot rows of every partition as a Dask DataFrame, one Dask partition each.

    Each Dask partition is sorted like `build_snapshots` (``as_of``, ``student_id``);
    the rows of all of them, sorted the same way, equal `build_snapshots` on the whole
    export. Nothing is computed until the caller asks.
    """
    from dask.delayed import delayed

    dd = _dd()
    tasks = [
        delayed(snapshot_partition)(Path(parts_dir), p, as_ofs=list(as_ofs)) for p in partitions
    ]
    if not tasks:
        raise ValueError("no partitions to build")
    return dd.from_delayed(tasks, verify_meta=False)
