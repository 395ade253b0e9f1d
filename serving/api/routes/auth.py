"""`POST /v1/auth/token` (the OAuth2 password flow) and `POST /v1/auth/logout`.

Logging in goes through the app's `LoginGuard` (`serving.services.logins`): counted
against the per-username-and-address and per-address limits first (429), then hashed
off the database connection with a bounded number at once (503 with Retry-After when
too many log in at the same moment). Logging out ends every token and page session of
the user (their token version is raised).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from serving.api.deps import LoginGuardDep, SessionDep, SettingsDep, ViewerDep, client_address
from serving.api.schemas import ErrorOut, TokenOut
from serving.auth import create_access_token
from serving.services.users import end_sessions

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=TokenOut,
    responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}, 503: {"model": ErrorOut}},
    summary="Log in with username and password; get a bearer token",
)
async def login(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    settings: SettingsDep,
    guard: LoginGuardDep,
) -> TokenOut:
    """Exchange a username and password for a bearer token (JWT, HS256)."""
    viewer = await guard.login(
        request.app.state.sessions, form.username, form.password, client_address(request)
    )
    minutes = settings.serving.token_minutes
    token = create_access_token(viewer, request.app.state.secret_key, minutes)
    return TokenOut(access_token=token, expires_in=minutes * 60, role=viewer.role)


@router.post(
    "/logout",
    status_code=204,
    responses={401: {"model": ErrorOut}},
    summary="Log out: end every token and page session of this user",
)
def logout(session: SessionDep, viewer: ViewerDep) -> Response:
    """End this token and every other token and page session of the same user."""
    end_sessions(session, viewer.user_id)
    return Response(status_code=204)
