"""The job service on the client's side: submit, read, list, cancel.

Services flush; the edge commits."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from aijobs.errors import Conflict, InvalidRequest, NotFound
from aijobs.models import Job
from aijobs.pricing import price_for
from aijobs.schemas import JobRequest
from aijobs.settings import get_settings
from aijobs.ssrf import literal_target_refused

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
MODE_FOR_TASK = {"chat": "chat", "embed": "embedding"}


def check_submittable(request: JobRequest) -> None:
    """What pydantic cannot know: prices, task/model fit, webhook targets."""
    if request.model in request.fallbacks:
        raise InvalidRequest("fallbacks must not repeat the model")
    for model in request.models():
        price = price_for(model)
        if price.mode != MODE_FOR_TASK[request.task]:
            raise InvalidRequest(
                f"model {model!r} is a {price.mode} model; it cannot run task {request.task!r}"
            )
    if request.webhook_url is not None:
        host = urlsplit(request.webhook_url).hostname or ""
        if literal_target_refused(host, get_settings().webhook_allow_hosts):
            raise InvalidRequest(
                "webhook_url points at a private, loopback or link-local address",
                extra={"field": "webhook_url"},
            )


def submit(session: Session, tenant_id: uuid.UUID, request: JobRequest) -> Job:
    check_submittable(request)
    job = Job(
        tenant_id=tenant_id,
        status="queued",
        model=request.model,
        current_model=request.model,
        model_attempts=0,
        task=request.task,
        request=request.model_dump(mode="json", exclude_none=True),
        metadata_=request.metadata,
        webhook_url=request.webhook_url,
        max_attempts=request.max_attempts,
        timeout_s=Decimal(str(request.timeout_s)),
        attempts=0,
        input_tokens=0,
        output_tokens=0,
        cost_usd=Decimal(0),
        cache_hit=False,
    )
    session.add(job)
    session.flush()
    return job


def _parse_id(job_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        return None


def get(session: Session, tenant_id: uuid.UUID, job_id: str) -> Job:
    """A tenant's job; another tenant's id answers exactly like a missing one."""
    parsed = _parse_id(job_id)
    job = session.get(Job, parsed) if parsed is not None else None
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"no job {job_id}")
    return job


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("cursor is not one this API returned") from exc


def list_jobs(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """Newest first, paged on the unique key (created_at, id)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        if status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}")
        query = query.where(Job.status == status)
    if cursor:
        created, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel(session: Session, tenant_id: uuid.UUID, job_id: str) -> Job:
    """queued or running -> cancelled. A call already made keeps its cost record."""
    job = get(session, tenant_id, job_id)
    changed = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("queued", "running")))
        .values(
            status="cancelled",
            finished_at=func.now(),
            error_code="cancelled",
            error_message="cancelled by the client",
            error_retryable=False,
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(Job.id)
    ).first()
    session.refresh(job)
    if changed is None and job.status != "cancelled":
        raise Conflict(f"job {job_id} already ended as {job.status}; it cannot be cancelled")
    return job


def _money(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if value else "0"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def view(job: Job) -> dict[str, Any]:
    """The job object of SPEC.md, as clients see it."""
    error = None
    if job.error_code is not None:
        error = {
            "code": job.error_code,
            "message": job.error_message or "",
            "retryable": bool(job.error_retryable),
        }
    webhook = None
    if job.webhook_url is not None:
        webhook = {"url": job.webhook_url, "status": "pending", "attempts": 0}
    return {
        "id": str(job.id),
        "status": job.status,
        "model": job.model,
        # Addition to SPEC: the model that produced the result (a fallback, perhaps).
        "answered_by": job.current_model if job.status == "succeeded" else None,
        "task": job.task,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "result": job.result,
        "error": error,
        "usage": {"input_tokens": job.input_tokens, "output_tokens": job.output_tokens},
        "cost_usd": _money(job.cost_usd),
        "cache_hit": job.cache_hit,
        "metadata": job.metadata_,
        "webhook": webhook,
    }
