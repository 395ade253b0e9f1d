"""Loading the champion: from the registry, from the cache, not at all; reloading."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pytest

from features.snapshot import build_snapshot
from serving.registry import (
    META_FILE,
    MODEL_FILES,
    ModelHolder,
    NoChampionModel,
    load_champion,
)
from serving.settings import MlflowSettings, PathSettings, Settings
from tests.conftest import make_store
from training import track

AS_OF = dt.date(2025, 11, 17)


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> track.Store:
    """A store whose tracking server does not answer (fail fast, no retries)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = "http://127.0.0.1:9"
    return track.Store(uri, uri, "baoxue-test", "baoxue-risk")


def test_loads_the_champion_and_caches_it(trained, tmp_path: Path) -> None:
    result, store, _ = trained
    champion = track.alias_version(track.connect(store), store.model_name, track.CHAMPION)
    assert champion is not None
    loaded = load_champion(store, tmp_path / "cache")
    assert loaded.source == "registry"
    assert loaded.version == str(champion.version)
    assert loaded.name == store.model_name
    assert loaded.run_id == champion.run_id
    assert loaded.data_fingerprint == result.fingerprint
    assert loaded.trained_at is not None and loaded.test_metrics
    for name in (*MODEL_FILES, META_FILE):
        assert (tmp_path / "cache" / name).is_file()
    meta = json.loads((tmp_path / "cache" / META_FILE).read_text(encoding="utf-8"))
    assert meta["version"] == loaded.version
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cache")]  # no temp left


def test_falls_back_to_the_cache_when_the_registry_is_unreachable(
    trained, tmp_path: Path, nowhere: track.Store, small_county
) -> None:
    _, store, _ = trained
    fresh = load_champion(store, tmp_path / "cache")
    cached = load_champion(nowhere, tmp_path / "cache")
    assert cached.source == "cache"
    assert cached.version == fresh.version
    assert cached.data_fingerprint == fresh.data_fingerprint
    assert cached.test_metrics == pytest.approx(fresh.test_metrics)
    snapshot = build_snapshot(small_county, as_of=AS_OF)
    assert cached.model.risk_scores(snapshot) == pytest.approx(fresh.model.risk_scores(snapshot))

    holder = ModelHolder(nowhere, tmp_path / "cache")
    holder.load()
    status = holder.status()
    assert status["ready"] and status["degraded"]
    assert status["source"] == "cache" and status["version"] == fresh.version
    assert "cached" in status["message"]
    assert holder.reload() is False  # still unreachable: keep what we have
    assert holder.current is not None and holder.current.source == "cache"


def test_no_champion_and_no_cache_is_a_clear_error(tmp_path: Path, nowhere: track.Store) -> None:
    empty = make_store(tmp_path / "mlflow")
    track.connect(empty)
    with pytest.raises(NoChampionModel, match="no champion") as info:
        load_champion(empty, tmp_path / "cache")
    assert info.value.code == "no_champion_model"
    assert "baoxue train" in info.value.message
    with pytest.raises(NoChampionModel, match="could not be read"):
        load_champion(nowhere, tmp_path / "cache")

    holder = ModelHolder(nowhere, tmp_path / "cache")
    assert holder.current is None
    assert holder.status() == {**holder.status(), "ready": False, "degraded": True}
    assert holder.reload() is False
    with pytest.raises(NoChampionModel):
        holder.require()


def test_a_missing_sqlite_store_is_not_created(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    with pytest.raises(NoChampionModel):
        load_champion(track.Store(uri, uri, "e", "baoxue-risk"), tmp_path / "cache")
    assert not (tmp_path / "absent").exists()


def test_reload_follows_the_moved_alias(trained, tmp_path: Path, small_county) -> None:
    _, source_store, _ = trained
    model = load_champion(source_store, tmp_path / "source-cache").model
    assert model.contract is not None
    store = make_store(tmp_path / "mlflow")
    client = track.connect(store)
    snapshot = build_snapshot(small_county, as_of=AS_OF)
    example = snapshot.loc[:, ["student_id", *model.contract.feature_names]].head(2)
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            versions.append(
                track.log_risk_model(model, input_example=example, model_name=store.model_name)[1]
            )
    track.set_alias(client, store.model_name, track.CHAMPION, versions[0])

    holder = ModelHolder(store, tmp_path / "cache")
    assert holder.reload() is True  # nothing loaded before
    assert holder.current is not None and holder.current.version == versions[0]
    assert holder.reload() is False  # alias did not move
    track.set_alias(client, store.model_name, track.CHAMPION, versions[1])
    assert holder.reload() is True
    assert holder.current.version == versions[1]
    assert holder.status() == {
        "ready": True,
        "degraded": False,
        "source": "registry",
        "version": versions[1],
        "message": f"version {versions[1]} from the registry",
    }


def test_holder_from_settings_uses_the_settings_paths(tmp_path: Path) -> None:
    settings = Settings(
        paths=PathSettings(home=tmp_path),
        mlflow=MlflowSettings(model_name="some-model"),
    )
    holder = ModelHolder.from_settings(settings)
    assert holder.cache_dir == tmp_path / "model-cache"
    assert holder.store.model_name == "some-model"
    assert holder.store.tracking_uri == settings.tracking_uri
