"""The read side of the MLflow model registry: where models live, aliases, loading.

Serving loads the champion through here and training reads the current champion
before deciding an alias, so this lives below both (`training.track` keeps the
writing: runs, logging and registering a model, moving aliases). Like `risk_model.py`,
it is the edge where a packaged model meets MLflow; MLflow is imported only when a
model is read, so importing this module stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where MLflow is used: `mlflow` alone takes ~1 s to import,
    # and the service's start-up (serving.registry imports this module) should not wait
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from models.risk_model import RiskModel

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Store:
    """Where runs and models go."""

    tracking_uri: str
    registry_uri: str
    experiment: str
    model_name: str
    artifact_location: str | None = None  # for a local store; a server decides its own


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind an alias, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


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
