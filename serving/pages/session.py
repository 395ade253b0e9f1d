"""Cookie sessions and CSRF tokens for the HTML pages.

The session is one signed cookie (`itsdangerous`, keyed by the app's secret key with
its own salt), HttpOnly, SameSite=Lax, Secure when the request came over HTTPS (or, with
`serving.trust_proxy_headers`, when the proxy's X-Forwarded-Proto says so), and
expiring after `settings.serving.token_minutes` (both the cookie's Max-Age and the
signature's age are checked). It holds only the user id, the user's token version, a
CSRF token and the time it was issued: never a name, a role or a school. The user is
looked up again on every request, so a deactivated account is logged out at once, and
so is every session issued before a logout or a password change (the token version in
the database has moved on; a cookie replayed after logout is no session).

CSRF: the token is bound to the session. Every form carries it in a hidden field
`csrf_token`; a POST whose field does not match the cookie's token is refused with
`CsrfRejected` (a page saying the form expired). A visitor who is not logged in gets an
anonymous session (token only) on the login page, so the login form is protected too;
logging in issues a fresh token (no session fixation).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.api.deps import is_https

COOKIE_NAME = "baoxue_session"
LANG_COOKIE = "lang"
SALT = "baoxue-pages-session-v1"
LANGS = ("zh", "en")


class LoginRequired(Exception):
    """No valid session: the pages answer with a redirect to the login page."""

    def __init__(self, next_path: str = "/") -> None:
        super().__init__("login required")
        self.next_path = next_path


class CsrfRejected(Exception):
    """A form posted without the session's CSRF token (or with a stale one)."""

    code = "csrf_rejected"


@dataclass(frozen=True)
class PageSession:
    """What the session cookie holds."""

    csrf: str
    user_id: int | None = None
    issued: float = 0.0
    version: int | None = None  # the user's token version when the session began

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.csrf, "u": self.user_id, "t": self.issued, "v": self.version}


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.secret_key, salt=SALT)


def _max_age(request: Request) -> int:
    return int(request.app.state.settings.serving.token_minutes) * 60


def read_session(request: Request) -> PageSession | None:
    """The session in the request's cookie, or None when missing, tampered with or expired."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=_max_age(request))
    except BadSignature:  # includes SignatureExpired
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        return None
    user_id, version = data.get("u"), data.get("v")
    if not isinstance(user_id, int) or not isinstance(version, int):
        user_id = version = None  # anonymous, or a cookie from before token versions
    return PageSession(
        csrf=data["c"], user_id=user_id, issued=float(data.get("t") or 0.0), version=version
    )


def new_session(user_id: int | None = None, version: int | None = None) -> PageSession:
    """A fresh session with a new CSRF token (for `user_id` at token `version`)."""
    return PageSession(
        csrf=secrets.token_urlsafe(32), user_id=user_id, issued=time.time(), version=version
    )


def write_session(request: Request, response: Response, page_session: PageSession) -> None:
    """Set the signed session cookie on `response`."""
    response.set_cookie(
        COOKIE_NAME,
        _serializer(request).dumps(page_session.to_dict()),
        max_age=_max_age(request),
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_session(request: Request, response: Response) -> None:
    """Remove the session cookie (logout)."""
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def check_csrf(page_session: PageSession | None, submitted: str | None) -> None:
    """`CsrfRejected` unless `submitted` equals the session's token."""
    if page_session is None or not submitted:
        raise CsrfRejected()
    if not hmac.compare_digest(page_session.csrf.encode(), submitted.encode()):
        raise CsrfRejected()


def safe_next(path: str | None) -> str:
    """A same-site path to go to after logging in ("/" for anything else)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def page_lang(request: Request) -> str:
    """`?lang=` if given, else the `lang` cookie, else Chinese."""
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked
    kept = request.cookies.get(LANG_COOKIE)
    return kept if kept in LANGS else "zh"


def keep_lang(request: Request, response: Response) -> None:
    """Remember a `?lang=` choice in a cookie (a year; not sensitive)."""
    asked = request.query_params.get("lang")
    if asked in LANGS and request.cookies.get(LANG_COOKIE) != asked:
        response.set_cookie(
            LANG_COOKIE,
            asked,
            max_age=365 * 24 * 3600,
            path="/",
            httponly=True,
            samesite="lax",
            secure=is_https(request),
        )
