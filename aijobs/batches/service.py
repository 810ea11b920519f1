"""The batch service: submit (all or nothing, Idempotency-Key on the whole batch),
read, list, cancel. Services flush; the edge commits, then publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from aijobs import cursor as cursor_of
from aijobs.billing import budget
from aijobs.errors import Conflict, IdempotencyConflict, InvalidRequest, NotFound
from aijobs.jobs import submission

from . import transitions
from .intake import Lines
from .schemas import BatchOptions
from .view import view

_BY_KEY = text(
    "SELECT id, body_hash FROM batches WHERE tenant_id = :tenant_id AND idempotency_key = :key"
)
_WEBHOOK = text(
    "SELECT status, attempts FROM webhook_deliveries WHERE batch_id = :id ORDER BY seq DESC LIMIT 1"
)


@dataclass(frozen=True)
class Submitted:
    batch: dict[str, Any]
    publish: list[uuid.UUID]  # the jobs a worker must run (none for a replay)


def check_options(options: BatchOptions) -> None:
    """What the options' schema cannot know: the webhook's target. (What the batch tier
    serves is checked per line: aijobs/batches/intake.py.)"""
    submission.check_webhook_target(options.webhook_url)


def replay(conn: Connection, tenant_id: uuid.UUID, key: str, body_hash: str) -> Submitted | None:
    """The batch an earlier request with this Idempotency-Key made (same body), or None."""
    earlier = conn.execute(_BY_KEY, {"tenant_id": tenant_id, "key": key}).first()
    if earlier is None:
        return None
    if earlier.body_hash != body_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body",
            extra={"batch_id": str(earlier.id)},
        )
    return Submitted(_view(conn, tenant_id, earlier.id), [])


def submit(
    session: Session,
    tenant_id: uuid.UUID,
    options: BatchOptions,
    lines: Lines,
    *,
    idempotency_key: str | None,
    body_hash: str,
    budgeted: bool,
) -> Submitted:
    """A new batch with all its jobs, in the session's transaction (the edge commits,
    then publishes `publish`)."""
    if lines.errors:
        raise InvalidRequest(
            f"{len(lines.errors)}{'+' if len(lines.errors) >= 100 else ''} of the batch's"
            " jobs are invalid; nothing was submitted",
            extra={"errors": lines.errors},
        )
    conn = session.connection()
    if budgeted:
        budget.refuse_if_over(conn, tenant_id)
    batch_id = uuid.uuid4()
    created = transitions.create(
        conn,
        {
            "id": batch_id,
            "tenant_id": tenant_id,
            "tier": options.tier,
            "metadata": options.metadata,
            "webhook_url": options.webhook_url,
            "total": len(lines.rows),
            "idempotency_key": idempotency_key,
            "body_hash": body_hash if idempotency_key is not None else None,
        },
    )
    if not created:
        assert idempotency_key is not None  # only a key can conflict
        session.rollback()
        again = replay(session.connection(), tenant_id, idempotency_key, body_hash)
        if again is None:
            raise Conflict("a request with this Idempotency-Key is in progress; try again")
        return again
    transitions.insert_jobs(conn, tenant_id, batch_id, lines.rows, options.tier)
    transitions.count(conn, batch_id)
    return Submitted(_view(conn, tenant_id, batch_id), transitions.to_publish(conn, batch_id))


def _parse_id(batch_id: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(batch_id, uuid.UUID):
        return batch_id
    try:
        return uuid.UUID(batch_id)
    except ValueError:
        return None


def _view(conn: Connection, tenant_id: uuid.UUID, batch_id: str | uuid.UUID) -> dict[str, Any]:
    parsed = _parse_id(batch_id)
    row = transitions.row(conn, tenant_id, parsed) if parsed is not None else None
    if row is None:
        raise NotFound(f"no batch {batch_id}")
    webhook = None
    if row["webhook_url"] is not None:
        webhook = conn.execute(_WEBHOOK, {"id": row["id"]}).mappings().first()
    return view(row, webhook)


def get(conn: Connection, tenant_id: uuid.UUID, batch_id: str) -> dict[str, Any]:
    """A tenant's batch; another tenant's id answers exactly like a missing one."""
    return _view(conn, tenant_id, batch_id)


def resolve(conn: Connection, tenant_id: uuid.UUID, batch_id: str) -> uuid.UUID:
    """The id of a tenant's batch (NotFound otherwise)."""
    parsed = _parse_id(batch_id)
    if parsed is None or transitions.row(conn, tenant_id, parsed) is None:
        raise NotFound(f"no batch {batch_id}")
    return parsed


_LIST = text(
    """
    SELECT b.*, d.status AS delivery_status, d.attempts AS delivery_attempts
    FROM batches b
    LEFT JOIN LATERAL (SELECT status, attempts FROM webhook_deliveries
                       WHERE batch_id = b.id ORDER BY seq DESC LIMIT 1) d ON true
    WHERE b.tenant_id = :tenant_id
      AND (CAST(:created AS timestamptz) IS NULL
           OR (b.created_at, b.id) < (CAST(:created AS timestamptz), CAST(:last AS uuid)))
    ORDER BY b.created_at DESC, b.id DESC
    LIMIT :limit
    """
)


def list_batches(
    conn: Connection, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, paged on the unique key (created_at, id), like GET /v1/jobs."""
    created, last = cursor_of.read_keyset(cursor) if cursor else (None, None)
    params = {"tenant_id": tenant_id, "created": created, "last": last, "limit": limit + 1}
    rows = conn.execute(_LIST, params).mappings().all()
    data = []
    for row in rows[:limit]:
        webhook = None
        if row["delivery_status"] is not None:
            webhook = {"status": row["delivery_status"], "attempts": row["delivery_attempts"]}
        data.append(view(row, webhook))
    next_cursor = (
        cursor_of.keyset(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
        if len(rows) > limit
        else None
    )
    return data, next_cursor


@dataclass(frozen=True)
class Cancelled:
    batch: dict[str, Any]
    heirs: list[uuid.UUID]  # followers that lead now, to publish


def cancel(conn: Connection, tenant_id: uuid.UUID, batch_id: str) -> Cancelled:
    """queued | running -> cancelling (cancelled when nothing runs); a batch cancelling
    or cancelled already answers as it is; one that completed is 409."""
    parsed = resolve(conn, tenant_id, batch_id)
    if _view(conn, tenant_id, parsed)["status"] == "completed":
        raise Conflict(f"batch {batch_id} already completed; it cannot be cancelled")
    heirs = transitions.cancel(conn, parsed)
    return Cancelled(_view(conn, tenant_id, parsed), heirs)
