"""Submitting a job: validation beyond the schema (prices, configured providers, webhook
targets), Idempotency-Key, the exact cache, and in-flight coalescing — each decided in
Postgres, so it holds across every API process. Services flush; the edge commits, then
publishes what needs a worker. A replay is looked up first (`replay`), before anything
that could refuse a new job: the job a key made is the client's whatever changed since."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from aijobs.billing import budget
from aijobs.billing.pricing import price_for
from aijobs.checks.run import output_checks, refuse_input
from aijobs.checks.schemas import judge_models
from aijobs.db import autocommit, session_scope
from aijobs.errors import Conflict, IdempotencyConflict, InvalidRequest, Unsupported
from aijobs.jobs import transitions
from aijobs.jobs.fingerprint import body_hash, fingerprint
from aijobs.jobs.schemas import JobRequest
from aijobs.prompts.resolve import resolve as resolve_prompt
from aijobs.settings import get_settings
from aijobs.webhooks.ssrf import literal_target_refused

MODE_FOR_TASK = {"chat": "chat", "embed": "embedding"}
IDEMPOTENCY_TTL = "24 hours"

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
_LIVE_KEY_OWNER = text(
    f"""
    SELECT body_hash, job_id FROM idempotency_keys
    WHERE tenant_id = :tenant_id AND key = :key
      AND created_at >= now() - interval '{IDEMPOTENCY_TTL}'
    """
)
# The setting each provider needs on this deployment: its variable, its Settings field.
# sim needs none: it is always available.
PROVIDER_KEYS = {
    "openai": ("OPENAI_API_KEY", "openai_api_key"),
    "anthropic": ("ANTHROPIC_API_KEY", "anthropic_api_key"),
}


@dataclass(frozen=True)
class Submitted:
    row: dict[str, Any]
    publish: bool  # True when a worker must run it (a new leader, not a hit or a follower)


def _missing_setting(provider: str) -> str | None:
    """The variable this deployment lacks to call `provider`, if any."""
    variable, field_name = PROVIDER_KEYS.get(provider, (None, None))
    if field_name is None or getattr(get_settings(), field_name) is not None:
        return None
    return variable


def check_webhook_target(url: str | None) -> None:
    """A webhook URL whose host is a literal private, loopback or link-local address is
    refused at submit (names are checked again at each delivery, behind the SSRF guard)."""
    if url is None:
        return
    host = urlsplit(url).hostname or ""
    if literal_target_refused(host, get_settings().webhook_allow_hosts):
        raise InvalidRequest(
            "webhook_url points at a private, loopback or link-local address; allow such"
            " hosts with AIJOBS_WEBHOOK_ALLOW_HOSTS (then restart the API and workers)",
            extra={"field": "webhook_url"},
        )


def check_submittable(request: JobRequest, *, refuse_unconfigured: bool = False) -> None:
    """What pydantic cannot know: prices, task/model fit, webhook targets; and with
    `refuse_unconfigured`, providers this deployment has no key for (a job no worker
    here could run is refused now, not failed later)."""
    if request.model in request.fallbacks:
        raise InvalidRequest("fallbacks must not repeat the model")
    if request.task == "embed" and output_checks(request.checks):
        # An embedding has no text output to check (input checks do run, on the input).
        raise Unsupported(
            'an embed job has no text output: its checks may only be "on": "input"'
            " (regex, not_regex, max_chars on each input string)",
            extra={"field": "checks"},
        )
    for model in judge_models(request.checks):
        price_for(model)  # unknown_model
    for model in request.models():
        price = price_for(model)
        if price.mode != MODE_FOR_TASK[request.task]:
            raise InvalidRequest(
                f"model {model!r} is a {price.mode} model; it cannot run task {request.task!r}"
            )
        missing = _missing_setting(model.partition("/")[0]) if refuse_unconfigured else None
        if missing is not None:
            raise Unsupported(
                f"{model}: {missing} is not set on this deployment", extra={"model": model}
            )
    check_webhook_target(request.webhook_url)


def _input_texts(request: JobRequest) -> list[str]:
    if request.messages is not None:
        return [message.content for message in request.messages]
    if isinstance(request.input, list):
        return list(request.input)
    return [request.input] if request.input is not None else []


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


def replay(
    session: Session, tenant_id: uuid.UUID, key: str, request: JobRequest
) -> Submitted | None:
    """The job an earlier request with this Idempotency-Key made (same body), or None
    when the key is new (or expired); a different body is IdempotencyConflict. One
    indexed read, made only for requests that carry a key (in autocommit when the
    session is its own unit: reads need no BEGIN and COMMIT round trips)."""
    own_unit = not session.in_transaction() and isinstance(session.get_bind(), Engine)
    conn = (
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        if own_unit
        else session.connection()
    )
    earlier = conn.execute(_LIVE_KEY_OWNER, {"tenant_id": tenant_id, "key": key}).first()
    if earlier is None:
        return None
    if earlier.body_hash != body_hash(request):
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body",
            extra={"job_id": str(earlier.job_id)},
        )
    job_id = uuid.UUID(str(earlier.job_id))
    return Submitted(dict(transitions.submitted(conn, job_id)), False)


def _checked(
    reader: Connection, tenant_id: uuid.UUID, request: JobRequest, refuse_unconfigured: bool
) -> tuple[JobRequest, dict[str, Any] | None]:
    """The request as it will run (a prompt job rendered) and its prompt, once every
    check that needs no write has passed."""
    prompt = None
    if request.prompt is not None:
        request, prompt = resolve_prompt(reader, tenant_id, request)
    check_submittable(request, refuse_unconfigured=refuse_unconfigured)
    # Input checks see what would be sent (a prompt job's rendered messages); a failure
    # is refused before anything is written.
    refuse_input(request.checks, _input_texts(request))
    return request, prompt


def _params(
    tenant_id: uuid.UUID, request: JobRequest, prompt: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
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
        "prompt": prompt,
        "priority": request.priority or "interactive",
    }


def submit_new(
    tenant_id: uuid.UUID,
    request: JobRequest,
    *,
    budgeted: bool = False,
    refuse_unconfigured: bool = False,
) -> Submitted:
    """The common submit, with no Idempotency-Key (the API's): one statement on an
    autocommit connection, the budget's check folded in, no Session (its unit of work
    cost about 0.2 ms of CPU a submit, docs/scaling.md). Following an identical job in
    flight takes `submit`'s transaction."""
    with autocommit() as conn:
        checked, prompt = _checked(conn, tenant_id, request, refuse_unconfigured)
        params = _params(tenant_id, checked, prompt)
        inserted = (
            transitions.insert_budgeted(conn, params)
            if budgeted
            else transitions.insert(conn, params)
        )
    if inserted is not None:
        return Submitted(dict(inserted), publish=inserted["status"] == "queued")
    with session_scope() as session:  # the budget is checked already
        return submit(session, tenant_id, request, refuse_unconfigured=refuse_unconfigured)


def submit(
    session: Session,
    tenant_id: uuid.UUID,
    request: JobRequest,
    *,
    idempotency_key: str | None = None,
    budgeted: bool = False,
    refuse_unconfigured: bool = False,
) -> Submitted:
    """A new job (or a cache hit, a follower, an Idempotency-Key's earlier job). The API
    passes `refuse_unconfigured`: its settings are the deployment's. An in-process
    caller (a test, a benchmark) may submit for workers configured elsewhere."""
    original = request  # what an Idempotency-Key's body hash covers
    own_unit = not session.in_transaction() and isinstance(session.get_bind(), Engine)
    # No Idempotency-Key, the session its own unit of work: one statement in autocommit
    # then (the budget's check folded into the insert when there is one).
    fast_path = idempotency_key is None and own_unit
    # On the fast path a prompt is read in autocommit too (versions are immutable).
    reader = (
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        if fast_path
        else session.connection()
    )
    request, prompt = _checked(reader, tenant_id, request, refuse_unconfigured)
    if budgeted and not fast_path:
        budget.refuse_if_over(session.connection(), tenant_id)
    params = _params(tenant_id, request, prompt)
    if idempotency_key is not None:
        earlier = _replayed(session, tenant_id, idempotency_key, original, params["id"])
        if earlier is not None:
            return Submitted(dict(transitions.submitted(session.connection(), earlier)), False)
    if fast_path:
        # Most submits are this one statement: run it in autocommit, which saves the
        # BEGIN and COMMIT round trips. (Following a leader takes a transaction, the
        # budget checked already; a session bound to a caller's connection is part of
        # the caller's.)
        inserted = (
            transitions.insert_budgeted(reader, params)
            if budgeted
            else transitions.insert(reader, params)
        )
        if inserted is not None:
            return Submitted(dict(inserted), publish=inserted["status"] == "queued")
        session.commit()  # ends the autocommit unit (it holds nothing to commit)
    # The leader can end between our insert and our follow: then look again (it is a
    # cache hit now, or we lead). Each round needs that to happen again; three is plenty.
    conn = session.connection()
    for _ in range(3):
        inserted = transitions.insert(conn, params)
        if inserted is not None:
            return Submitted(dict(inserted), publish=inserted["status"] == "queued")
        follower = transitions.follow(conn, params)
        if follower is not None:
            return Submitted(dict(follower), publish=False)
    raise Conflict("an identical request kept changing state; try again")
