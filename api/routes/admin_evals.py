"""Evals for the operator: /admin/evals (JSON, the admin token) and the admin page's
/admin/ui/evals (every tenant's evals, newest first, filterable by tenant) and
/admin/ui/evals/{id}: the candidates side by side, item by item (regressions first),
each cell an output with its verdict and scores linking to its job, and a chart of pass
rate and cost per candidate drawn by the server. Read only: an eval is started and
cancelled through the tenant API (or `aijobs eval`).

Outputs are tenant data: the templates print them autoescaped, cut to a length."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from aijobs.errors import InvalidRequest, NotFound
from aijobs.evals import report as eval_report
from aijobs.models import Tenant
from aijobs.tenants.service import tenant_by_ref
from api import admin_session, eval_chart
from api.admin_auth import require_admin
from api.deps import SessionDep
from api.routes.admin_page import render_page

api = APIRouter(prefix="/admin/evals", tags=["admin"], dependencies=[Depends(require_admin)])
pages = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(admin_session.require_session)],
)
PAGE_SIZE = 50
ITEMS_SHOWN = 200  # items a page of the eval shows (the next ones a link away)
CUT = 400  # characters of an output shown in a cell (the job's page has it all)


def _list(
    session: Session, tenant: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of evals with their tenant's name and id; none for an unknown tenant."""
    owner = None
    if tenant is not None:
        try:
            owner = tenant_by_ref(session, tenant)
        except NotFound:
            return [], None
    data, next_cursor = eval_report.list_evals(
        session, owner.id if owner else None, limit=limit, cursor=cursor
    )
    if owner is not None:
        names = {str(owner.id): owner.name}
        for row in data:
            row["tenant_id"] = str(owner.id)
    else:
        ids = {uuid.UUID(row["tenant_id"]) for row in data}
        found = session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids)))
        names = {str(tenant_id): name for tenant_id, name in found}
    for row in data:
        row["tenant"] = names.get(row["tenant_id"], "")
    return data, next_cursor


def _one(
    session: Session, eval_id: str, items_limit: int, items_cursor: str | None
) -> dict[str, Any]:
    """Any tenant's eval as its tenant reads it, with the tenant's name and id."""
    conn = session.connection()
    tenant_id = eval_report.find(conn, None, eval_id)["tenant_id"]
    found = eval_report.report(
        conn, None, eval_id, items_limit=items_limit, items_cursor=items_cursor
    )
    tenant = session.get(Tenant, tenant_id)
    return {**found, "tenant": tenant.name if tenant else "", "tenant_id": str(tenant_id)}


@api.get("")
def list_evals(
    session: SessionDep,
    tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every tenant's evals (or one tenant's, by name or id), newest first."""
    data, next_cursor = _list(session, tenant or None, limit, cursor)
    return {"data": data, "next_cursor": next_cursor}


@api.get("/{eval_id}")
def get_eval(
    session: SessionDep,
    eval_id: str,
    items_limit: Annotated[int, Query(ge=1, le=eval_report.ITEMS_MAX)] = eval_report.ITEMS_LIMIT,
    items_cursor: str | None = None,
) -> dict[str, Any]:
    """The eval as its tenant reads it (GET /v1/evals/{id}), with its tenant."""
    return _one(session, eval_id, items_limit, items_cursor)


# --- what the page shows ----------------------------------------------------------------


def _ref(candidate: dict[str, Any]) -> str:
    """`summarise@3 (production)`: the version a candidate runs, and the label it came by."""
    prompt = candidate["prompt"]
    ref = f"{prompt['name']}@{prompt['version']}"
    return ref + (f" ({prompt['label']})" if prompt.get("label") else "")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def progress(found: dict[str, Any]) -> dict[str, Any]:
    done, total = found["progress"]["done"], found["progress"]["total"]
    return {"done": done, "total": total, "pct": 100 * done // max(total, 1)}


def candidate_view(candidate: dict[str, Any]) -> dict[str, Any]:
    """A candidate's column header (a list's candidates have no figures: only `ref`)."""
    latency = candidate.get("latency_ms") or {}
    return {
        **candidate,
        "ref": _ref(candidate),
        "pass_rate_shown": _rate(candidate.get("pass_rate")),
        "scores_shown": [(k, _score(v)) for k, v in (candidate.get("scores") or {}).items()],
        "latency": {
            k: "-" if latency.get(k) is None else f"{latency[k]} ms" for k in ("p50", "p95")
        },
    }


def _output(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else _json(value)
    return text if len(text) <= CUT else text[:CUT] + " …"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _cell(result: dict[str, Any] | None, index: int) -> dict[str, Any]:
    """One candidate's result on an item: `verdict` is pass, fail, or pending (not
    scored yet, or its job was cancelled: no verdict)."""
    if result is None:
        return {
            "candidate": index,
            "job_id": None,
            "status": "no job",
            "verdict": "pending",
            "output": None,
            "scores": [],
            "judges": [],
        }
    passed = result["passed"]
    return {
        "candidate": index,
        "job_id": result["job_id"],
        "status": result["status"],
        "verdict": "pending" if passed is None else "pass" if passed else "fail",
        "output": _output(result["output"]),
        "scores": [(k, _score(v)) for k, v in (result["scores"] or {}).items()],
        "judges": result.get("judge_job_ids") or [],
    }


def rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """The items as the table shows them: regressions first, then the others, each in
    the dataset's order, with a cell per candidate."""
    regressed = {regression["item_id"] for regression in found["regressions"]}
    count = len(found["candidates"])
    shown = []
    for item in found["items"]:
        by_candidate = {result["candidate"]: result for result in item["results"]}
        shown.append(
            {
                "item_id": item["item_id"],
                "regression": item["item_id"] in regressed,
                "expected": None if item.get("expected") is None else _output(item["expected"]),
                "cells": [_cell(by_candidate.get(i), i) for i in range(count)],
            }
        )
    shown.sort(key=lambda row: not row["regression"])  # stable: the dataset's order within
    return shown


def _scorers(found: dict[str, Any]) -> list[tuple[str, str]]:
    """Each scorer's key (as in `scores`) and its definition."""
    return [(s["key"], _json({k: v for k, v in s.items() if k != "key"})) for s in found["scorers"]]


# --- the pages ----------------------------------------------------------------------------


@pages.get("/ui/evals")
def evals_page(
    request: Request, session: SessionDep, tenant: str = "", cursor: str = ""
) -> Response:
    try:
        found, next_cursor = _list(session, tenant.strip() or None, PAGE_SIZE, cursor or None)
    except InvalidRequest as exc:
        found, next_cursor, error = [], None, exc.detail
    else:
        error = ""
    for row in found:
        row["progress"] = progress(row)
        row["candidates"] = [candidate_view(c) for c in row["candidates"]]
    return render_page(
        request,
        "evals.html",
        {"evals": found, "tenant": tenant, "next_cursor": next_cursor or "", "error": error},
    )


@pages.get("/ui/evals/{eval_id}")
def eval_page(request: Request, session: SessionDep, eval_id: str, items: str = "") -> Response:
    """The eval, ITEMS_SHOWN items a page (`?items=` the next page's cursor)."""
    try:
        found = _one(session, eval_id, ITEMS_SHOWN, items or None)
    except (NotFound, InvalidRequest) as exc:
        return render_page(request, "error.html", {"error": exc.detail}, status_code=exc.status)
    candidates = found["candidates"]
    return render_page(
        request,
        "evals_detail.html",
        {
            "eval": {**found, "progress": progress(found)},
            "candidates": [candidate_view(c) for c in candidates],
            "chart": eval_chart.chart(candidates),
            "rows": rows(found),
            "items_total": found["progress"]["total"] // max(len(candidates), 1),
            "first_page": not items,
            "scorers": _scorers(found),
            "cut": CUT,
        },
    )
