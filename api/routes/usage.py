"""/v1/usage: the tenant's spend, tokens and cache savings, and its budget state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from aijobs.billing import budget, usage
from aijobs.errors import InvalidRequest
from api.deps import SessionDep, TenantDep

router = APIRouter(prefix="/v1/usage", tags=["usage"])

MAX_RANGE = timedelta(days=366)


@router.get("")
def get_usage(
    tenant: TenantDep,
    session: SessionDep,
    start: date | None = None,
    end: Annotated[date | None, Query(description="exclusive")] = None,
    group_by: Literal["day", "model", "prompt"] = "day",
) -> dict[str, Any]:
    end = end or datetime.now(UTC).date() + timedelta(days=1)
    start = start or end - timedelta(days=30)
    if not start < end or end - start > MAX_RANGE:
        raise InvalidRequest("start must come before end, at most 366 days apart")
    conn = session.connection()
    result = usage.report(conn, tenant.id, start=start, end=end, group_by=group_by)
    daily, monthly = budget.state(conn, tenant.id)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "group_by": group_by,
        "data": [{**_group(group_by, key), **line.as_json()} for key, line in result.lines.items()],
        "total": result.total.as_json(),
        "budget": {"daily": daily.as_json(), "monthly": monthly.as_json()},
    }


def _group(group_by: str, key: str) -> dict[str, Any]:
    """By prompt: {"prompt": {"name", "version"}} (null for jobs that named none)."""
    if group_by != "prompt":
        return {group_by: key}
    name, _, version = key.rpartition("@")
    return {"prompt": {"name": name, "version": int(version)} if name else None}
