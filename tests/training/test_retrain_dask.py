"""`baoxue retrain` with compute.backend = dask, on a 2-worker cluster, against the
in-memory `retrain` of the same term on the same export.

The in-memory retrain of term 2025-1 runs first and registers version 1 as champion (there
is none before it). The Dask retrain of the same term then scores that champion on the
term's rows on the cluster: the same rows and the same model must give the in-memory
retrain's numbers for it (its challenger column there), exactly for precision@k. The
Dask challenger itself is a `lightgbm.dask` model, not bit-identical (training/distributed.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from features.sources import read_export, write_export
from features.synthetic import generate_county
from features.tables import RawTables
from serving.cli import app
from serving.settings import get_settings
from tests.conftest import make_store
from tests.dask_county import local_client, run_cli_on_dask, with_bad_attendance_cell
from tests.training.test_distributed_pipeline import COUNTY_SEED, N_PUPILS, N_SCHOOL_YEARS
from training import track
from training.config import TrainingConfig
from training.retrain import FAIRNESS_ROW, RetrainResult, retrain, term_window

TERM = "2025-1"
# the county of test_distributed_pipeline.py with an as_of every 28 days (half its rows):
# 11,000 training and 5,000 test rows, 17 test dropouts; the retrain takes 18 s in memory
TOML = """
[training]
seed = 3
as_of_every_days = 28
early_stopping_rounds = 30
gbm = { n_estimators = 200 }
"""
SUMMARY_KEYS = ("auc", "pr_auc", "brier", "precision_at_k", "recall_at_k")


@pytest.fixture(scope="module")
def tables() -> RawTables:
    return generate_county(n_students=N_PUPILS, n_years=N_SCHOOL_YEARS, seed=COUNTY_SEED)


@pytest.fixture(scope="module")
def export(tables: RawTables, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_export(tables, tmp_path_factory.mktemp("dask-retrain") / "export", fmt="csv")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "train.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def in_memory(export: Path, config_file: Path, store_home: Path) -> RetrainResult:
    # the export as read back (CSV), as the command reads it
    config = TrainingConfig.from_toml(config_file)
    return retrain(read_export(export), config, store=make_store(store_home), term=TERM)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_client(processes=True) as client:  # LightGBM's network: one per process
        yield client


@pytest.fixture
def dask_env(store_home: Path, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    store = make_store(store_home)
    for key, value in {
        "BAOXUE_PATHS__HOME": str(store_home / "svc"),
        "BAOXUE_MLFLOW__TRACKING_URI": store.tracking_uri,
        "BAOXUE_MLFLOW__REGISTRY_URI": store.registry_uri,
        "BAOXUE_MLFLOW__EXPERIMENT": store.experiment,
        "BAOXUE_MLFLOW__MODEL_NAME": store.model_name,
        "BAOXUE_COMPUTE__BACKEND": "dask",
        "BAOXUE_COMPUTE__SCHEDULER": cluster.scheduler.address,
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield store_home / "svc"
    get_settings.cache_clear()


def test_baoxue_retrain_on_dask_decides_on_the_in_memory_rows(
    export: Path,
    config_file: Path,
    store_home: Path,
    in_memory: RetrainResult,
    tables: RawTables,
    dask_env: Path,
) -> None:
    store = make_store(store_home)
    assert in_memory.version == "1" and in_memory.alias == track.CHAMPION
    result = CliRunner().invoke(
        app,
        ["retrain", str(export), "--term", TERM, "--config", str(config_file)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "still trains in this process" not in result.output
    assert "challenger v2" in result.output and "champion v1" in result.output
    assert (dask_env / "partitions-train" / "_owners").is_dir()

    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
    versions = client.search_model_versions(f"name = '{store.model_name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    version = client.get_model_version(store.model_name, "2")
    run = client.get_run(version.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["baoxue.kind"] == "retrain" and tags["baoxue.backend"] == "dask"
    assert tags["baoxue.term"] == TERM
    alias = tags["baoxue.alias"]
    assert alias in (track.CHAMPION, track.CHALLENGER)
    assert str(client.get_model_version_by_alias(store.model_name, alias).version) == "2"
    # the same term, as_ofs, split and rows as in memory
    memory_run = client.get_run(in_memory.run_id)
    for key in ("term_start", "term_end", "test_from", "test_to", "train_from", "train_to"):
        assert params[key] == memory_run.data.params[key], key
    for part in ("train", "calibration", "test", "train_positive", "test_positive"):
        assert int(params[f"rows.{part}"]) == in_memory.n_rows[part], part
    assert in_memory.n_rows["test"] > 1000 and in_memory.n_rows["test_positive"] >= 5
    start, end = term_window(tables, TERM)
    assert params["term_start"] == start.isoformat() and params["term_end"] == end.isoformat()
    # the champion (version 1) scored on the cluster gives what the in-memory retrain
    # measured for the same model on the same rows
    mem = in_memory.table["challenger"]
    assert metrics["precision_at_k.champion"] == mem["P@k"]
    assert metrics["recall_at_k.champion"] == mem["R@k"]
    assert metrics["auc.champion"] == pytest.approx(mem["AUC"], abs=1e-9)
    assert metrics["pr_auc.champion"] == pytest.approx(mem["PR-AUC"], abs=1e-9)
    assert metrics["brier.champion"] == pytest.approx(mem["Brier"], abs=1e-9)
    for key in SUMMARY_KEYS:
        assert f"{key}.challenger" in metrics
    # a lightgbm.dask challenger: comparable, not identical (0.834-0.835 against 0.863 seen)
    auc_dask = metrics["auc.challenger"]
    assert auc_dask > 0.7 and abs(auc_dask - mem["AUC"]) < 0.1, (auc_dask, mem["AUC"])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"comparison.csv", "comparison.md", "decision.json"} <= top
    assert {"fairness_challenger.csv", "fairness_champion.csv"} <= top
    with open(
        client.download_artifacts(run.info.run_id, "comparison.csv"), encoding="utf-8"
    ) as handle:
        comparison = handle.read()
    assert FAIRNESS_ROW in comparison and "P@k" in comparison
    with open(
        client.download_artifacts(run.info.run_id, "decision.json"), encoding="utf-8"
    ) as handle:
        decision = json.load(handle)
    assert decision["champion_version"] == "1" and decision["alias"] == alias
    # which model wins is not fixed (a lightgbm.dask challenger), but the decision is: it
    # follows from the two precisions@k on the same rows and the fairness gate
    wins = metrics["precision_at_k.challenger"] > metrics["precision_at_k.champion"]
    assert decision["promote"] is (wins and not decision["fairness_blocks"])
    assert alias == (track.CHAMPION if decision["promote"] else track.CHALLENGER)
    assert decision["reasons"][-1] in result.output


def test_dask_terms_are_the_in_memory_terms_and_a_missing_term_is_named(
    export: Path, tables: RawTables, dask_env: Path, cluster: Any
) -> None:
    from features.distributed import partition_export
    from training.distributed_retrain import export_terms
    from training.retrain import term_window_of

    parts = partition_export(export, dask_env / "terms", schools_per_partition=4)
    days, _, terms = export_terms(dask_env / "terms", partitions=parts)
    assert days[-1] == pd.to_datetime(tables.calendar["date"]).max().date()
    for term in ("2023-2", "2024-1", "2024-2", "2025-1"):
        assert term_window_of(terms, term) == term_window(tables, term), term

    result = CliRunner().invoke(app, ["retrain", str(export), "--term", "2031-1"])
    assert result.exit_code == 1, result.output
    assert "no autumn term 2031" in result.output and "Traceback" not in result.output


def test_baoxue_retrain_on_dask_names_a_bad_cell_and_registers_nothing(
    export: Path, cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad-export"
    student = with_bad_attendance_cell(export, bad, 7)
    home = tmp_path / "home"
    result = run_cli_on_dask(
        ["retrain", str(bad), "--term", TERM],
        home=home,
        scheduler=cluster.scheduler.address,
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 1, result.output
    assert "attendance" in result.output and "status" in result.output
    assert "Traceback" not in result.output and student not in result.output
    assert not (home / "mlflow.db").exists()
