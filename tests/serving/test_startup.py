"""The service's start-up: a light `import serving.app`, and the cached model served at
once while the registry is asked in the background (then confirmed, or replaced by
another champion, or kept with the reason when the registry does not answer).

Real parts: LightGBM boosters of a few trees on the small county's snapshot, registered
in an MLflow SQLite store under `tmp_path`, the app through `TestClient`.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient

from features.catalog import CATALOG_VERSION, catalog_for
from features.snapshot import build_snapshot
from models.calibration import Calibrator
from models.contract import FeatureContract
from models.gbm import make_classifier
from models.risk_model import RiskModel
from serving.app import create_app
from serving.registry import META_FILE, ModelHolder, load_champion
from serving.settings import MlflowSettings, PathSettings, ServingSettings, Settings
from tests.conftest import make_store
from tests.serving.conftest import staff_headers
from training import track

AS_OF = dt.date(2025, 11, 17)
SECRET = "startup-tests-secret-0123456789-abcdef"
HEAVY = ("mlflow", "matplotlib", "shap", "optuna", "dask", "distributed")


def test_importing_the_app_imports_no_mlflow_nor_plotting() -> None:
    code = (
        "import json, sys, serving.app; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@dataclass(frozen=True)
class Registered:
    store: track.Store
    versions: tuple[str, str]  # 10 trees, then 4 trees
    trees: dict[str, int]


@pytest.fixture(scope="module")
def registered(small_county, tmp_path_factory) -> Registered:
    """Two versions of a small real risk model in a fresh MLflow store."""
    snapshot = build_snapshot(small_county, as_of=AS_OF)
    specs = catalog_for(snapshot)
    contract = FeatureContract(
        feature_names=tuple(s.name for s in specs),
        groups={s.name: s.group for s in specs},
        reason_codes={s.name: s.reason_code for s in specs},
        catalog_version=CATALOG_VERSION,
        horizon_days=180,
    )
    names = list(contract.feature_names)
    y = (snapshot["unexcused_30d"].rank(method="first") > 0.9 * len(snapshot)).astype(int)
    store = make_store(tmp_path_factory.mktemp("startup-mlflow"))
    client = track.connect(store)
    example = snapshot.loc[:, ["student_id", *names]].head(2)
    versions, trees = [], {}
    for n_trees in (10, 4):
        classifier = make_classifier(
            names, y=y, n_jobs=1, overrides={"n_estimators": n_trees, "min_child_samples": 5}
        ).fit(snapshot[names], y)
        model = RiskModel.from_parts(classifier.booster_, Calibrator(method="identity"), contract)
        with mlflow.start_run():
            _, version = track.log_risk_model(
                model, input_example=example, model_name=store.model_name
            )
        versions.append(version)
        trees[version] = classifier.booster_.num_trees()
    assert trees[versions[0]] != trees[versions[1]]
    track.set_alias(client, store.model_name, track.CHAMPION, versions[0])
    return Registered(store, (versions[0], versions[1]), trees)


def _champion(registered: Registered, version: str) -> None:
    client = track.connect(registered.store)
    track.set_alias(client, registered.store.model_name, track.CHAMPION, version)


def _cache_of(registered: Registered, version: str, cache: Path) -> None:
    """Fill `cache` as a service that last saw `version` as champion would have."""
    _champion(registered, version)
    assert load_champion(registered.store, cache).version == version


def test_the_cache_is_served_at_once_and_replaced_by_another_champion(
    registered: Registered, tmp_path: Path
) -> None:
    old, new = registered.versions
    cache = tmp_path / "cache"
    _cache_of(registered, old, cache)
    _champion(registered, new)  # retrained while the service was down

    holder = ModelHolder(registered.store, cache)
    started = holder.start(check=False)
    assert started.source == "cache" and started.version == old
    assert holder.status() == {
        "ready": True,
        "degraded": True,
        "source": "cache",
        "version": old,
        "message": f"registry not checked yet; using cached version {old}",
    }
    assert holder.require().model.booster.num_trees() == registered.trees[old]

    assert holder.check_registry() is True
    current = holder.require()
    assert (current.source, current.version) == ("registry", new)
    assert current.model.booster.num_trees() == registered.trees[new]
    assert holder.status()["degraded"] is False
    meta = json.loads((cache / META_FILE).read_text(encoding="utf-8"))
    assert meta["version"] == new  # the cache follows the champion


def test_the_registry_confirms_the_cached_version_without_loading_it_again(
    registered: Registered, tmp_path: Path
) -> None:
    version = registered.versions[0]
    cache = tmp_path / "cache"
    _cache_of(registered, version, cache)

    holder = ModelHolder(registered.store, cache)
    cached = holder.start(check=False)
    assert holder.check_registry() is False  # same version: nothing changed
    current = holder.require()
    assert (current.source, current.version) == ("registry", version)
    assert current.model is cached.model
    assert current.loaded_at == cached.loaded_at
    assert current.run_id == cached.run_id and current.trained_at is not None
    assert holder.status()["message"] == f"version {version} from the registry"


def test_a_registry_that_answers_later_takes_over_from_the_cache(
    registered: Registered, tmp_path: Path
) -> None:
    version = registered.versions[0]
    cache = tmp_path / "cache"
    _cache_of(registered, version, cache)
    later = tmp_path / "later" / "mlflow.db"  # not there yet: the registry is down
    uri = f"sqlite:///{later}"
    store = track.Store(uri, uri, "baoxue-test", registered.store.model_name)

    holder = ModelHolder(store, cache)
    holder.start(check=False)
    assert holder.check_registry() is False
    status = holder.status()
    assert (status["source"], status["version"], status["degraded"]) == ("cache", version, True)
    assert status["message"] == (
        f"the model registry could not be read (FileNotFoundError); "
        f"still using the cached version {version}"
    )
    assert not later.parent.exists()  # the service never creates a store

    later.parent.mkdir()
    shutil.copyfile(registered.store.tracking_uri.removeprefix("sqlite:///"), later)
    assert holder.check_registry() is False
    assert holder.status()["source"] == "registry" and not holder.status()["degraded"]


def test_a_damaged_cache_falls_back_to_the_registry(registered: Registered, tmp_path: Path) -> None:
    version = registered.versions[0]
    cache = tmp_path / "cache"
    _cache_of(registered, version, cache)
    (cache / META_FILE).write_text("{not json", encoding="utf-8")

    holder = ModelHolder(registered.store, cache)
    loaded = holder.start()
    assert (loaded.source, loaded.version) == ("registry", version)
    assert holder.wait_checked(0)  # loaded before answering: no background check
    assert json.loads((cache / META_FILE).read_text(encoding="utf-8"))["version"] == version


def _settings(home: Path, store: track.Store, check_after_s: float) -> Settings:
    return Settings(
        paths=PathSettings(home=home),
        mlflow=MlflowSettings(
            tracking_uri=store.tracking_uri,
            registry_uri=store.registry_uri,
            model_name=store.model_name,
        ),
        serving=ServingSettings(secret_key=SECRET, registry_check_after_s=check_after_s),
    )


def test_health_says_cache_until_the_registry_answers_then_registry(
    registered: Registered, tmp_path: Path
) -> None:
    old, new = registered.versions
    home = tmp_path / "home"
    _cache_of(registered, old, home / "model-cache")
    _champion(registered, new)

    # The check is due in an hour: the service answers from the cache, and shutting down
    # cancels the check instead of waiting for it.
    with TestClient(create_app(_settings(home, registered.store, 3600))) as client:
        health = client.get("/health", headers=staff_headers(client))
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["model"] == {
            "ready": True,
            "degraded": True,
            "source": "cache",
            "version": old,
            "message": f"registry not checked yet; using cached version {old}",
        }
        stopping = time.perf_counter()
    assert time.perf_counter() - stopping < 5

    with TestClient(create_app(_settings(home, registered.store, 0))) as client:
        assert client.app.state.models.wait_checked(60)
        health = client.get("/health", headers=staff_headers(client)).json()
    assert health["status"] == "ok"
    assert health["model"]["source"] == "registry" and health["model"]["version"] == new
    assert health["model"]["message"] == f"version {new} from the registry"


def test_without_a_cache_the_champion_is_loaded_before_the_first_answer(
    registered: Registered, tmp_path: Path
) -> None:
    version = registered.versions[0]
    _champion(registered, version)
    home = tmp_path / "home"
    with TestClient(create_app(_settings(home, registered.store, 0))) as client:
        health = client.get("/health", headers=staff_headers(client)).json()  # loaded at start
    assert health["status"] == "ok"
    assert (health["model"]["source"], health["model"]["version"]) == ("registry", version)
    assert (home / "model-cache" / META_FILE).is_file()
