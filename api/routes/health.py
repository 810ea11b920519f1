"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from aijobs.db import get_engine
from aijobs.migrate import head_revision
from aijobs.settings import get_settings
from api.problems import problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _checks() -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        head = head_revision()
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head else f"at {current}, head is {head}"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(
            get_settings().effective_broker_url, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        client.close()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    return checks


@router.get("/readyz", response_model=None)
async def readyz() -> dict[str, Any] | JSONResponse:
    checks = await run_in_threadpool(_checks)
    if all(value == "ok" for value in checks.values()):
        return {"status": "ok", "checks": checks}
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    return problem(503, "internal", "Not ready", failing, extra={"checks": checks})
