"""The in-app weekly scheduler runs the batch on Dask when compute.backend is dask, and
stores the same week as the in-memory batch (a 2-worker cluster, a small county, a real
registered champion, real SQLite databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.catalog import CATALOG_VERSION, catalog_for
from features.sources import read_export, write_export
from features.synthetic import generate_county
from models.calibration import Calibrator
from models.contract import FeatureContract
from models.gbm import make_classifier
from models.risk_model import RiskModel
from serving.scheduler import WeeklyScheduler
from serving.services.distributed_scoring import run_weekly_job_dask, weekly_job
from serving.services.weekly_lists import run_weekly_job
from serving.settings import Settings
from serving.storage import queries
from serving.storage.db import init_db, make_engine, session_factory
from tests.dask_county import N_STUDENTS, N_YEARS, SEED, local_client
from training import track

AS_OF = dt.date(2025, 5, 12)
CST = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_client() as client:  # in-thread workers: scoring needs no LightGBM network
        yield client


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home folder with the county's export and a registered champion."""
    from training.matrices import labelled_snapshots

    home = tmp_path_factory.mktemp("home")
    county = generate_county(n_students=N_STUDENTS, n_years=N_YEARS, seed=SEED)
    export = write_export(county, home / "data", fmt="parquet")
    tables = read_export(export)
    train = labelled_snapshots(
        tables, as_ofs=[dt.date(2024, 10, 7)], horizon=dt.timedelta(days=180)
    )
    specs = catalog_for(train)
    contract = FeatureContract(
        feature_names=tuple(s.name for s in specs),
        groups={s.name: s.group for s in specs},
        reason_codes={s.name: s.reason_code for s in specs},
        catalog_version=CATALOG_VERSION,
        horizon_days=180,
    )
    names = list(contract.feature_names)
    classifier = make_classifier(
        names, y=train["label"], overrides={"n_estimators": 30, "min_child_samples": 10}
    ).fit(train[names], train["label"])
    model = RiskModel.from_parts(
        classifier.booster_, Calibrator(method="sigmoid", a=-1.0, b=1.0), contract
    )
    settings = _settings(home, backend="pandas", scheduler=None)
    store = track.Store(
        tracking_uri=settings.tracking_uri,
        registry_uri=settings.registry_uri,
        experiment=settings.mlflow.experiment,
        model_name=settings.mlflow.model_name,
        artifact_location=settings.artifact_location,
    )
    client = track.connect(store)
    with mlflow.start_run():
        example = train.loc[:, ["student_id", "as_of", "school_id", "class_id", *names]].head(5)
        _, version = track.log_risk_model(model, input_example=example, model_name=store.model_name)
    track.set_alias(client, store.model_name, track.CHAMPION, version)
    return home


def _settings(home: Path, *, backend: str, scheduler: str | None) -> Settings:
    return Settings.model_validate(
        {
            "paths": {"home": str(home), "lists_dir": str(home / f"lists-{backend}")},
            "db": {"url": f"sqlite:///{home / f'baoxue-{backend}.db'}"},
            "serving": {"weekly_run_weekday": 0, "weekly_run_hour": 6},
            "compute": {"backend": backend, "scheduler": scheduler, "schools_per_partition": 4},
        }
    )


def _scheduled_week(settings: Settings) -> pd.DataFrame:
    """Run the scheduler's slot for AS_OF; the stored scores, by student."""
    init_db(settings.database_url)
    engine = make_engine(settings.database_url)
    reloads: list[int] = []
    try:
        sessions = session_factory(engine)
        scheduler = WeeklyScheduler(
            settings,
            sessions,
            lambda: reloads.append(1),
            clock=lambda: dt.datetime(2025, 5, 12, 7, tzinfo=CST),
        )
        assert scheduler.tick()  # due: no run yet this week
        with sessions() as session:
            run = queries.latest_run(session, status=None)
            stored = queries.scores_for(session, AS_OF)
    finally:
        engine.dispose()
    assert reloads == [1]
    assert run is not None and run.status == "done", run and run.status
    return (
        pd.DataFrame(
            [
                {
                    "student_id": s.student_id,
                    "school_id": s.school_id,
                    "tier": s.tier,
                    "rank_in_school": s.rank_in_school,
                    "risk_score": s.risk_score,
                    "reasons": tuple(r.reason_code for r in s.reasons),
                }
                for s in stored
            ]
        )
        .sort_values("student_id")
        .reset_index(drop=True)
    )


def test_the_weekly_job_follows_the_compute_backend(tmp_path: Path) -> None:
    assert weekly_job(_settings(tmp_path, backend="pandas", scheduler=None)) is run_weekly_job
    assert weekly_job(_settings(tmp_path, backend="dask", scheduler=None)) is run_weekly_job_dask


def test_the_scheduler_on_dask_stores_the_in_memory_week(home: Path, cluster: Any) -> None:
    in_memory = _scheduled_week(_settings(home, backend="pandas", scheduler=None))
    on_dask = _scheduled_week(_settings(home, backend="dask", scheduler=cluster.scheduler.address))
    assert (home / "partitions" / "_owners").is_dir()  # the Dask batch split the export
    assert len(in_memory) > 200 and (in_memory["tier"] == "high").sum() > 5
    assert sum(bool(r) for r in in_memory["reasons"]) > 5
    for column in ("student_id", "school_id", "tier", "rank_in_school", "reasons"):
        assert list(on_dask[column]) == list(in_memory[column]), column
    np.testing.assert_allclose(on_dask["risk_score"], in_memory["risk_score"], atol=1e-9)
    assert any((home / "lists-dask" / AS_OF.isoformat()).glob("*.xlsx"))
