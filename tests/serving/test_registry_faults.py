"""Registry faults seen from the service over HTTP: a registry that does not answer and a
champion version deleted from the registry both leave the service scoring with the
cached last good model, and `/health` says `degraded`. (Loading, the cache and reload
are tested in `test_registry.py`; a snapshot that breaks the model's feature contract
is refused naming the feature in `tests/serving/services/test_scoring.py` and
`tests/models/test_contract.py`.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serving.app import create_app
from serving.registry import load_champion
from serving.settings import MlflowSettings, PathSettings, ServingSettings, Settings
from tests.serving.conftest import staff_headers
from training import track

SECRET = "registry-faults-secret-0123456789-abcdef"


def _settings(home: Path, uri: str, model_name: str) -> Settings:
    return Settings(
        paths=PathSettings(home=home),
        mlflow=MlflowSettings(tracking_uri=uri, registry_uri=uri, model_name=model_name),
        serving=ServingSettings(secret_key=SECRET),
    )


def _health(settings: Settings) -> dict:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/health", headers=staff_headers(client))
        assert answer.status_code == 200, answer.text
        return answer.json()


def test_an_unreachable_registry_serves_the_cached_model_and_health_says_degraded(
    trained, tmp_path, monkeypatch
) -> None:
    _, store, _ = trained
    home = tmp_path / "home"
    good = load_champion(store, home / "model-cache")  # a good load filled the cache
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    health = _health(_settings(home, "http://127.0.0.1:9", store.model_name))
    assert health["status"] == "degraded"
    assert health["model"]["ready"] and health["model"]["degraded"]
    assert health["model"]["source"] == "cache" and health["model"]["version"] == good.version


def test_a_deleted_champion_version_serves_the_cached_model(trained, tmp_path) -> None:
    _, store, _ = trained
    registry = tmp_path / "mlflow.db"  # a copy: the session's store stays as it is
    shutil.copyfile(store.tracking_uri.removeprefix("sqlite:///"), registry)
    uri = f"sqlite:///{registry}"
    home = tmp_path / "home"
    settings = _settings(home, uri, store.model_name)
    first = _health(settings)
    assert first["status"] == "ok" and first["model"]["source"] == "registry"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = track.alias_version(client, store.model_name, track.CHAMPION)
    assert champion is not None
    client.delete_model_version(store.model_name, champion.version)

    health = _health(settings)
    assert health["status"] == "degraded"
    assert health["model"]["source"] == "cache"
    assert health["model"]["version"] == str(champion.version)
    assert "cached" in health["model"]["message"]


def test_no_registry_and_no_cache_is_not_ready(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = _settings(tmp_path / "home", "http://127.0.0.1:9", "baoxue-risk")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not_ready"


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch):
    monkeypatch.delenv("BAOXUE_MLFLOW__TRACKING_URI", raising=False)
