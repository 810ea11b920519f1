"""SQLAlchemy models: tenants, their API keys, jobs, one attempt row per provider call,
the webhook deliveries of finished jobs with one row per delivery attempt, and
prompts with their versions and labels."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MONEY = Numeric(20, 10)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Kept in clear: it keys the HMAC of every webhook we sign for this tenant.
    webhook_secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the previous secret signs too, until it expires (a grace period
    # for receivers to switch).
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(100))
    previous_webhook_secret_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    rpm: Mapped[int | None] = mapped_column(Integer)
    # Its share of the workers against other tenants' (1-1000), and its cap on calls in
    # flight across all workers (None: no cap): aijobs/scheduling/fair_queue.py.
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_inflight: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # sha256 of the key: keys are 256-bit random, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_jobs_queued_due",
            "next_attempt_at",
            "enqueued_at",
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_running_lease", "lease_expires_at", postgresql_where=text("status = 'running'")
        ),
        Index(
            "uq_jobs_inflight_leader",
            "tenant_id",
            "fingerprint",
            unique=True,
            postgresql_where=text("leader_id IS NULL AND status IN ('queued', 'running')"),
        ),
        Index("ix_jobs_error_code", "error_code", "created_at"),
        Index(
            "ix_jobs_prompt",
            "tenant_id",
            text("(prompt ->> 'name')"),
            "created_at",
            postgresql_where=text("prompt IS NOT NULL"),
        ),
        Index(
            "ix_jobs_waiting_followers",
            "leader_id",
            postgresql_where=text("leader_id IS NOT NULL AND status = 'queued'"),
        ),
        Index(
            "ix_jobs_purge_due",
            "finished_at",
            postgresql_where=text("NOT purged AND finished_at IS NOT NULL"),
        ),
        Index(
            "ix_jobs_batch_tier_queued",
            "current_model",
            "created_at",
            postgresql_where=text("tier = 'batch' AND status = 'queued'"),
        ),
        Index(
            "ix_jobs_batch_index",
            "batch_id",
            "batch_index",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
    )
    # INSERT ... RETURNING the server defaults: no second round trip to read created_at.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    # The model being tried now (the job's model, or one of its fallbacks), and the
    # calls made to it so far: max_attempts applies to each model in turn.
    current_model: Mapped[str] = mapped_column(String(200))
    model_attempts: Mapped[int] = mapped_column(Integer, default=0)
    task: Mapped[str] = mapped_column(String(16))
    # The validated request body (messages/input, params, response_schema, ...).
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # The job's latest webhook delivery (pending | delivered | failed) and its attempts:
    # set by the trigger that creates the delivery, then by the delivery task.
    webhook_status: Mapped[str | None] = mapped_column(String(16))
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float] = mapped_column(Numeric(8, 3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_retryable: Mapped[bool | None] = mapped_column(Boolean)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    # The most one call to each model may cost ({model: USD}): reserved before a call.
    reserve_usd: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    # What a cache hit saved: the price of the call it did not make.
    saved_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    # Retention: the request, result and everything quoting them were removed (the job,
    # its attempts and costs stay); see transitions.purge_expired.
    purged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Dedup: the hash of what determines the answer (None when cache is off); a
    # follower waits on its in-flight leader instead of calling the provider.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    leader_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    followers: Mapped[int] = mapped_column(Integer, default=0)
    # Delivery bookkeeping: Postgres, not the broker, says what still has to run.
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # {"name", "version"} of the prompt version the job was rendered from, or None.
    prompt: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Checks: the results for the job's last output ([{"type", "passed", "detail"}]),
    # and what a check retry adds to the next call of the same model: the failed output
    # and what failed (messages), and the most those messages cost as input (reserved
    # with the call, beside the request's own reservation).
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    retry_messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSONB)
    retry_reserve_usd: Mapped[Decimal] = mapped_column(
        MONEY, default=Decimal(0), server_default=text("0")
    )
    # A judge check's call that waits for budget: the output it scores, the checks run
    # so far, the judge to call next and its reservation (worker/judging.py). Set only
    # while the job is queued for that judge (or running it); any settle clears it.
    judge_pending: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # A batch's job: its batch, the client's custom_id and its line in the input.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    custom_id: Mapped[str | None] = mapped_column(String(200))
    batch_index: Mapped[int | None] = mapped_column(Integer)
    # interactive | batch: within a tenant, interactive jobs start first.
    priority: Mapped[str] = mapped_column(
        String(16), default="interactive", server_default=text("'interactive'")
    )
    # standard | batch: the tier of the job's next call. A batch-tier job waits for the
    # provider-batch dispatcher; its claim there makes any later call standard.
    tier: Mapped[str] = mapped_column(
        String(16), default="standard", server_default=text("'standard'")
    )


class Batch(Base):
    """Many jobs submitted as one. Its counters follow its jobs' statuses (a statement
    trigger on jobs, migration 0012), so reading a batch never counts its jobs."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_batches_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # queued | running | completed | cancelling | cancelled (aijobs/batches/transitions.py)
    status: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    total: Mapped[int] = mapped_column(Integer)
    queued: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    cancelled: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    body_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Attempt(Base):
    """One provider call. Written before the call, completed after it."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt_no"),
        Index("ix_attempts_tenant_started", "tenant_id", "started_at"),
        Index(
            "ix_attempts_provider_batch",
            "provider_batch_id",
            postgresql_where=text("provider_batch_id IS NOT NULL"),
        ),
        Index(
            "ix_attempts_in_flight",
            "job_id",
            "attempt_no",
            postgresql_where=text("outcome = 'started'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    worker: Mapped[str | None] = mapped_column(String(120))
    # started | succeeded | failed | interrupted
    outcome: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    # The call's maximum cost, and whether it was held against the tenant's budget.
    reserved_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    budget_held: Mapped[bool] = mapped_column(Boolean, default=False)
    # A call whose worker died: its usage never reached us, so it is charged at its
    # reservation (the most it can have cost).
    cost_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    # call: the job's own call; judge: a judge check's call about its output.
    kind: Mapped[str] = mapped_column(String(8), default="call", server_default=text("'call'"))
    # The output checks run on this call's answer: [{"type", "passed", "detail"}].
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Of input_tokens, those read from the provider's prompt cache and those written
    # to it (Anthropic's cache_creation_input_tokens), each at its own price.
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The provider batch this call went in (the batch tier), or None for a single call.
    provider_batch_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class ProviderBatch(Base):
    """One OpenAI Batch or Anthropic Message Batch: the calls of batch-tier jobs of one
    model, each recorded as an attempt naming it (worker/provider_batches/).

    building -> submitting -> submitted -> ended; a worker SIGKILLed anywhere resumes
    from the row (the provider's batch is found again, never submitted twice)."""

    __tablename__ = "provider_batches"
    __table_args__ = (
        UniqueConstraint("provider", "provider_batch_id"),
        Index(
            "ix_provider_batches_live", "next_poll_at", postgresql_where=text("state <> 'ended'")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(16))  # openai | anthropic
    model: Mapped[str] = mapped_column(String(200))  # "<provider>/<name>"
    task: Mapped[str] = mapped_column(String(16))  # chat | embed
    state: Mapped[str] = mapped_column(String(16))
    requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    provider_batch_id: Mapped[str | None] = mapped_column(String(200))
    input_file_id: Mapped[str | None] = mapped_column(String(200))  # OpenAI's uploaded JSONL
    provider_status: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)
    polls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set (committed) before the provider is asked to create the batch: after a crash,
    # a provider batch created since then may be ours.
    submit_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_poll_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CacheEntry(Base):
    """A successful result, reusable by the same tenant's identical requests until expiry."""

    __tablename__ = "cache_entries"
    __table_args__ = (Index("ix_cache_entries_expires_at", "expires_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    model: Mapped[str] = mapped_column(String(200))
    cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    # The output checks the cached answer passed, shown on the jobs it answers.
    checks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the job it created and the body it came with."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BudgetCounter(Base):
    """A tenant's spend and reservations in the current UTC day and month: the one row
    every reservation checks and updates in a single statement."""

    __tablename__ = "budget_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date)
    day_spent: Mapped[Decimal] = mapped_column(MONEY)
    day_reserved: Mapped[Decimal] = mapped_column(MONEY)
    month: Mapped[date] = mapped_column(Date)
    month_spent: Mapped[Decimal] = mapped_column(MONEY)
    month_reserved: Mapped[Decimal] = mapped_column(MONEY)


class AdminAudit(Base):
    """One admin action: what, on which jobs or tenants, when, and from where."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    action: Mapped[str] = mapped_column(String(60))
    actor: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)


class WebhookDelivery(Base):
    """One event to deliver to a job's webhook_url. Created by a trigger on jobs when
    the job ends; its due time and lease live here, not in the broker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "seq"),
        UniqueConstraint("batch_id", "seq"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_sending_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'sending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # A job's delivery, or (job_id NULL) a batch's: batch.completed | batch.cancelled.
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # 1 for the job's first end; a job that ends again (an admin re-run) gets 2, ...
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))  # job.succeeded | job.failed | job.cancelled
    url: Mapped[str] = mapped_column(Text)
    # pending (due at next_attempt_at) | sending (leased) | delivered | failed
    status: Mapped[str] = mapped_column(String(16))
    tries: Mapped[int] = mapped_column(Integer, default=0)  # in this run of the schedule
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # all of them
    # The request body, fixed at the first attempt: every retry sends the same bytes.
    body: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """One POST of a delivery, as the receiver answered it (or why it could not)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt_no"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    attempt_no: Mapped[int] = mapped_column(Integer)
    webhook_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first KiB


class Prompt(Base):
    """A tenant's named template; its row is the lock that numbers its versions."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PromptVersion(Base):
    """One immutable version: messages with placeholders, model, params, checks, note."""

    __tablename__ = "prompt_versions"

    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    variables: Mapped[list[str]] = mapped_column(JSONB)
    # sha256 of the canonical content: "unchanged since the latest version" in one compare.
    content_hash: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PromptLabel(Base):
    """A movable name for a version (`production`), or a weighted split between versions."""

    __tablename__ = "prompt_labels"
    __table_args__ = (CheckConstraint("(version IS NULL) <> (split IS NULL)", name="one_target"),)

    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(50), primary_key=True)
    version: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
