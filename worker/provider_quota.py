"""Provider quotas at the call: before it, the call is admitted or told to wait (the
provider's reset, the adaptive concurrency, AIJOBS_PROVIDER_LIMITS' rpm and tpm); after
it, its tokens are corrected and what the provider said is learned. All of it lives in
Redis (worker/quota_scripts.py), shared by every worker.

A call told to wait is not made and is not an attempt: its job goes back to queued,
due when the quota frees (transitions.wait_for_quota), and the sweeper publishes it
then. Quotas are checked for every provider model (their headers and 429s teach the
limits), and for simulated ones only when a rule names them.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, replace
from functools import lru_cache

from aijobs.billing.call_bounds import input_token_bound, output_cap
from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest
from aijobs.scheduling import provider_limits, quota_state
from aijobs.settings import get_settings
from worker import inflight, quota_scripts, rate_headers
from worker.providers.base import Completion, ProviderError
from worker.redis_slots import client as _client

log = logging.getLogger("aijobs.worker")

# A call whose place in a rule's window comes within this is held in the worker until
# then (its slot taken); a later one goes back to the queue, due this much before its
# place (the sweeper's publishing and the claim take a little while).
SOON_S = 1.0
EARLY_S = 0.7
# The longest a call waits for a slot under the concurrency limit before trying again.
CONCURRENCY_WAIT_CAP_S = 3.0
# How long after its last 429 a model's learned concurrency limit is forgotten.
AIMD_MEMORY_S = 300


@dataclass(frozen=True)
class Ticket:
    """An admitted call: what it holds in Redis until it ends."""

    model: str
    id: str
    tokens: int  # reserved against the rules' tpm
    rules: tuple[str, ...]
    slot: str | None  # its member of the model's in-flight set, if admission took one
    start_in_s: float = 0.0  # when its place in a rule's window comes


# The slots this process holds (slot -> model): renewed by the maintenance loop with the
# leases, so a dead worker's slots lapse within a lease, not a call's whole timeout.
_held: dict[str, str] = {}
_held_lock = threading.Lock()


def renew_slots() -> None:
    """Keep this process's slots held for another lease (maintenance loop)."""
    with _held_lock:
        held = dict(_held)
    if not held:
        return
    until = _client().time()
    expiry = until[0] + until[1] / 1_000_000 + _slot_hold_s()
    pipe = _client().pipeline(transaction=False)
    for slot, model in held.items():
        pipe.zadd(quota_state.inflight_key(model), {slot: expiry}, xx=True)
        pipe.expireat(quota_state.inflight_key(model), int(expiry) + 1)
    pipe.execute()


def _slot_hold_s() -> float:
    return get_settings().lease_s + SOON_S + 1


@lru_cache
def _rules() -> dict[str, provider_limits.Limit]:
    return provider_limits.parse(get_settings().provider_limits)


@lru_cache
def _scripts() -> tuple[object, object, object]:
    client = _client()
    return (
        client.register_script(quota_scripts.ADMIT),
        client.register_script(quota_scripts.CORRECT),
        client.register_script(quota_scripts.OBSERVE),
    )


def _held_window_s(window_s: float) -> float:
    """How long a call holds its place in a rule's window: a little longer than the
    window (5%, at most a second), because the provider counts the call when it arrives,
    a moment after it was admitted."""
    return window_s + min(0.05 * window_s, 1.0)


def applies(model: str) -> bool:
    if provider_limits.rules_for(_rules(), model):
        return True
    return get_settings().quota_adaptive and not model.startswith("sim/")


def tokens_needed(request: JobRequest, model: str) -> int:
    """What the call may use: its input bound and its output cap (the providers count
    max_tokens against a tokens-per-minute quota the same way)."""
    try:
        return input_token_bound(request, model) + output_cap(request, model)
    except Exception:  # no price for the model here: the settle reports it
        return 1


def admit(job: transitions.Claimed, slot_held: bool) -> Ticket | float:
    """Admit the job's call, or the seconds to wait before it may be made."""
    settings = get_settings()
    rules = provider_limits.rules_for(_rules(), job.model)
    call_id = f"{job.id}:{job.attempt_no}"
    tokens = 0
    if any(rule.tpm for rule in rules) or settings.quota_adaptive:
        tokens = tokens_needed(JobRequest.model_validate(job.request), job.model)
    keys = [
        quota_state.block_key(job.model),
        quota_state.aimd_key(job.model),
        quota_state.inflight_key(job.model),
        quota_state.WAITS,
        quota_state.refused_key(job.model),
        quota_state.left_key(job.model),
    ]
    args: list[str | int | float] = [
        call_id,
        tokens,
        _slot_hold_s(),  # renewed while the call runs (renew_slots)
        -1 if slot_held else inflight.cap_for(job.model),
        _held_window_s(settings.provider_limits_window_s),
        job.model,
        SOON_S,
    ]
    for rule in rules:
        keys.extend(quota_state.rule_keys(rule.rule))
        args.extend([rule.rpm or 0, rule.tpm or 0])
    admit_script = _scripts()[0]
    status, wait = admit_script(keys=keys, args=args)  # type: ignore[operator]
    if int(status) in (0, 4):
        slot = None if slot_held else call_id
        if slot is not None:
            with _held_lock:
                _held[slot] = job.model
        start_in = float(wait) if int(status) == 4 else 0.0
        return Ticket(job.model, call_id, tokens, tuple(r.rule for r in rules), slot, start_in)
    if int(status) == 3:  # a place reserved then: come back a little before it
        return min(max(float(wait) - EARLY_S, 0.05), settings.quota_max_wait_s)
    if int(status) == 1:  # the provider's reset: spread the comeback over a second
        return min(float(wait) + random.uniform(0, 1.0), settings.quota_max_wait_s)
    # At the concurrency limit: spread the waiting calls over a little more than the
    # wait, never long (a slot frees when any call ends).
    return min(float(wait), CONCURRENCY_WAIT_CAP_S) * random.uniform(1.0, 1.5)


def observe(ticket: Ticket, completion: Completion | None, error: ProviderError | None) -> None:
    """After the call: correct its tokens, and learn what the provider said (a 429, a
    spent quota and its reset). Never raises: a quota is a pace, not a correctness."""
    try:
        _observe(ticket, completion, error)
    except Exception:
        log.warning("the quota of %s could not be updated", ticket.model, exc_info=True)


def _observe(ticket: Ticket, completion: Completion | None, error: ProviderError | None) -> None:
    settings = get_settings()
    _, correct, observe_script = _scripts()
    if ticket.rules and completion is not None:
        used = completion.input_tokens + completion.output_tokens
        keys = [key for rule in ticket.rules for key in quota_state.rule_keys(rule)[1:]]
        correct(keys=keys, args=[ticket.id, used])  # type: ignore[operator]
    if not settings.quota_adaptive:
        return
    headers = completion.headers if completion is not None else (error.headers if error else None)
    limited = error is not None and error.http_status == 429
    state = rate_headers.read(headers)
    # The tokens part here; the requests part in the script (it knows the calls in flight).
    block = rate_headers.spent_for_s(replace(state, requests_left=None), ticket.tokens)
    if limited and error is not None:
        # A 429 makes every call to the model wait for its Retry-After, or the reset its
        # headers give; with neither, only the concurrency backs off.
        block = max(block or 0.0, error.retry_after_s or 0.0)
    block = min(block or 0.0, settings.quota_max_wait_s)
    outcome = "limited" if limited else ("ok" if error is None else "other")
    keys = [
        quota_state.block_key(ticket.model),
        quota_state.aimd_key(ticket.model),
        quota_state.inflight_key(ticket.model),
        quota_state.WAITS,
        quota_state.left_key(ticket.model),
    ]
    left = state.requests_left if state.requests_left is not None else -1
    reset = min(state.requests_reset_s or 0.0, settings.quota_max_wait_s)
    args = [outcome, block, inflight.cap_for(ticket.model), AIMD_MEMORY_S, ticket.model]
    args += [left, reset]
    observe_script(keys=keys, args=args)  # type: ignore[operator]


def release(ticket: Ticket) -> None:
    if ticket.slot is not None:
        with _held_lock:
            _held.pop(ticket.slot, None)
        inflight.release(ticket.model, ticket.slot)


def adaptive_limit(model: str) -> int:
    """The model's learned concurrency limit (0: none)."""
    value = _client().hget(quota_state.aimd_key(model), "limit")
    return int(value) if value is not None else 0
