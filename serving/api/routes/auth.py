"""`POST /v1/auth/token`: the OAuth2 password flow, with a per-username-and-address limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from serving.api.deps import LimiterDep, SessionDep, SettingsDep
from serving.api.schemas import ErrorOut, TokenOut
from serving.auth import InvalidCredentials, create_access_token
from serving.services.users import authenticate

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenOut,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
    summary="Log in with username and password; get a bearer token",
)
def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    limiter: LimiterDep,
) -> TokenOut:
    """Exchange a username and password for a bearer token (JWT, HS256)."""
    address = request.client.host if request.client else "unknown"
    limiter.check(form.username, address)
    try:
        viewer = authenticate(session, form.username, form.password)
    except InvalidCredentials:
        limiter.failed(form.username, address)
        raise
    limiter.succeeded(form.username, address)
    minutes = settings.serving.token_minutes
    token = create_access_token(viewer, request.app.state.secret_key, minutes)
    return TokenOut(access_token=token, expires_in=minutes * 60, role=viewer.role)
