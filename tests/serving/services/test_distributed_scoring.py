"""The weekly batch on a 2-worker Dask cluster gives the in-memory batch's rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalog import CATALOG_VERSION, catalog_for
from features.distributed import build_snapshots_dask
from models.calibration import Calibrator
from models.contract import FeatureContract
from models.gbm import make_classifier
from models.risk_model import RiskModel
from serving.registry import LoadedModel
from serving.services.distributed_scoring import run_weekly_dask, score_week_dask
from serving.services.weekly_lists import ranks_in_school, score_week, weekly_rows
from serving.storage import queries
from serving.storage.db import init_db, make_engine, session_factory
from tests.dask_county import PartitionedCounty, local_client, partitioned_county

AS_OF = dt.date(2025, 5, 12)
CAPACITY_SHARE = 0.1


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with local_client() as client:
        yield client


@pytest.fixture(scope="module")
def county(client: object, tmp_path_factory: pytest.TempPathFactory) -> PartitionedCounty:
    return partitioned_county(tmp_path_factory.mktemp("dask-county"))


@pytest.fixture(scope="module")
def loaded(county: PartitionedCounty) -> LoadedModel:
    """A small real LightGBM risk model on the county's autumn snapshot."""
    from features.snapshot import build_snapshot
    from training.matrices import labelled_snapshots

    train = labelled_snapshots(
        county.tables, as_ofs=[dt.date(2024, 10, 7)], horizon=dt.timedelta(days=180)
    )
    specs = catalog_for(build_snapshot(county.tables, as_of=dt.date(2024, 10, 7)))
    contract = FeatureContract(
        feature_names=tuple(s.name for s in specs),
        groups={s.name: s.group for s in specs},
        reason_codes={s.name: s.reason_code for s in specs},
        catalog_version=CATALOG_VERSION,
        horizon_days=180,
    )
    names = list(contract.feature_names)
    classifier = make_classifier(
        names,
        y=train["label"],
        overrides={"n_estimators": 30, "min_child_samples": 10},
    ).fit(train[names], train["label"])
    model = RiskModel.from_parts(
        classifier.booster_, Calibrator(method="sigmoid", a=-1.0, b=1.0), contract
    )
    return LoadedModel(
        model=model,
        name="baoxue-risk",
        version="1",
        source="registry",
        loaded_at=dt.datetime(2025, 5, 12, tzinfo=dt.UTC),
        trained_at=None,
        data_fingerprint=None,
    )


@pytest.fixture(scope="module")
def expected(loaded: LoadedModel, county: PartitionedCounty) -> pd.DataFrame:
    """The in-memory batch's rows (`score_week`), by student_id."""
    scored, tiers = score_week(
        loaded, county.tables, as_of=AS_OF, capacity=None, capacity_share=CAPACITY_SHARE
    )
    rows = weekly_rows(scored, tiers, ranks_in_school(scored))
    explained = [s.explained for s in scored]  # weekly_rows keeps the order of `scored`
    frame = pd.DataFrame(
        [{**dict(r), "explained": e} for r, e in zip(rows, explained, strict=True)]
    )
    return frame.sort_values("student_id").reset_index(drop=True)


def _assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got["student_id"]) == list(expected["student_id"])
    for column in ("school_id", "class_id", "grade_level", "rank_in_school", "tier"):
        assert list(got[column]) == list(expected[column]), column
    assert list(got["escalation_level"]) == list(expected["escalation_level"])
    for column in ("risk_score", "margin"):
        np.testing.assert_allclose(got[column], expected[column], rtol=0, atol=1e-9)
    for mine, theirs in zip(got["reasons"], expected["reasons"], strict=True):
        assert [r.reason_code for r in mine] == [r.reason_code for r in theirs]
        np.testing.assert_allclose(
            [r.contribution for r in mine], [r.contribution for r in theirs], atol=1e-9
        )


def test_dask_batch_rows_equal_the_in_memory_batch(
    county: PartitionedCounty, loaded: LoadedModel, expected: pd.DataFrame
) -> None:
    snapshots = build_snapshots_dask(county.parts_dir, partitions=county.partitions, as_ofs=[AS_OF])
    rows = score_week_dask(snapshots, loaded, capacity=None, capacity_share=CAPACITY_SHARE)
    assert rows.npartitions == len(county.partitions)  # one scoring task per partition
    got = rows.compute().sort_values("student_id").reset_index(drop=True)
    assert len(expected) > 200 and (expected["tier"] == "high").sum() > 5
    assert sum(bool(r) for r in expected["reasons"]) > 5  # the shown pupils are explained
    _assert_same_rows(got, expected)
    assert list(got["explained"]) == list(expected["explained"])


def test_dask_weekly_run_stores_the_in_memory_rows_and_writes_lists(
    county: PartitionedCounty, loaded: LoadedModel, expected: pd.DataFrame, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'baoxue.db'}"
    init_db(url)
    engine = make_engine(url)
    try:
        snapshots = build_snapshots_dask(
            county.parts_dir, partitions=county.partitions, as_ofs=[AS_OF]
        )
        result = run_weekly_dask(
            session_factory(engine),
            loaded,
            snapshots,
            as_of=AS_OF,
            capacity=None,
            capacity_share=CAPACITY_SHARE,
            lists_dir=tmp_path / "lists",
        )
        with session_factory(engine)() as session:
            stored = queries.scores_for(session, AS_OF)
            run = queries.latest_run(session)
    finally:
        engine.dispose()
    got = (
        pd.DataFrame(
            [
                {
                    **{
                        f: getattr(s, f)
                        for f in expected.columns
                        if f not in ("reasons", "explained")
                    },
                    "reasons": tuple(s.reasons),
                }
                for s in stored
            ]
        )
        .sort_values("student_id")
        .reset_index(drop=True)
    )
    _assert_same_rows(got, expected)
    assert result.n_students == len(expected)
    assert result.n_explained == int(expected["explained"].sum())
    assert run is not None and run.id == result.run_id and run.n_students == len(expected)
    schools = sorted(expected["school_id"].unique())
    written = {p.name for p in result.files}
    assert all(any(school in name for name in written) for school in schools)
