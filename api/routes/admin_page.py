"""/admin/: the admin web page. Failed jobs by error code, a job's attempts and webhook
deliveries, re-runs (one, selected, or by filter after a dry-run count), webhook
redelivery, tenants' spend and budgets and their share of the workers (weight and max
in-flight, editable), the audit log. Server-rendered, no script.

Its checks are its routers', declared once: `entry` (the login) needs only the admin
token to be configured, `pages` a login session, `forms` (every POST) a session and its
CSRF token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from aijobs.billing import budget, usage
from aijobs.errors import AppError, InvalidRequest, NotFound
from aijobs.jobs import triage
from aijobs.jobs.transitions import STATUSES, TERMINAL
from aijobs.jobs.view import row_of, view
from aijobs.models import Tenant
from aijobs.tenants import audit
from aijobs.tenants.service import share_now, tenant_by_ref, update_limits
from aijobs.webhooks import deliveries
from aijobs.webhooks import service as webhook_service
from api import admin_session
from api.admin_session import CheckedFormDep, Form, FormDep, PageSessionDep
from api.deps import SessionDep
from api.publisher import publish_delivery, publish_run

# The way in: 404 while AIJOBS_ADMIN_TOKEN is unset, open otherwise (it is the login).
entry = APIRouter(
    prefix="/admin", include_in_schema=False, dependencies=[Depends(admin_session.admin_token)]
)
# What the page shows: a session, else 303 to the login.
pages = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(admin_session.require_session)],
)
# What the page does (every POST but the login): a session and its CSRF token, else 403.
forms = APIRouter(
    prefix="/admin", include_in_schema=False, dependencies=[Depends(admin_session.checked_form)]
)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
        autoescape=True,
    )
)
# No script at all, nothing from elsewhere, never in a frame (the buttons act).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}
NOTICES = {
    "rerun": "Re-run: the job is queued again.",
    "rerun-answered": "Re-run: answered at once (a cached result or an identical job).",
    "redeliver": "Webhook redelivery queued.",
    "rerun-many": "Re-run {count} job(s).",
    "none-selected": "No job was selected.",
    "share": "Saved the tenant's weight and max in-flight.",
}
SELECT_CAP = 500


def _timestamp(value: str | None) -> str:
    """An ISO time as the page shows it: UTC, to the second."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["ts"] = _timestamp


def render_page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    page = admin_session.current(request)
    response = templates.TemplateResponse(
        request,
        f"admin/{name}",
        {"csrf": page.csrf if page else "", "notice": _notice(request), **context},
        status_code=status_code,
        headers=HEADERS,
    )
    return response


def _notice(request: Request) -> str:
    template = NOTICES.get(request.query_params.get("notice", ""), "")
    count = request.query_params.get("count", "0")
    return template.format(count=int(count) if count.isdigit() else 0)


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers=HEADERS)


def _actor(request: Request, page: admin_session.PageSession) -> str:
    host = request.client.host if request.client else "?"
    return f"page:{host} session {page.nonce[:8]}"


def _field(form: Form, name: str) -> str | None:
    value = (form.get(name) or [""])[0].strip()
    return value or None


def _age(when: datetime | None) -> str:
    if when is None:
        return ""
    seconds = max(int((datetime.now(UTC) - when).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _filter(status: str | None, error_code: str | None, tenant: str | None) -> triage.JobFilter:
    return triage.JobFilter(status=status, error_code=error_code, tenant=tenant)


# --- login ------------------------------------------------------------------------------


@entry.get("")
def admin_root() -> RedirectResponse:
    return RedirectResponse("/admin/", status_code=307)


@entry.get("/login")
def login_form(request: Request) -> Response:
    if admin_session.current(request) is not None:
        return _see("/admin/")
    return render_page(request, "login.html", {"error": ""})


@entry.post("/login")
def login(request: Request, form: FormDep) -> Response:
    if not admin_session.token_matches(_field(form, "token") or ""):
        return render_page(request, "login.html", {"error": "Wrong admin token."}, status_code=401)
    response = _see("/admin/")
    admin_session.start(request, response)
    return response


@forms.post("/logout")
def logout() -> Response:
    response = _see(admin_session.LOGIN_PATH)
    admin_session.end(response)
    return response


# --- failed jobs ------------------------------------------------------------------------


@pages.get("/")
def failed_jobs(
    request: Request,
    session: SessionDep,
    status: str = "failed",
    error_code: str = "",
    tenant: str = "",
    cursor: str = "",
) -> Response:
    where = _filter(status or None, error_code or None, tenant or None)
    try:
        rows, next_cursor, counts = triage.find(session, where, limit=100, cursor=cursor or None)
    except InvalidRequest as exc:
        rows, next_cursor, counts = [], None, {}
        error = exc.detail
    else:
        error = ""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row, name in rows:
        job = {**view(row), "tenant": name, "age": _age(row["created_at"])}
        groups.setdefault(row["error_code"] or "none", []).append(job)
    return render_page(
        request,
        "jobs.html",
        {
            "where": {"status": status, "error_code": error_code, "tenant": tenant},
            "statuses": STATUSES,
            "counts": sorted(counts.items(), key=lambda item: -item[1]),
            "groups": sorted(groups.items()),
            "next_cursor": next_cursor or "",
            "error": error,
            "audit": audit.recent(session, 15),
        },
    )


@forms.post("/ui/rerun-selected")
def rerun_selected(
    request: Request, page: PageSessionDep, form: CheckedFormDep, session: SessionDep
) -> Response:
    ids: list[uuid.UUID] = []
    for value in form.get("job", [])[:SELECT_CAP]:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    if not ids:
        return _see("/admin/?notice=none-selected")
    outcome = triage.rerun(
        ids,
        actor=_actor(request, page),
        action="jobs.rerun",
        detail={},
        publish=publish_run,
    )
    return _see(f"/admin/?notice=rerun-many&count={outcome.count}")


@pages.get("/ui/rerun")
def rerun_preview(
    request: Request,
    session: SessionDep,
    status: str = "",
    error_code: str = "",
    tenant: str = "",
) -> Response:
    """The dry run: how many finished jobs the filter matches, and a button to re-run them."""
    return _preview(request, session, status or None, error_code or None, tenant or None, "")


def _preview(
    request: Request,
    session: SessionDep,
    status: str | None,
    error_code: str | None,
    tenant: str | None,
    note: str,
) -> Response:
    where = _filter(status, error_code, tenant)
    try:
        ids = triage.select_for_rerun(session, where)
    except InvalidRequest as exc:
        ids, note = [], exc.detail
    return render_page(
        request,
        "rerun.html",
        {
            "where": {
                "status": status or "",
                "error_code": error_code or "",
                "tenant": tenant or "",
            },
            "count": len(ids),
            "ids": [str(i) for i in ids[:50]],
            "note": note,
        },
    )


@forms.post("/ui/rerun")
def rerun_by_filter(
    request: Request, page: PageSessionDep, form: CheckedFormDep, session: SessionDep
) -> Response:
    """Re-run what the filter matches, if that is still the count the admin confirmed."""
    status, error_code, tenant = (_field(form, k) for k in ("status", "error_code", "tenant"))
    where = _filter(status, error_code, tenant)
    try:
        ids = triage.select_for_rerun(session, where)
    except InvalidRequest as exc:
        return _preview(request, session, status, error_code, tenant, exc.detail)
    if str(len(ids)) != _field(form, "expected"):
        note = "The number of matching jobs changed since the count; check it again."
        return _preview(request, session, status, error_code, tenant, note)
    filters = {"status": status, "error_code": error_code, "tenant": tenant}
    outcome = triage.rerun(
        ids,
        actor=_actor(request, page),
        action="jobs.rerun",
        detail={"filter": filters},
        publish=publish_run,
    )
    return _see(f"/admin/?notice=rerun-many&count={outcome.count}")


# --- one job ----------------------------------------------------------------------------


@pages.get("/ui/jobs/{job_id}")
def job_page(request: Request, session: SessionDep, job_id: str) -> Response:
    try:
        job = triage.get(session, job_id)
    except NotFound as exc:
        return render_page(request, "error.html", {"error": exc.detail}, status_code=404)
    tenant = session.get(Tenant, job.tenant_id)
    return render_page(
        request,
        "job.html",
        {
            "job": {**view(row_of(job)), "tenant": tenant.name if tenant else ""},
            "terminal": job.status in TERMINAL,
            "attempts": triage.attempts(session, job_id),
            "deliveries": deliveries.attempts_of(session.connection(), job.id),
        },
    )


def _job_action(request: Request, job_id: str, error: AppError) -> Response:
    return render_page(
        request, "error.html", {"error": error.detail, "job_id": job_id}, error.status
    )


@forms.post("/ui/jobs/{job_id}/rerun")
def rerun_job(request: Request, page: PageSessionDep, session: SessionDep, job_id: str) -> Response:
    try:
        job = triage.get(session, job_id)
    except NotFound as exc:
        return _job_action(request, job_id, exc)
    try:
        outcome = triage.rerun(
            [job.id],
            actor=_actor(request, page),
            action="job.rerun",
            detail={"job_id": str(job.id)},
            publish=publish_run,
            single=True,
        )
    except triage.RerunRefused as exc:
        return _job_action(request, job_id, exc)
    notice = "rerun" if outcome.requeued else "rerun-answered"
    return _see(f"/admin/ui/jobs/{job.id}?notice={notice}")


@forms.post("/ui/jobs/{job_id}/webhook/redeliver")
def redeliver(request: Request, page: PageSessionDep, session: SessionDep, job_id: str) -> Response:
    try:
        redelivered = webhook_service.redeliver(session, job_id)
    except AppError as exc:
        return _job_action(request, job_id, exc)
    audit.record(session, "webhook.redeliver", _actor(request, page), job_id=job_id)
    session.commit()
    publish_delivery(redelivered.delivery_id)
    return _see(f"/admin/ui/jobs/{job_id}?notice=redeliver")


# --- tenants and audit ------------------------------------------------------------------


def _spend(session: SessionDep, tenant_id: uuid.UUID, start: Any, end: Any) -> str:
    line = usage.report(session.connection(), tenant_id, start=start, end=end, group_by="day")
    return str(line.total.as_json()["cost_usd"])


@pages.get("/ui/tenants")
def tenants_page(request: Request, session: SessionDep) -> Response:
    today, month = budget.periods()
    tomorrow = today + timedelta(days=1)
    rows = []
    for tenant in session.scalars(select(Tenant).order_by(Tenant.name)):
        daily, monthly = budget.state(session.connection(), tenant.id)
        rows.append(
            {
                "name": tenant.name,
                "id": str(tenant.id),
                "rpm": tenant.rpm,
                "weight": tenant.weight,
                "max_inflight": tenant.max_inflight,
                "today": _spend(session, tenant.id, today, tomorrow),
                "month": _spend(session, tenant.id, month, tomorrow),
                "daily": daily.as_json(),
                "monthly": monthly.as_json(),
            }
        )
    return render_page(request, "tenants.html", {"tenants": rows})


def _share_form(form: Form) -> dict[str, int | None]:
    """The tenants page's weight and max in-flight (blank: no cap) as update_limits' changes."""
    changes: dict[str, int | None] = {}
    for name in ("weight", "max_inflight"):
        value = _field(form, name)
        if value is None and name == "max_inflight":
            changes[name] = None
            continue
        try:
            changes[name] = int(value or "")
        except ValueError:
            raise InvalidRequest(f"{name} must be a whole number, not {value!r}") from None
    return changes


@forms.post("/ui/tenants/{tenant_id}/share")
def save_share(
    request: Request,
    page: PageSessionDep,
    form: CheckedFormDep,
    session: SessionDep,
    tenant_id: str,
) -> Response:
    """The weight and max in-flight of one tenant's row: saved, then set in the fair queue."""
    try:
        tenant = tenant_by_ref(session, tenant_id)
        changes = _share_form(form)
        update_limits(session, tenant, changes)
    except AppError as exc:
        back = {"error": exc.detail, "back": "/admin/ui/tenants"}
        return render_page(request, "error.html", back, exc.status)
    shown = {k: None if v is None else str(v) for k, v in changes.items()}
    audit.record(session, "tenant.update", _actor(request, page), tenant=tenant.name, changes=shown)
    share = (tenant.id, tenant.weight, tenant.max_inflight)
    session.commit()
    share_now(*share)
    return _see("/admin/ui/tenants?notice=share")


@pages.get("/ui/audit")
def audit_page(request: Request, session: SessionDep) -> Response:
    return render_page(request, "audit.html", {"audit": audit.recent(session, 200)})


# One router for the app to include: the three above, each with its own checks.
router = APIRouter()
router.include_router(entry)
router.include_router(pages)
router.include_router(forms)
