"""/v1/datasets: create and list a tenant's datasets, add items (given, or made from
one of its jobs) and page through them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse

from aijobs.evals import datasets
from aijobs.evals.schemas import DatasetCreate, parse_item
from aijobs.prompts.reference import NAME_PATTERN
from api.deps import SessionDep, TenantDep

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]


@router.post("", status_code=201, response_model=None)
def create_dataset(body: DatasetCreate, tenant: TenantDep, session: SessionDep) -> JSONResponse:
    """201 with the dataset; a name the tenant has already is 409."""
    created = datasets.create(session.connection(), tenant.id, body)
    return JSONResponse(
        created, status_code=201, headers={"Location": f"/v1/datasets/{created['name']}"}
    )


@router.get("")
def list_datasets(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    data, next_cursor = datasets.list_datasets(
        session.connection(), tenant.id, limit=limit, cursor=cursor
    )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{name}")
def get_dataset(name: NamePath, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    return datasets.get(session.connection(), tenant.id, name)


@router.post("/{name}/items", status_code=201)
def add_item(
    name: NamePath, body: Annotated[Any, Body()], tenant: TenantDep, session: SessionDep
) -> dict[str, Any]:
    """One item: {"variables" | "messages", "expected"?, "metadata"?}, or
    {"from_job": id, "expected"?} (a job of another tenant is 404)."""
    return datasets.add_item(session.connection(), tenant.id, name, parse_item(body))


@router.get("/{name}/items")
def list_items(
    name: NamePath,
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    data, next_cursor = datasets.list_items(
        session.connection(), tenant.id, name, limit=limit, cursor=cursor
    )
    return {"data": data, "next_cursor": next_cursor}
