"""Session-wide real data: a seeded synthetic county, and a model trained on it into a
temporary MLflow store. Built once per test session; tests must not modify them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

SMALL_STUDENTS = 2500
SMALL_YEARS = 3
SMALL_SEED = 11


@pytest.fixture(scope="session")
def small_county():
    """A 2,500-pupil, 3-year synthetic county (RawTables)."""
    from features.synthetic import generate_county

    return generate_county(n_students=SMALL_STUDENTS, n_years=SMALL_YEARS, seed=SMALL_SEED)


@pytest.fixture(scope="session")
def small_export(small_county, tmp_path_factory) -> Path:
    """The small county written as a Parquet export folder."""
    from features.sources import write_export

    return write_export(small_county, tmp_path_factory.mktemp("export") / "county", fmt="parquet")


def make_store(home: Path):
    from training.track import Store

    home.mkdir(parents=True, exist_ok=True)
    return Store(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        registry_uri=f"sqlite:///{home / 'mlflow.db'}",
        experiment="baoxue-test",
        model_name="baoxue-risk",
        artifact_location=(home / "mlartifacts").as_uri(),
    )


@pytest.fixture(scope="session")
def trained(small_county, tmp_path_factory):
    """(TrainResult, Store, TrainingConfig) of one real training run on the small county."""
    from training.config import TrainingConfig
    from training.pipeline import run_experiment

    store = make_store(tmp_path_factory.mktemp("mlflow"))
    config = TrainingConfig(seed=3)
    result = run_experiment(small_county, config, store=store)
    return result, store, config
