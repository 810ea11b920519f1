"""The admin page's login session and CSRF tokens.

The cookie holds a random nonce, its issue time and an HMAC of both keyed by the admin
token: never the token itself. Nothing is stored on the server; changing
AIJOBS_ADMIN_TOKEN ends every session. The CSRF token is an HMAC of the session's nonce,
so each session has its own, and every POST of the page must send it back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse

from aijobs.errors import AdminOff, Forbidden
from aijobs.settings import get_settings

COOKIE = "aijobs_admin"
MAX_AGE_S = 12 * 3600
LOGIN_PATH = "/admin/login"


class LoginRequired(Exception):
    """No valid session: the page answers 303 to the login form."""


def _sign(token: str, message: str) -> str:
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class PageSession:
    nonce: str
    csrf: str


def admin_token() -> str:
    """The configured admin token; with none, the page does not exist (404)."""
    token = get_settings().admin_token
    if not token:
        raise AdminOff("the admin page is off (AIJOBS_ADMIN_TOKEN is not set)")
    return token


def token_matches(candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_token().encode())


def _session_of(token: str, nonce: str) -> PageSession:
    return PageSession(nonce=nonce, csrf=_sign(token, f"csrf|{nonce}"))


def start(request: Request, response: Response) -> None:
    """Set a fresh session cookie on the response (after a good login)."""
    token = admin_token()
    nonce = secrets.token_urlsafe(18)
    issued = str(int(time.time()))
    value = f"{nonce}.{issued}.{_sign(token, f'session|{nonce}|{issued}')}"
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_S,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")


def current(request: Request) -> PageSession | None:
    """The session the request's cookie proves, if any."""
    token = admin_token()
    nonce, _, rest = request.cookies.get(COOKIE, "").partition(".")
    issued, _, signature = rest.partition(".")
    if not (nonce and issued.isdigit() and signature):
        return None
    expected = _sign(token, f"session|{nonce}|{issued}")
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    if not 0 <= time.time() - int(issued) <= MAX_AGE_S:
        return None
    return _session_of(token, nonce)


def require_session(request: Request) -> PageSession:
    session = current(request)
    if session is None:
        raise LoginRequired()
    return session


PageSessionDep = Annotated[PageSession, Depends(require_session)]

Form = dict[str, list[str]]


async def read_form(request: Request) -> Form:
    """An application/x-www-form-urlencoded body (the page's forms send nothing else;
    the body limit middleware caps its size)."""
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


FormDep = Annotated[Form, Depends(read_form)]


def checked_form(session: PageSessionDep, form: FormDep) -> Form:
    """The form of a POST, once its CSRF token is this session's; else 403."""
    sent = (form.get("csrf") or [""])[0]
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")
    return form


CheckedFormDep = Annotated[Form, Depends(checked_form)]


def to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse(LOGIN_PATH, status_code=303)
