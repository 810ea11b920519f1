"""The batch tier's dispatcher: a thread in every worker that forms provider batches from
the jobs queued for the batch tier, submits them, polls them, and settles their lines.

Each pass (every AIJOBS_SWEEP_INTERVAL_S):
- jobs still running in a provider batch that is gone or ended are handed to the
  sweeper (their lease lapses);
- one worker at a time (a session advisory lock) forms provider batches: per model, up
  to AIJOBS_PROVIDER_BATCH_MAX_REQUESTS queued jobs, each claimed into the batch's row
  (running, its attempt recorded, its call reserved at the batch price; a call that
  cannot fit the budget alone fails budget_exceeded, one that waits for other
  reservations goes back to waiting), then submitted;
- every provider batch whose next step is due is stepped by whichever worker takes its
  lock: submitted (after looking for one a crashed worker created), or polled every
  AIJOBS_PROVIDER_BATCH_POLL_S; once ended, its lines are settled one by one through
  the single call's settle (worker/settle.py), by custom_id = job id, in any order; a
  call without a line is a failed attempt. A failed attempt is retried on the standard
  tier (the sweeper publishes the retry when due).

All state is in Postgres: a worker SIGKILLed at any point leaves rows another worker
resumes from, and no provider batch is created twice (the row is written before the
provider call, and the provider's batch is looked for before any new one is made).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from sqlalchemy import Connection

from aijobs import metrics
from aijobs.batches import provider_batches
from aijobs.billing.pricing import price_for
from aijobs.db import autocommit
from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest, Message
from aijobs.settings import get_settings
from worker import budget_waiters, runner, settle
from worker.provider_batches.base import BatchAPI, Call
from worker.providers.base import SHAPE_ERRORS, Completion, ProviderError, unexpected_shape
from worker.providers.errors import map_exception

log = logging.getLogger("aijobs.provider_batches")

APIS = frozenset({"openai", "anthropic"})  # the providers with a batch API


@functools.cache
def batch_api(provider: str) -> BatchAPI:
    """The provider's batch API, its SDK imported on first use (not at a worker's boot:
    see worker/providers/registry.py)."""
    if provider == "openai":
        from worker.provider_batches.openai_batches import OpenAIBatches

        return OpenAIBatches()
    from worker.provider_batches.anthropic_batches import AnthropicBatches

    return AnthropicBatches()


CLAIM_ROUNDS = 3
NOT_SENT = ProviderError(
    "cancelled", "the job ended before its provider batch was sent; no call", retryable=False
)


@contextlib.contextmanager
def _locked(provider_batch_id: uuid.UUID) -> Iterator[Connection | None]:
    """The row's lock on a connection of its own (yields None when another worker holds
    it); released on the way out, or by Postgres if this process dies."""
    with autocommit() as lock:
        if not provider_batches.try_lock(lock, provider_batch_id):
            yield None
            return
        try:
            yield lock
        finally:
            provider_batches.unlock(lock, provider_batch_id)


# --- forming ------------------------------------------------------------------------


def form() -> list[uuid.UUID]:
    """Provider batches from the jobs queued for the batch tier (one former at a time):
    the ids formed, each submitted at once."""
    formed: list[uuid.UUID] = []
    with autocommit() as lock:
        if not provider_batches.try_form_lock(lock):
            return formed
        try:
            with autocommit() as conn:
                models = provider_batches.models_waiting(conn)
            for model in models:
                formed += _form_model(model)
        finally:
            provider_batches.form_unlock(lock)
    return formed


def _form_model(model: str) -> list[uuid.UUID]:
    settings = get_settings()
    provider = model.partition("/")[0]
    if provider not in APIS:
        log.error("jobs queued for the batch tier on %s, which has no batch API", model)
        return []
    task = "embed" if price_for(model).mode == "embedding" else "chat"
    formed: list[uuid.UUID] = []
    while True:
        with autocommit() as conn:
            ids = provider_batches.queued(conn, model, settings.provider_batch_max_requests)
        if not ids:
            return formed
        provider_batch_id = uuid.uuid4()
        # The row's lock is taken before the row exists: no other worker steps it while
        # its jobs are being claimed into it.
        with autocommit() as lock:
            provider_batches.try_lock(lock, provider_batch_id)
            try:
                with autocommit() as conn:
                    provider_batches.create(conn, provider_batch_id, provider, model, task)
                    claimed = sum(_claim(conn, job_id, provider_batch_id) for job_id in ids)
                    provider_batches.to_submitting(conn, provider_batch_id)
                log.info("provider batch %s: %d call(s) to %s", provider_batch_id, claimed, model)
                _step(provider_batch_id)
            finally:
                provider_batches.unlock(lock, provider_batch_id)
        formed.append(provider_batch_id)
        if not claimed or len(ids) < settings.provider_batch_max_requests:
            return formed  # (none claimed: the rest waits for budget; the next pass)


def _claim(conn: Connection, job_id: uuid.UUID, provider_batch_id: uuid.UUID) -> bool:
    """Claim one job into the provider batch; True when its call is in it."""
    owner = provider_batches.owner_of(provider_batch_id)
    for _ in range(CLAIM_ROUNDS):
        job = transitions.claim_for_provider_batch(conn, job_id, owner, provider_batch_id)
        if isinstance(job, transitions.OverReserved):
            waiting = transitions.wait_for_budget(conn, job, owner, tier="batch")
            if waiting is None or waiting:
                return False  # cancelled, or waiting for the tenant's reservations
            continue  # room was freed since the claim: claim again
        if isinstance(job, transitions.Refused):
            metrics.JOBS_FINISHED.labels("failed", job.code).inc()
            if job.followers:
                transitions.finish_followers(conn, job_id)
            return False
        return job is not None
    return False


# --- stepping -----------------------------------------------------------------------


def step_due() -> int:
    """Step every provider batch whose next step is due (and whose lock is free)."""
    with autocommit() as conn:
        due = provider_batches.due(conn)
    stepped = 0
    for provider_batch_id in due:
        with _locked(provider_batch_id) as lock:
            if lock is not None:
                _step(provider_batch_id)
                stepped += 1
    return stepped


def _step(provider_batch_id: uuid.UUID) -> None:
    """One step of a row whose lock we hold, by its state."""
    with autocommit() as conn:
        row = provider_batches.row(conn, provider_batch_id)
        if row is None or row["state"] == "ended":
            return
        if row["state"] == "building":  # its former died: submit what it claimed
            provider_batches.to_submitting(conn, provider_batch_id)
            row = provider_batches.row(conn, provider_batch_id)
    assert row is not None
    api = batch_api(row["provider"])
    try:
        if row["state"] == "submitting":
            _submit(api, provider_batch_id)
        else:
            _poll(api, provider_batch_id)
    except Exception as exc:
        error = map_exception(exc)
        if error.code == "internal":
            log.exception("provider batch %s: step failed", provider_batch_id)
        else:
            log.warning("provider batch %s: %s (again later)", provider_batch_id, error.message)
        if error.retryable or error.code == "internal":
            with autocommit() as conn:
                provider_batches.defer(
                    conn, provider_batch_id, error.message, get_settings().provider_batch_poll_s
                )
        else:
            # The provider refused the batch itself: each call is a failed attempt
            # (retried on the standard tier when attempts remain).
            refusal = ProviderError(error.code, error.message, retryable=True)
            _settle_rest(provider_batch_id, refusal, status=None, error_text=error.message)


def _calls(members: list[provider_batches.Member]) -> list[Call]:
    calls = []
    for member in members:
        request = JobRequest.model_validate(member.request)
        if member.retry_messages and request.messages is not None:
            added = [Message.model_validate(message) for message in member.retry_messages]
            request = request.model_copy(update={"messages": [*request.messages, *added]})
        name = member.model.partition("/")[2]
        calls.append(Call(custom_id=str(member.job_id), name=name, request=request))
    return calls


def _submit(api: BatchAPI, provider_batch_id: uuid.UUID) -> None:
    settings = get_settings()
    with autocommit() as conn:
        row = provider_batches.row(conn, provider_batch_id)
        members = provider_batches.members(conn, provider_batch_id)
    assert row is not None
    owner = provider_batches.owner_of(provider_batch_id)
    found = api.find(row) if members else None
    if found is None:
        # A job cancelled before its provider batch was sent: its call is not made.
        for member in [m for m in members if not m.running]:
            _settle_line(_claimed(member), owner, NOT_SENT, 0)
        members = [m for m in members if m.running]
        if not members:  # every call was settled or none was claimed
            with autocommit() as conn:
                provider_batches.end(conn, provider_batch_id, None, "no calls")
            return
        calls = _calls(members)
        with autocommit() as conn:
            provider_batches.submit_started(conn, provider_batch_id, len(calls))
            row = provider_batches.row(conn, provider_batch_id)
        assert row is not None

        def on_file(file_id: str) -> None:
            with autocommit() as conn:
                provider_batches.input_file(conn, provider_batch_id, file_id)

        found = api.submit(row, calls, on_file)
        metrics.PROVIDER_BATCHES.labels(row["model"], "submitted").inc()
        log.info("provider batch %s: submitted as %s", provider_batch_id, found)
    else:
        metrics.PROVIDER_BATCHES.labels(row["model"], "found").inc()
        log.info(
            "provider batch %s: found %s (submitted before a restart)", provider_batch_id, found
        )
    with autocommit() as conn:
        provider_batches.submitted(conn, provider_batch_id, found, settings.provider_batch_poll_s)


def _poll(api: BatchAPI, provider_batch_id: uuid.UUID) -> None:
    with autocommit() as conn:
        row = provider_batches.row(conn, provider_batch_id)
    assert row is not None
    polled = api.poll(row["provider_batch_id"])
    if not polled.ended:
        with autocommit() as conn:
            provider_batches.polled(
                conn, provider_batch_id, polled.status, get_settings().provider_batch_poll_s
            )
        return
    with autocommit() as conn:
        pending = {str(m.job_id): m for m in provider_batches.members(conn, provider_batch_id)}
    latency_ms = _latency_ms(row["submitted_at"])
    owner = provider_batches.owner_of(provider_batch_id)
    tenants: dict[uuid.UUID, transitions.Claimed] = {}
    for custom_id, raw in api.results(row["provider_batch_id"]):
        member = pending.pop(custom_id, None)
        if member is None:
            continue  # settled before a restart, or not ours
        job = _claimed(member)
        try:
            outcome = api.outcome(raw, JobRequest.model_validate(member.request))
        except SHAPE_ERRORS as exc:  # a line of an odd shape fails its attempt, not the batch
            outcome = unexpected_shape(exc)
        except Exception as exc:
            outcome = map_exception(exc)
        _settle_line(job, owner, outcome, latency_ms)
        if job.budget_held:
            tenants[job.tenant_id] = job
    missing = ProviderError(
        "provider_error",
        f"the provider batch ended ({polled.status}) without an answer for this request",
        retryable=True,
    )
    for member in pending.values():
        job = _claimed(member)
        _settle_line(job, owner, missing, latency_ms)
        if job.budget_held:
            tenants[job.tenant_id] = job
    with autocommit() as conn:
        provider_batches.end(conn, provider_batch_id, polled.status)
    for job in tenants.values():
        budget_waiters.wake(job.tenant_id)
    metrics.PROVIDER_BATCHES.labels(row["model"], "ended").inc()
    log.info("provider batch %s: ended (%s)", provider_batch_id, polled.status)


def _settle_rest(
    provider_batch_id: uuid.UUID, error: ProviderError, *, status: str | None, error_text: str
) -> None:
    """Every call of the row not settled yet, as failed with `error`; then it ends."""
    with autocommit() as conn:
        members = provider_batches.members(conn, provider_batch_id)
    owner = provider_batches.owner_of(provider_batch_id)
    for member in members:
        _settle_line(_claimed(member), owner, error, 0)
    with autocommit() as conn:
        provider_batches.end(conn, provider_batch_id, status, error_text)


def _latency_ms(since: datetime | None) -> int:
    if since is None:
        return 0
    return max(0, int((datetime.now(UTC) - since).total_seconds() * 1000))


def _claimed(member: provider_batches.Member) -> transitions.Claimed:
    """The job as its claim gave it, to settle its call like a single call's."""
    return transitions.Claimed(
        id=member.job_id,
        tenant_id=member.tenant_id,
        model=member.model,
        request=member.request,
        timeout_s=member.timeout_s,
        max_attempts=member.max_attempts,
        attempt_no=member.attempt_no,
        model_attempt_no=member.model_attempt_no,
        reserved_usd=member.reserved_usd,
        budget_held=member.budget_held,
        retry_messages=member.retry_messages,
        prompt_name=member.prompt_name,
        tier="batch",
    )


def _settle_line(
    job: transitions.Claimed, owner: str, outcome: Completion | ProviderError, latency_ms: int
) -> None:
    """One line through the single call's settle: checked (response_schema, the output
    checks), priced at the batch price, then succeeded, retried or failed."""
    if isinstance(outcome, ProviderError):
        settle.record(job, owner, None, None, outcome, latency_ms)
        return
    try:
        request = JobRequest.model_validate(job.request)
    except Exception:  # a job purged meanwhile: its call's cost is still recorded
        log.warning("job %s: its request is gone; the answer is recorded, not checked", job.id)
        settle.record(job, owner, outcome, None, None, latency_ms)
        return
    parsed, error, results = runner.check_output(request, outcome)
    settle.record(job, owner, outcome, parsed, error, latency_ms, results)


# --- the thread ---------------------------------------------------------------------


def pass_once() -> None:
    with autocommit() as conn:
        orphans = provider_batches.release_orphans(conn)
    if orphans:
        log.warning("%d job(s) of a lost provider batch handed to the sweeper", len(orphans))
    form()
    step_due()


class Dispatcher:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._loop, name="aijobs-provider-batches", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        interval = get_settings().sweep_interval_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                pass_once()
            except Exception:
                log.exception("provider batch pass failed; retrying")
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))


dispatcher = Dispatcher()
