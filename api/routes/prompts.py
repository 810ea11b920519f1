"""/v1/prompts: versions (create, read), labels (move), the list of a tenant's
prompts, and per-version stats. Versions are immutable: no route changes or deletes
one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from aijobs.errors import InvalidRequest
from aijobs.prompts import service
from aijobs.prompts import stats as prompt_stats
from aijobs.prompts.reference import LABEL_PATTERN, NAME_PATTERN
from aijobs.prompts.schemas import LabelTarget, VersionCreate
from api.deps import SessionDep, TenantDep

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
LabelPath = Annotated[str, Path(pattern=LABEL_PATTERN)]


@router.post("/{name}/versions", status_code=201, response_model=None)
def create_version(
    name: NamePath,
    body: VersionCreate,
    tenant: TenantDep,
    session: SessionDep,
    only_if_changed: Annotated[
        bool, Query(description="answer 200 with the latest version when it is the same")
    ] = False,
) -> JSONResponse:
    """201 with version n+1; with only_if_changed=true and content equal to the latest
    version's, 200 with that version and nothing written (`aijobs prompts push`)."""
    version, created = service.create_version(
        session, tenant.id, name, body, only_if_changed=only_if_changed
    )
    location = {"Location": f"/v1/prompts/{name}/versions/{version['version']}"}
    return JSONResponse(version, status_code=201 if created else 200, headers=location)


@router.get("")
def list_prompts(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    data, next_cursor = service.list_prompts(session, tenant.id, limit=limit, cursor=cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{name}")
def get_prompt(name: NamePath, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    return service.get_prompt(session, tenant.id, name)


@router.get("/{name}/versions/{version}")
def get_version(
    name: NamePath,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    tenant: TenantDep,
    session: SessionDep,
) -> dict[str, Any]:
    return service.get_version(session, tenant.id, name, version)


@router.put("/{name}/labels/{label}")
def set_label(
    name: NamePath, label: LabelPath, body: LabelTarget, tenant: TenantDep, session: SessionDep
) -> dict[str, Any]:
    return service.set_label(session, tenant.id, name, label, body)


@router.get("/{name}/stats")
def get_stats(
    name: NamePath,
    tenant: TenantDep,
    session: SessionDep,
    start: date | None = None,
    end: Annotated[date | None, Query(description="exclusive")] = None,
) -> dict[str, Any]:
    """Per version, over jobs created in [start, end) (UTC days; the last 30 by default)."""
    end = end or datetime.now(UTC).date() + timedelta(days=1)
    start = start or end - timedelta(days=30)
    if not start < end or end - start > timedelta(days=366):
        raise InvalidRequest("start must come before end, at most 366 days apart")
    return prompt_stats.stats(session, tenant.id, name, start=start, end=end)
