"""Load the model behind the registry's ``champion`` alias, keep a local copy, reload.

The service scores with whatever version the alias names (never a run id). Each
successful load from the registry writes the model's three artifacts and a `meta.json`
into the model cache folder, atomically, so that a service started while the tracking
server is down still scores with the last champion it saw ("cache", degraded). With
neither a reachable champion nor a cache, `load_champion` raises `NoChampionModel`.

At start-up the service does not wait for the registry when it has a cache:
`ModelHolder.start` serves the cached copy at once (source ``cache``, `/health`
degraded) and asks the registry in a background thread; when the registry's champion is
the cached version it is marked ``registry`` without loading it again, and when it is
another version that version is loaded and swapped in. Without a cache, `start` loads
from the registry before the service answers, as before.

The registry is read through `models.registry` (training keeps the writing, in
`training.track`), and MLflow (with LightGBM, behind `models.risk_model`) is imported
only when a model is read: importing this module, and so `serving.app`, stays light.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from models.registry import CHAMPION, Store, alias_version, load_risk_model, version_metrics
from serving.settings import Settings

if TYPE_CHECKING:  # imported where a model is read: mlflow costs ~1 s of start-up
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from models.risk_model import RiskModel

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
MODEL_FILES = ("booster.txt", "calibration.json", "contract.json")

Source = Literal["registry", "cache"]


class NoChampionModel(RuntimeError):
    """Neither the registry's champion nor a cached copy could be loaded."""

    code = "no_champion_model"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with where it came from.

    Attributes
    ----------
    model : the RiskModel (contract, booster, calibrator)
    name, version : registered model name and version number (as text)
    source : ``registry`` (loaded from MLflow now) or ``cache`` (the local copy)
    loaded_at : when this process loaded it (UTC)
    trained_at : when the version was registered (UTC), if known
    data_fingerprint : fingerprint of the export it was trained on, if known
    test_metrics : the training run's metrics on its test window
    run_id : the MLflow run that produced the version (for people, not for loading)
    """

    model: RiskModel
    name: str
    version: str
    source: Source
    loaded_at: dt.datetime
    trained_at: dt.datetime | None
    data_fingerprint: str | None
    test_metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None

    def meta(self) -> dict[str, Any]:
        """What `meta.json` holds (everything but the model and the source)."""
        return {
            "name": self.name,
            "version": self.version,
            "trained_at": self.trained_at.isoformat() if self.trained_at else None,
            "data_fingerprint": self.data_fingerprint,
            "test_metrics": self.test_metrics,
            "run_id": self.run_id,
            "cached_at": self.loaded_at.isoformat(),
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _require_sqlite_file(uri: str) -> None:
    """A local SQLite store that does not exist is "unreachable": MLflow would otherwise
    create an empty one, and the service must never do that."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:" and not Path(path).is_file():
            raise FileNotFoundError("the MLflow SQLite store does not exist")


def _point_mlflow(store: Store) -> MlflowClient:
    """Point MLflow at the store without creating anything in it (read-only use)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    _require_sqlite_file(store.tracking_uri)
    _require_sqlite_file(store.registry_uri)
    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.registry_uri)
    return MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)


def champion_version(store: Store) -> str | None:
    """The version number behind the champion alias; None when there is no champion.

    Raises whatever MLflow raises when the store cannot be reached.
    """
    mv = _champion(_point_mlflow(store), store)
    return None if mv is None else str(mv.version)


def _champion(client: MlflowClient, store: Store) -> ModelVersion | None:
    """The champion's model version, None without one; raises when unreachable (the
    probe first, since `alias_version` reads any MLflow error as "no alias")."""
    client.search_registered_models(max_results=1)
    return alias_version(client, store.model_name, CHAMPION)


def _from_registry(store: Store) -> LoadedModel:
    client = _point_mlflow(store)
    mv = _champion(client, store)
    if mv is None:
        raise LookupError(f"model {store.model_name!r} has no {CHAMPION!r} alias")
    # No pip-requirements check: it scans every installed package's file list (0.7 s of
    # start-up) only to warn, and the model is rebuilt from text artifacts by this
    # package's own code, so nothing pickled can differ with the environment.
    model, version = load_risk_model(store.model_name, str(mv.version), check_requirements=False)
    return _registry_model(client, store, mv, model, version)


def _registry_model(
    client: MlflowClient, store: Store, mv: ModelVersion, model: RiskModel, version: str
) -> LoadedModel:
    """`model` as the registry's version `mv`, with the version's metadata."""
    fingerprint: str | None = None
    trained_at: dt.datetime | None = None
    if mv.creation_timestamp:
        trained_at = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
    if mv.run_id:
        run = client.get_run(mv.run_id)
        fingerprint = run.data.params.get("data_fingerprint") or run.data.tags.get(
            "data_fingerprint"
        )
    return LoadedModel(
        model=model,
        name=store.model_name,
        version=version,
        source="registry",
        loaded_at=_now(),
        trained_at=trained_at,
        data_fingerprint=fingerprint,
        test_metrics=version_metrics(client, mv),
        run_id=mv.run_id or None,
    )


def write_cache(loaded: LoadedModel, cache_dir: Path) -> None:
    """Write the model's artifacts and meta.json into `cache_dir`, replacing it atomically."""
    cache_dir = Path(cache_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.", dir=cache_dir.parent))
    try:
        loaded.model.save_parts(tmp)
        (tmp / META_FILE).write_text(
            json.dumps(loaded.meta(), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        _replace_dir(tmp, cache_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing an existing folder with two renames."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{threading.get_ident()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _parse_time(text: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if isinstance(text, str) and text else None


def read_cache(cache_dir: Path) -> LoadedModel:
    """The cached champion (source ``cache``); raises FileNotFoundError when there is none."""
    cache_dir = Path(cache_dir)
    missing = [f for f in (*MODEL_FILES, META_FILE) if not (cache_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"no cached model in {cache_dir}")
    from models.risk_model import RiskModel

    meta = json.loads((cache_dir / META_FILE).read_text(encoding="utf-8"))
    return LoadedModel(
        model=RiskModel.from_dir(cache_dir),
        name=str(meta["name"]),
        version=str(meta["version"]),
        source="cache",
        loaded_at=_now(),
        trained_at=_parse_time(meta.get("trained_at")),
        data_fingerprint=meta.get("data_fingerprint"),
        test_metrics={k: float(v) for k, v in (meta.get("test_metrics") or {}).items()},
        run_id=meta.get("run_id"),
    )


def load_champion(store: Store, cache_dir: Path) -> LoadedModel:
    """The champion from the registry (and refresh the cache), else the cached copy.

    Raises
    ------
    NoChampionModel
        when the registry has no champion or cannot be reached, and there is no cache.
    """
    try:
        loaded = _from_registry(store)
    except Exception as exc:  # unreachable store, no alias, broken artifacts: use the cache
        problem = _describe(exc, store)
        logger.warning("champion not loaded from the registry (%s); trying the cache", problem)
        try:
            cached = read_cache(cache_dir)
        except FileNotFoundError:
            raise NoChampionModel(
                f"No model to score with: {problem}, and there is no cached copy in "
                f"{cache_dir}. Train a model (baoxue train) or check the MLflow address."
            ) from exc
        logger.warning("scoring with cached %s version %s", cached.name, cached.version)
        return cached
    try:
        write_cache(loaded, cache_dir)
    except OSError as exc:  # a cache we cannot write must not stop the service
        logger.warning("could not write the model cache in %s: %s", cache_dir, exc)
    logger.info("loaded %s version %s from the registry", loaded.name, loaded.version)
    return loaded


def _describe(exc: BaseException, store: Store) -> str:
    if isinstance(exc, LookupError):
        return f"model {store.model_name!r} has no champion in the registry"
    return f"the model registry could not be read ({type(exc).__name__})"


class ModelHolder:
    """The service's current model; thread-safe swaps on reload.

    ``current`` is None until `start`, `load` or `reload` succeeds. ``status()`` feeds
    /health. Loads (start's registry check, `load`, `reload`) take turns; a request that
    reads ``current`` waits only for a swap, never for the registry.
    """

    def __init__(self, store: Store, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = Path(cache_dir)
        self._lock = threading.RLock()  # guards _current and _message (held briefly)
        self._loading = threading.RLock()  # one load or registry check at a time
        self._current: LoadedModel | None = None
        self._message = "no model loaded yet"
        self._checker: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelHolder:
        store = Store(
            tracking_uri=settings.tracking_uri,
            registry_uri=settings.registry_uri,
            experiment=settings.mlflow.experiment,
            model_name=settings.mlflow.model_name,
            artifact_location=settings.artifact_location,
        )
        return cls(store, settings.paths.model_cache)

    @property
    def current(self) -> LoadedModel | None:
        with self._lock:
            return self._current

    def require(self) -> LoadedModel:
        """The current model, or NoChampionModel (for a request that needs one)."""
        with self._lock:
            current, message = self._current, self._message
        if current is None:
            raise NoChampionModel(f"No model to score with: {message}.")
        return current

    def start(self, *, check: bool = True, check_after_s: float = 0.0) -> LoadedModel:
        """Make a model current as soon as possible (the service's start-up).

        With a cached copy: serve it now (source ``cache``) and run `check_registry` in
        a background thread, `check_after_s` seconds later (so that it does not compete
        with the first requests for the interpreter; ``check=False`` leaves the check to
        the caller). Without a cache, or with one that cannot be read: `load` from the
        registry now.

        Raises
        ------
        NoChampionModel
            when there is no cache and the registry has no loadable champion.
        """
        try:
            cached = read_cache(self.cache_dir)
        except FileNotFoundError:
            return self.load()
        except Exception as exc:  # a damaged cache: the registry decides, as without one
            logger.warning(
                "the model cache in %s could not be read (%s); loading from the registry",
                self.cache_dir,
                type(exc).__name__,
            )
            return self.load()
        with self._lock:
            self._current = cached
            self._message = f"registry not checked yet; using cached version {cached.version}"
        logger.info("serving cached %s version %s", cached.name, cached.version)
        if check:
            self._checker = threading.Thread(
                target=self._check_later,
                args=(check_after_s,),
                name="baoxue-registry-check",
                daemon=True,
            )
            self._checker.start()
        return cached

    def check_registry(self) -> bool:
        """Ask the registry for its champion and make that current: the current model
        marked ``registry`` when it is that very version (same version and run, nothing
        loaded again), else the champion loaded (and cached) and swapped in.

        Returns True when the current version changed. Never raises: with the registry
        unreachable or without a champion, the current model stays and the status says
        why.
        """
        with self._loading:
            before = self.current
            try:
                client = _point_mlflow(self.store)
                mv = _champion(client, self.store)
                if mv is None:
                    raise LookupError(f"model {self.store.model_name!r} has no champion")
                if before is not None and _is_version(before, mv):
                    confirmed = _registry_model(
                        client, self.store, mv, before.model, str(mv.version)
                    )
                    self._set(replace(confirmed, loaded_at=before.loaded_at))
                    logger.info("registry confirms version %s", confirmed.version)
                    return False
            except Exception as exc:  # unreachable, no champion: keep what we serve
                self._note_failure(exc, before)
                return False
            logger.info("registry champion is version %s; loading it", mv.version)
            self._try_load()
            return self._changed(before)

    def _check_later(self, delay_s: float) -> None:
        if not self._stopping.wait(delay_s):
            self.check_registry()

    def wait_checked(self, timeout: float | None = None) -> bool:
        """Wait for start's registry check; True when it is over (or none was started)."""
        checker = self._checker
        if checker is None:
            return True
        checker.join(timeout)
        return not checker.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """At shutdown: cancel a registry check that has not begun, wait for one under
        way. True when none is left running."""
        self._stopping.set()
        return self.wait_checked(timeout)

    def load(self) -> LoadedModel:
        """Load the champion (or the cache) now and make it current."""
        with self._loading:
            try:
                loaded = load_champion(self.store, self.cache_dir)
            except NoChampionModel as exc:
                with self._lock:
                    self._message = exc.message
                raise
            self._set(loaded)
            return loaded

    def _set(self, loaded: LoadedModel) -> None:
        with self._lock:
            self._current = loaded
            self._message = (
                f"version {loaded.version} from the registry"
                if loaded.source == "registry"
                else f"registry unavailable; using cached version {loaded.version}"
            )

    def _note_failure(self, exc: BaseException, before: LoadedModel | None) -> None:
        message = _describe(exc, self.store)
        if before is not None:
            message += (
                f"; still using the cached version {before.version}"
                if before.source == "cache"
                else f"; still using version {before.version} from the registry"
            )
        with self._lock:
            self._message = message
        logger.warning("registry: %s", message)

    def reload(self) -> bool:
        """Load the champion again if the alias moved (or we run on the cache).

        Returns True when the current version changed. Never raises for an unreachable
        registry: the current model stays and the status says so.
        """
        with self._loading:
            before = self.current
            try:
                version = champion_version(self.store)
            except Exception as exc:
                self._note_failure(exc, before)
                if before is None:
                    self._try_load()
                return self._changed(before)
            if before is not None and before.source == "registry" and version == before.version:
                return False
            self._try_load()
            return self._changed(before)

    def _try_load(self) -> None:
        try:
            self.load()
        except NoChampionModel:
            logger.warning("reload: no champion and no cache")

    def _changed(self, before: LoadedModel | None) -> bool:
        after = self.current
        return after is not None and (before is None or after.version != before.version)

    def status(self) -> dict[str, Any]:
        """For /health: ready, degraded, source, version, message."""
        with self._lock:
            current = self._current
            return {
                "ready": current is not None,
                "degraded": current is None or current.source != "registry",
                "source": current.source if current else None,
                "version": current.version if current else None,
                "message": self._message,
            }


def _is_version(loaded: LoadedModel, mv: ModelVersion) -> bool:
    """Whether `loaded` is the registry's version `mv` (number and producing run agree:
    a registry rebuilt from scratch may reuse a number for another model)."""
    return loaded.version == str(mv.version) and (loaded.run_id or None) == (mv.run_id or None)
