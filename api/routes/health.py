"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from aijobs.readiness import checks
from api.problems import problem

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz() -> dict[str, Any] | JSONResponse:
    result = await run_in_threadpool(checks)
    if all(value == "ok" for value in result.values()):
        return {"status": "ok", "checks": result}
    failing = ", ".join(f"{k}: {v}" for k, v in result.items() if v != "ok")
    return problem(503, "internal", "Not ready", failing, extra={"checks": result})


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
