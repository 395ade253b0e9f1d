"""`POST /v1/admin/reload`: load the champion again (county_admin only)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from serving.api.deps import HolderDep, ViewerDep
from serving.api.schemas import ErrorOut, ModelStatusOut, ReloadOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    response_model=ReloadOut,
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
    summary="Reload the model behind the champion alias",
)
def reload_model(viewer: ViewerDep, holder: HolderDep) -> ReloadOut:
    """Swap in the champion if the alias moved; the current model stays on failure."""
    viewer.require_role("county_admin")
    changed = holder.reload()
    logger.info("model reload by user %d: changed=%s", viewer.user_id, changed)
    return ReloadOut(changed=changed, model=ModelStatusOut(**holder.status()))
