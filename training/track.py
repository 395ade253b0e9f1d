"""MLflow: runs, logging and registering the packaged model, moving aliases (the I/O edge).

The read side (the `Store`, alias lookup, loading a registered model) is
`models.registry`, where serving may import it too; its names are re-exported here.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from models.registry import (
    CHALLENGER,
    CHAMPION,
    Store,
    alias_version,
    load_risk_model,
    model_uri,
    version_metrics,
)

if TYPE_CHECKING:  # imported where MLflow is used: `mlflow` alone takes ~1 s to import
    from mlflow.tracking import MlflowClient

    from models.risk_model import RiskModel

logger = logging.getLogger(__name__)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "MODEL_ARTIFACT",
    "Store",
    "alias_version",
    "connect",
    "load_risk_model",
    "log_figures",
    "log_frame",
    "log_json",
    "log_risk_model",
    "model_uri",
    "set_alias",
    "version_metrics",
]

MODEL_ARTIFACT = "risk_model"


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


def set_alias(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(model_name, alias, version)
