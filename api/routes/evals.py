"""/v1/evals: run candidates over a dataset (202), read an eval (moved on first, so the
reader sees fresh progress), list, cancel. The eval's jobs are published after the
commit, from a background task once the response is sent, as a batch's are."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import JSONResponse

from aijobs.evals import launch, report, service
from aijobs.evals.schemas import EvalCreate
from api import rate_limit
from api.deps import AuthedTenantDep, SessionDep, TenantDep
from api.publisher import publish_runs

router = APIRouter(prefix="/v1/evals", tags=["evals"])


@router.post("", status_code=202, response_model=None)
def create_eval(
    body: EvalCreate, tenant: AuthedTenantDep, session: SessionDep, background: BackgroundTasks
) -> JSONResponse:
    """202 with the eval; every check first, nothing written on a refusal. Its jobs
    count against the tenant's rpm like a batch's."""
    plan = launch.plan(session.connection(), tenant.id, body)
    if tenant.rpm:
        rate_limit.check_submissions(tenant.id, tenant.rpm, jobs=plan.jobs)
    budgeted = tenant.daily_budget_usd is not None or tenant.monthly_budget_usd is not None
    launched = launch.launch(session, tenant.id, plan, budgeted=budgeted)
    session.commit()
    if launched.publish:
        background.add_task(publish_runs, launched.publish)
    headers = {"Location": f"/v1/evals/{launched.eval['id']}"}
    return JSONResponse(launched.eval, status_code=202, headers=headers, background=background)


@router.get("")
def list_evals(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    data, next_cursor = report.list_evals(session, tenant.id, limit=limit, cursor=cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{eval_id}")
def get_eval(
    eval_id: str,
    tenant: TenantDep,
    session: SessionDep,
    items_limit: Annotated[int, Query(ge=1, le=report.ITEMS_MAX)] = report.ITEMS_LIMIT,
    items_cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    publish = service.refresh(session.connection(), tenant.id, eval_id)
    session.commit()
    if publish:
        publish_runs(publish)
    return report.report(
        session, tenant.id, eval_id, items_limit=items_limit, items_cursor=items_cursor
    )


@router.post("/{eval_id}/cancel")
def cancel_eval(eval_id: str, tenant: TenantDep, session: SessionDep) -> dict[str, Any]:
    cancelled = service.cancel(session.connection(), tenant.id, eval_id)
    session.commit()
    if cancelled.publish:
        publish_runs(cancelled.publish)
    return cancelled.eval
