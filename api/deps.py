"""Request dependencies: a session per request (committed at the edge) and the tenant
(authenticated, and for reads within the reads' rate limit)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from aijobs.db import get_sessionmaker, session_scope
from aijobs.errors import Unauthorized
from aijobs.tenants.service import TenantInfo, authenticate, hash_key
from api import rate_limit


async def get_session() -> AsyncIterator[Session]:
    """A session for the request, committed after the route (rolled back on error).

    Async, though the routes using it are not: FastAPI runs a sync dependency in the
    thread pool, and a session costs no I/O until the route's first statement (in the
    route's own thread). Ending it only leaves the loop when a transaction is open."""
    session = get_sessionmaker()()
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        session.close()  # no transaction left: no I/O


# scope="function": the commit runs before the response is sent (with the default,
# "request", a client could read a 201 for a key its next request does not find yet,
# and a failed commit would go unseen).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <api key>")
    return token.strip()


class _KeyCache:
    """Recently verified keys, by hash, for a few seconds: most requests then need no
    database round trip to authenticate. A revoked key stops working within the TTL."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, TenantInfo]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> TenantInfo | None:
        with self._lock:
            entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def put(self, key_hash: str, tenant: TenantInfo) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + self.ttl_s, tenant)


_keys = _KeyCache(ttl_s=5.0)


def forget_cached_keys() -> None:
    """After a revocation: this process stops accepting the key at once."""
    _keys.clear()


def _authenticate(token: str) -> TenantInfo:
    # Its own short unit of work: a long-poll must not hold a connection while it waits.
    with session_scope() as session:
        return authenticate(session, token)


async def get_tenant(token: Annotated[str, Depends(bearer_token)]) -> TenantInfo:
    """On the loop when the key is cached (most requests), in the thread pool when not."""
    key_hash = hash_key(token)
    tenant = _keys.get(key_hash)
    if tenant is None:
        tenant = await run_in_threadpool(_authenticate, token)
        _keys.put(key_hash, tenant)
    return tenant


async def reading_tenant(tenant: Annotated[TenantInfo, Depends(get_tenant)]) -> TenantInfo:
    """The tenant, once its reads' own limit allows this one (never its rpm, which
    counts submissions only: the submit route checks that itself, after a replay)."""
    if tenant.rpm:
        await run_in_threadpool(rate_limit.check_reads, tenant.id, tenant.rpm)
    return tenant


# Every tenant route but the submit: reads (and cancel) count against the reads' limit.
TenantDep = Annotated[TenantInfo, Depends(reading_tenant)]
# The submit route: authenticated only; it applies rpm once it knows it is no replay.
AuthedTenantDep = Annotated[TenantInfo, Depends(get_tenant)]
