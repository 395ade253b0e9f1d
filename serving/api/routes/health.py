"""`GET /health`: liveness and readiness (names no student).

Anyone gets the status alone (`ok`, `degraded`, `not_ready`; 200, or 503 when not
ready), enough for a load balancer or a start-up probe. Logged-in staff (a bearer token
or a page session) also get the database check and the model's version, source and
message: which model a county runs is not for anyone on the network (issue 21 item 10).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import text

from serving.api.deps import HolderDep, SessionDep, get_viewer, oauth2_scheme
from serving.api.schemas import HealthOut, LivenessOut, ModelStatusOut
from serving.auth import AuthError, Viewer

router = APIRouter(tags=["health"])


def database_ok(request: Request) -> bool:
    """Whether a trivial query answers."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means "not ok"
        return False
    return True


def staff_viewer(request: Request, session: SessionDep, token: str | None) -> Viewer | None:
    """The logged-in viewer (bearer token, else page session), None for anyone else."""
    try:
        if token:
            return get_viewer(request, session, token)
        from serving.pages.routes import current_viewer  # the page session's viewer
        from serving.pages.session import LoginRequired

        try:
            return current_viewer(request, session)
        except LoginRequired:
            return None
    except AuthError:  # a bad or ended token: anyone
        return None


@router.get(
    "/health",
    response_model=HealthOut | LivenessOut,
    responses={
        503: {"model": HealthOut | LivenessOut, "description": "not ready: no model or database"}
    },
    summary="Is the service up, and can it score?",
)
def health(
    request: Request,
    response: Response,
    holder: HolderDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> HealthOut | LivenessOut:
    """200 when a model is loaded and the database answers (`degraded` when the model
    came from the local cache: after a start with a cache, until the registry has
    answered, and whenever the registry cannot be read); 503 `not_ready` otherwise.
    Logged-in staff also get `database` and `model` (version, source, message)."""
    model = ModelStatusOut(**holder.status())
    database = database_ok(request)
    status: Literal["ok", "degraded", "not_ready"]
    if not (model.ready and database):
        status = "not_ready"
        response.status_code = 503
    else:
        status = "degraded" if model.degraded else "ok"
    if staff_viewer(request, session, token) is None:
        return LivenessOut(status=status)
    return HealthOut(status=status, database=database, model=model)
