"""`GET /v1/model`: which model the service scores with, and how it tested."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import ModelDep, ViewerDep
from serving.api.schemas import ErrorOut, ModelOut

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model",
    response_model=ModelOut,
    responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="The model in use: version, when trained, data fingerprint, test metrics",
)
def read_model(viewer: ViewerDep, model: ModelDep) -> ModelOut:
    """Any logged-in user may read this (it names no student)."""
    return ModelOut(
        name=model.name,
        version=model.version,
        source=model.source,
        loaded_at=model.loaded_at,
        trained_at=model.trained_at,
        data_fingerprint=model.data_fingerprint,
        test_metrics=dict(model.test_metrics),
        run_id=model.run_id,
    )
