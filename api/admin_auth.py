"""The admin dependency: `Authorization: Bearer $AIJOBS_ADMIN_TOKEN`.

With no token configured the admin API does not exist (404); a missing bearer token
is 401, a wrong one (a tenant's API key, say) 403; all three with code "unauthorized".
It is a dependency of each admin API router (`APIRouter(dependencies=[...])`), never of
a single route, so a route added to those routers cannot go without it."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header

from aijobs.errors import AdminOff, Forbidden, Unauthorized
from aijobs.settings import get_settings


async def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
    expected = get_settings().admin_token
    if not expected:
        raise AdminOff("the admin API is off (AIJOBS_ADMIN_TOKEN is not set)")
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("this token does not grant admin access")
