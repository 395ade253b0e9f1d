"""Snapshots on a 2-worker Dask cluster equal the in-memory snapshots, row for row."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.distributed import (
    build_snapshots_dask,
    home_schools,
    read_partition,
    school_groups,
)
from features.snapshot import build_snapshots
from features.validation import InputTableError
from tests.dask_county import (
    AS_OFS,
    SCHOOLS_PER_PARTITION,
    PartitionedCounty,
    local_client,
    partitioned_county,
)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with local_client() as client:
        yield client


@pytest.fixture(scope="module")
def county(client: object, tmp_path_factory: pytest.TempPathFactory) -> PartitionedCounty:
    return partitioned_county(tmp_path_factory.mktemp("dask-county"))


def test_schools_are_grouped_in_sorted_order() -> None:
    schools = pd.DataFrame({"school_id": ["C", "A", "B", "D", "E"]})
    groups = school_groups(schools, schools_per_partition=2)
    assert groups.to_dict("list") == {
        "school_id": ["A", "B", "C", "D", "E"],
        "partition": [0, 0, 1, 1, 2],
    }
    with pytest.raises(ValueError, match="at least 1"):
        school_groups(schools, schools_per_partition=0)


def test_home_school_is_the_school_of_the_latest_enrolment() -> None:
    enrolments = pd.DataFrame(
        {
            "student_id": ["S1", "S1", "S2"],
            "school_year": ["2024", "2023", "2023"],
            "school_id": ["B", "A", "A"],
            "start_date": ["2024-08-01", "2023-08-01", ""],
        }
    )
    assert home_schools(enrolments).to_dict("list") == {
        "student_id": ["S1", "S2"],
        "school_id": ["B", "A"],
    }


def test_every_student_is_owned_by_one_partition_and_transfers_cross_partitions(
    county: PartitionedCounty,
) -> None:
    owned = pd.concat([read_partition(county.parts_dir, p)[1] for p in county.partitions])
    assert len(county.partitions) >= 2
    assert not owned.duplicated().any()
    assert set(owned) == set(county.tables.enrolments["student_id"].astype(str))
    # some pupils were at schools of two partitions: their peers must travel with them
    groups = school_groups(county.tables.schools, schools_per_partition=SCHOOLS_PER_PARTITION)
    partition_of = dict(zip(groups["school_id"], groups["partition"], strict=True))
    places = county.tables.enrolments.assign(
        partition=county.tables.enrolments["school_id"].astype(str).map(partition_of)
    )
    assert (places.groupby("student_id")["partition"].nunique() > 1).sum() >= 5


def test_dask_snapshots_equal_the_in_memory_snapshots(
    county: PartitionedCounty, client: object
) -> None:
    expected = build_snapshots(county.tables, as_ofs=list(AS_OFS))
    lazy = build_snapshots_dask(county.parts_dir, partitions=county.partitions, as_ofs=AS_OFS)
    assert lazy.npartitions == len(county.partitions)
    got = lazy.compute().sort_values(["as_of", "student_id"]).reset_index(drop=True)
    assert len(expected) > 300
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_partition_is_validated_like_an_export(county: PartitionedCounty, tmp_path: Path) -> None:
    broken = tmp_path / "parts"
    shutil.copytree(county.parts_dir, broken)
    for path in (broken / "students").rglob("*.parquet"):
        frame = pd.read_parquet(path)
        frame["sex"] = "X"
        frame.to_parquet(path, index=False)
    with pytest.raises(InputTableError, match="sex"):
        read_partition(broken, county.partitions[0])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_the_split_reads_csv_as_excel_and_wps_save_it(tmp_path: Path, encoding: str) -> None:
    from features.distributed import _read_table

    schools = pd.DataFrame({"school_id": ["甲小学", "B"], "name": ["一中", "二中"]})
    schools.to_csv(tmp_path / "schools.csv", index=False, encoding=encoding)
    got = _read_table(tmp_path, "schools").compute(scheduler="sync")
    assert list(got.columns) == ["school_id", "name"]
    assert list(got["name"]) == ["一中", "二中"]
