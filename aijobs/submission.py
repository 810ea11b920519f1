"""Submitting a job: validation beyond the schema, Idempotency-Key, the exact cache,
and in-flight coalescing — each decided in Postgres, so it holds across every API
process. Services flush; the edge commits, then publishes what needs a worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from aijobs import budget
from aijobs.errors import Conflict, IdempotencyConflict, InvalidRequest
from aijobs.fingerprint import body_hash, fingerprint
from aijobs.job_view import VIEW_COLUMNS
from aijobs.pricing import price_for
from aijobs.schemas import JobRequest
from aijobs.settings import get_settings
from aijobs.ssrf import literal_target_refused

MODE_FOR_TASK = {"chat": "chat", "embed": "embedding"}
IDEMPOTENCY_TTL = "24 hours"

_COLUMNS = """id, tenant_id, status, model, current_model, model_attempts, task, request,
    metadata, webhook_url, max_attempts, timeout_s, attempts, input_tokens, output_tokens,
    cost_usd, cache_hit, saved_usd, fingerprint, leader_id, followers, result, started_at,
    finished_at, created_at, enqueued_at, reserve_usd"""

# What a submit returns: the job to show, and what the API counts it by.
_RETURNING = ", ".join((*VIEW_COLUMNS, "leader_id", "saved_usd"))

# One round trip: look the cache up and insert the job, finished if it was a hit. An
# identical request already in flight makes the insert do nothing (the unique index
# on in-flight leaders): the caller then follows that leader.
_INSERT = text(
    f"""
    WITH hit AS (
        SELECT result, model, cost_usd FROM cache_entries
        WHERE tenant_id = :tenant_id AND fingerprint = :fingerprint AND expires_at > now()
    )
    INSERT INTO jobs ({_COLUMNS})
    SELECT :id, :tenant_id, CASE WHEN hit.result IS NULL THEN 'queued' ELSE 'succeeded' END,
           :model, coalesce(hit.model, :model), 0, :task, :request, :metadata, :webhook_url,
           :max_attempts, :timeout_s, 0, 0, 0, 0, hit.result IS NOT NULL,
           coalesce(hit.cost_usd, 0), :fingerprint, NULL, 0, hit.result,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END,
           CASE WHEN hit.result IS NULL THEN NULL ELSE now() END, now(), now(), :reserve_usd
    FROM (SELECT 1) AS one LEFT JOIN hit ON true
    ON CONFLICT (tenant_id, fingerprint)
        WHERE leader_id IS NULL AND status IN ('queued', 'running') DO NOTHING
    RETURNING {_RETURNING}
    """
).bindparams(
    bindparam("request", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("reserve_usd", type_=JSONB),
)

# Lock the in-flight leader (its settle waits for our commit, so it cannot miss us).
_FOLLOW = text(
    """
    UPDATE jobs SET followers = followers + 1
    WHERE tenant_id = :tenant_id AND fingerprint = :fingerprint AND leader_id IS NULL
      AND status IN ('queued', 'running')
    RETURNING id
    """
)
_INSERT_FOLLOWER = text(
    f"""
    INSERT INTO jobs ({_COLUMNS})
    VALUES (:id, :tenant_id, 'queued', :model, :model, 0, :task, :request, :metadata,
            :webhook_url, :max_attempts, :timeout_s, 0, 0, 0, 0, false, 0, :fingerprint,
            :leader_id, 0, NULL, NULL, NULL, now(), now(), :reserve_usd)
    RETURNING {_RETURNING}
    """
).bindparams(
    bindparam("request", type_=JSONB),
    bindparam("metadata", type_=JSONB),
    bindparam("reserve_usd", type_=JSONB),
)

_JOB = text(f"SELECT {_RETURNING} FROM jobs WHERE id = :id")

_FORGET_EXPIRED_KEY = text(
    f"""
    DELETE FROM idempotency_keys WHERE tenant_id = :tenant_id AND key = :key
      AND created_at < now() - interval '{IDEMPOTENCY_TTL}'
    """
)
# Two requests with one key at once: the second waits on the first's row, then sees it.
_CLAIM_KEY = text(
    """
    INSERT INTO idempotency_keys (tenant_id, key, body_hash, job_id)
    VALUES (:tenant_id, :key, :body_hash, :job_id)
    ON CONFLICT (tenant_id, key) DO NOTHING
    RETURNING job_id
    """
)
_KEY_OWNER = text(
    "SELECT body_hash, job_id FROM idempotency_keys WHERE tenant_id = :tenant_id AND key = :key"
)


@dataclass(frozen=True)
class Submitted:
    row: dict[str, Any]
    publish: bool  # True when a worker must run it (a new leader, not a hit or a follower)


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


def _replayed(
    session: Session, tenant_id: uuid.UUID, key: str, request: JobRequest, job_id: uuid.UUID
) -> uuid.UUID | None:
    """Claim the Idempotency-Key for job_id; or the job an earlier request with it made."""
    params = {"tenant_id": tenant_id, "key": key}
    session.execute(_FORGET_EXPIRED_KEY, params)
    digest = body_hash(request)
    claimed = session.execute(_CLAIM_KEY, {**params, "body_hash": digest, "job_id": job_id})
    if claimed.first() is not None:
        return None
    earlier = session.execute(_KEY_OWNER, params).one()
    if earlier.body_hash != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body",
            extra={"job_id": str(earlier.job_id)},
        )
    return uuid.UUID(str(earlier.job_id))


def submit(
    session: Session,
    tenant_id: uuid.UUID,
    request: JobRequest,
    *,
    idempotency_key: str | None = None,
    budgeted: bool = False,
) -> Submitted:
    check_submittable(request)
    if budgeted:
        budget.refuse_if_over(session.connection(), tenant_id)
    job_id = uuid.uuid4()
    if idempotency_key is not None:
        earlier = _replayed(session, tenant_id, idempotency_key, request, job_id)
        if earlier is not None:
            row = session.execute(_JOB, {"id": earlier})
            return Submitted(dict(row.mappings().one()), publish=False)
    params = {
        "id": job_id,
        "tenant_id": tenant_id,
        "model": request.model,
        "task": request.task,
        "request": request.model_dump(mode="json", exclude_none=True),
        "metadata": request.metadata,
        "webhook_url": request.webhook_url,
        "max_attempts": request.max_attempts,
        "timeout_s": Decimal(str(request.timeout_s)),
        "fingerprint": fingerprint(tenant_id, request) if request.cache else None,
        "reserve_usd": budget.reservations(request),
    }
    own_unit = not session.in_transaction() and isinstance(session.get_bind(), Engine)
    if idempotency_key is None and not budgeted and own_unit:
        # Most submits are this one statement: run it in autocommit, which saves the
        # BEGIN and COMMIT round trips. (Following a leader takes a transaction; a
        # session bound to a caller's connection is part of the caller's.)
        fast = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        inserted = fast.execute(_INSERT, params).mappings().first()
        if inserted is not None:
            return Submitted(dict(inserted), publish=inserted["status"] == "queued")
        session.commit()  # ends the autocommit unit (it holds nothing to commit)
    # The leader can end between our insert and our follow: then look again (it is a
    # cache hit now, or we lead). Each round needs that to happen again; three is plenty.
    for _ in range(3):
        inserted = session.execute(_INSERT, params).mappings().first()
        if inserted is not None:
            return Submitted(dict(inserted), publish=inserted["status"] == "queued")
        leader = session.execute(_FOLLOW, params).scalar()
        if leader is not None:
            row = session.execute(_INSERT_FOLLOWER, {**params, "leader_id": leader})
            return Submitted(dict(row.mappings().one()), publish=False)
    raise Conflict("an identical request kept changing state; try again")
