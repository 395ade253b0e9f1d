"""`GET /health`: liveness and readiness, no login (names no student)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from serving.api.deps import HolderDep
from serving.api.schemas import HealthOut, ModelStatusOut

router = APIRouter(tags=["health"])


def database_ok(request: Request) -> bool:
    """Whether a trivial query answers."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not ok"
        return False
    return True


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "not ready: no model or no database"}},
    summary="Is the service up, and can it score?",
)
def health(request: Request, response: Response, holder: HolderDep) -> HealthOut:
    """200 when a model is loaded and the database answers (`degraded` when the model
    came from the local cache: after a start with a cache, until the registry has
    answered, and whenever the registry cannot be read); 503 `not_ready` otherwise.
    `model.source` and `model.message` say which."""
    model = ModelStatusOut(**holder.status())
    database = database_ok(request)
    status: Literal["ok", "degraded", "not_ready"]
    if not (model.ready and database):
        status = "not_ready"
        response.status_code = 503
    else:
        status = "degraded" if model.degraded else "ok"
    return HealthOut(status=status, database=database, model=model)
