"""MLflow: runs, the packaged model, the registry and its aliases (the I/O edge).

The default store is local: a SQLite tracking/registry database and an artifact folder in
the home folder (MLflow 3 refuses a plain file store). Any tracking server works by
setting its URI.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # imported where MLflow is used: `mlflow` alone takes ~1 s to import,
    # and the service's start-up (serving.registry imports this module) should not wait
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from models.risk_model import RiskModel

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "risk_model"


@dataclass(frozen=True)
class Store:
    """Where runs and models go."""

    tracking_uri: str
    registry_uri: str
    experiment: str
    model_name: str
    artifact_location: str | None = None  # for a local store; a server decides its own


def connect(store: Store) -> MlflowClient:
    """Point MLflow at the store and make sure the experiment exists."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.registry_uri)
    client = MlflowClient(tracking_uri=store.tracking_uri, registry_uri=store.registry_uri)
    if client.get_experiment_by_name(store.experiment) is None:
        client.create_experiment(store.experiment, artifact_location=store.artifact_location)
    mlflow.set_experiment(store.experiment)
    return client


def log_figures(figures: Mapping[str, Any]) -> None:
    import mlflow

    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}.png")


def log_json(obj: Any, path: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, ensure_ascii=False, indent=1, default=str), path)


def log_frame(frame: pd.DataFrame, path: str) -> None:
    import mlflow

    mlflow.log_text(frame.to_csv(index=False), path)


def log_risk_model(
    model: RiskModel, *, input_example: pd.DataFrame, model_name: str
) -> tuple[str, str]:
    """Log the pyfunc from code with its artifacts and register it. Returns (uri, version)."""
    import mlflow

    import models.risk_model_entry as risk_model_entry

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold NaN; ours are counts and flags that
        # the snapshot always fills, and MLflow refuses int64 input for a double schema.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        artifacts = model.save_parts(Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=risk_model_entry.__file__,
            artifacts=artifacts,
            input_example=input_example,
            registered_model_name=model_name,
            pip_requirements=_requirements(),
        )
    version = str(info.registered_model_version)
    logger.info("registered %s version %s", model_name, version)
    return info.model_uri, version


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}"
        for pkg in ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "shap")
    ]


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind an alias, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def set_alias(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(model_name, alias, version)


def model_uri(model_name: str, ref: str) -> str:
    """`champion`/`challenger` -> models:/name@alias; a number -> models:/name/number."""
    return f"models:/{model_name}/{ref}" if ref.isdigit() else f"models:/{model_name}@{ref}"


def load_risk_model(
    model_name: str, ref: str, *, check_requirements: bool = True
) -> tuple[RiskModel, str]:
    """Load a registered RiskModel by alias or version. Returns (model, version).

    ``check_requirements=False`` skips MLflow's warning about package versions that differ
    from the model's pip requirements (it reads every installed package's file list).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from models.risk_model import RiskModel

    client = MlflowClient()
    if ref.isdigit():
        mv = client.get_model_version(model_name, ref)
    else:
        found = alias_version(client, model_name, ref)
        if found is None:
            raise LookupError(f"no model version of {model_name!r} has the alias {ref!r}")
        mv = found
    pyfunc = mlflow.pyfunc.load_model(
        model_uri(model_name, str(mv.version)), suppress_warnings=not check_requirements
    )
    model = pyfunc.unwrap_python_model()
    if not isinstance(model, RiskModel):
        raise TypeError(f"{model_name} version {mv.version} is not a Baoxue RiskModel")
    return model, str(mv.version)


def version_metrics(client: MlflowClient, mv: ModelVersion) -> dict[str, float]:
    """The metrics of the run that produced a model version."""
    if not mv.run_id:
        return {}
    return dict(client.get_run(mv.run_id).data.metrics)
