"""Request dependencies: a session per request (committed at the edge) and the tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from aijobs.db import get_sessionmaker, session_scope
from aijobs.errors import Unauthorized
from aijobs.models import Tenant
from aijobs.tenants import authenticate


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <api key>")
    return token.strip()


def get_tenant(token: Annotated[str, Depends(bearer_token)]) -> Tenant:
    # Its own short unit of work: a long-poll must not hold a connection while it waits.
    with session_scope() as session:
        return authenticate(session, token)


TenantDep = Annotated[Tenant, Depends(get_tenant)]
