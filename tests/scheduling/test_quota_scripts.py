"""The quota scripts against the real Redis, one call at a time: the sliding-window
places, the token correction, the requests left, AIMD, and the caps on waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from aijobs.jobs import transitions
from aijobs.jobs.schemas import JobRequest
from aijobs.scheduling import quota_state
from aijobs.settings import get_settings
from tests.conftest import Services
from worker import provider_quota
from worker.providers.base import Completion, ProviderError

WINDOW_S = 2.0


@pytest.fixture
def limits(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(
        "AIJOBS_PROVIDER_LIMITS", "openai/gpt-4.1=rpm:5;openai/o3=tpm:1000;openai/*=rpm:1000"
    )
    monkeypatch.setenv("AIJOBS_PROVIDER_LIMITS_WINDOW_S", str(WINDOW_S))
    monkeypatch.setenv("AIJOBS_QUOTA_MAX_WAIT_S", "30")
    get_settings.cache_clear()
    provider_quota._rules.cache_clear()
    redis.Redis.from_url(services.redis_url).delete(
        *quota_state.rule_keys("openai/gpt-4.1"),
        *quota_state.rule_keys("openai/o3"),
        *quota_state.rule_keys("openai/*"),
    )
    yield
    get_settings.cache_clear()
    provider_quota._rules.cache_clear()


def _job(model: str, max_tokens: int = 10, attempt_no: int = 1) -> transitions.Claimed:
    request = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "params": {"max_tokens": max_tokens},
    }
    return transitions.Claimed(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        model=model,
        request=request,
        timeout_s=10,
        max_attempts=3,
        attempt_no=attempt_no,
        model_attempt_no=1,
        reserved_usd=Decimal(0),
    )


def _done(ticket: provider_quota.Ticket, **completion: object) -> None:
    values: dict[str, object] = {
        "content": "ok",
        "finish_reason": "stop",
        "input_tokens": 1,
        "output_tokens": 1,
    }
    values.update(completion)
    provider_quota.observe(ticket, Completion(**values), None)  # type: ignore[arg-type]
    provider_quota.release(ticket)


def test_a_full_window_hands_out_later_places_one_each(limits: None) -> None:
    admitted = [provider_quota.admit(_job("openai/gpt-4.1"), False) for _ in range(5)]
    assert all(isinstance(t, provider_quota.Ticket) for t in admitted)
    waiting = [_job("openai/gpt-4.1") for _ in range(7)]
    waits = [provider_quota.admit(job, False) for job in waiting]
    assert all(isinstance(w, float) for w in waits), waits
    # Places in the next window (held a window and 5%), then the one after.
    first = [w for w in waits[:5] if isinstance(w, float)]
    assert all(WINDOW_S * 1.05 - 1 < w <= WINDOW_S * 1.05 for w in first), waits
    later = [w for w in waits[5:] if isinstance(w, float)]
    assert all(w > 2 * WINDOW_S * 1.05 - 1 for w in later), waits
    for ticket in admitted:
        assert isinstance(ticket, provider_quota.Ticket)
        _done(ticket)
    # A job coming back at its place is admitted on it (the same id: a place, not two).
    time.sleep(WINDOW_S * 1.05 - 0.6)
    back = provider_quota.admit(waiting[0], False)
    assert isinstance(back, provider_quota.Ticket), back
    assert 0 < back.start_in_s <= 1.0
    client = redis.Redis.from_url(get_settings().required_redis_url)
    assert client.zcard(quota_state.rule_keys("openai/gpt-4.1")[0]) == 12


def test_tokens_are_reserved_then_corrected(limits: None) -> None:
    job = _job("openai/o3", max_tokens=600)
    need = provider_quota.tokens_needed(JobRequest.model_validate(job.request), "openai/o3")
    assert 600 < need < 1000
    first = provider_quota.admit(job, False)
    assert isinstance(first, provider_quota.Ticket) and first.tokens == need
    second = _job("openai/o3", max_tokens=600)
    assert isinstance(provider_quota.admit(second, False), float)  # 2 x need > 1000
    # The second holds its place in the next window; a small call does not fit beside
    # both reservations, until the first is corrected to the 20 tokens it used.
    small = _job("openai/o3", max_tokens=100)
    assert isinstance(provider_quota.admit(small, False), float)
    _done(first, input_tokens=10, output_tokens=10)
    small = _job("openai/o3", max_tokens=100)
    assert isinstance(provider_quota.admit(small, False), provider_quota.Ticket)


def test_requests_left_are_counted_down_until_the_reset(limits: None) -> None:
    model = "openai/gpt-5"
    client = redis.Redis.from_url(get_settings().required_redis_url)
    client.delete(quota_state.left_key(model), quota_state.block_key(model))
    ticket = provider_quota.admit(_job(model), False)
    assert isinstance(ticket, provider_quota.Ticket)
    headers = {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "3s"}
    _done(ticket, headers=headers)
    assert isinstance(provider_quota.admit(_job(model), False), provider_quota.Ticket)
    assert isinstance(provider_quota.admit(_job(model), False), provider_quota.Ticket)
    wait = provider_quota.admit(_job(model), False)
    assert isinstance(wait, float) and 1.5 < wait <= 4.0


def test_a_429_halves_the_concurrency_and_successes_bring_it_back(limits: None) -> None:
    model = "openai/gpt-5-mini"
    client = redis.Redis.from_url(get_settings().required_redis_url)
    client.delete(quota_state.aimd_key(model), quota_state.block_key(model))
    tickets = [provider_quota.admit(_job(model), False) for _ in range(8)]
    assert all(isinstance(t, provider_quota.Ticket) for t in tickets)
    limited = ProviderError(
        "provider_rate_limited", "429", retryable=True, http_status=429, retry_after_s=0.3
    )
    provider_quota.observe(tickets[0], None, limited)  # type: ignore[arg-type]
    provider_quota.observe(tickets[1], None, limited)  # type: ignore[arg-type]
    assert provider_quota.adaptive_limit(model) == 4  # 8 in flight, halved once
    for ticket in tickets:
        provider_quota.release(ticket)  # type: ignore[arg-type]
    time.sleep(0.35)  # the Retry-After's block
    held = [provider_quota.admit(_job(model), False) for _ in range(5)]
    assert [isinstance(t, provider_quota.Ticket) for t in held] == [True] * 4 + [False]
    for ticket in held[:4]:
        assert isinstance(ticket, provider_quota.Ticket)
        _done(ticket)
    assert provider_quota.adaptive_limit(model) == 8  # +1 per limit // 4 successes
    reasons = {reason for name, reason, _ in quota_state.waits(client) if name == model}
    assert {"concurrency", "429"} <= reasons  # counted for /metrics


def test_no_header_makes_anything_wait_beyond_the_cap(limits: None) -> None:
    model = "openai/gpt-4o"
    client = redis.Redis.from_url(get_settings().required_redis_url)
    client.delete(quota_state.block_key(model), quota_state.left_key(model))
    ticket = provider_quota.admit(_job(model), False)
    assert isinstance(ticket, provider_quota.Ticket)
    huge = ProviderError(
        "provider_rate_limited",
        "429",
        retryable=True,
        http_status=429,
        retry_after_s=10_000.0,
        headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "80000s"},
    )
    provider_quota.observe(ticket, None, huge)
    assert 0 < client.pttl(quota_state.block_key(model)) <= 30_000
    wait = provider_quota.admit(_job(model), False)
    assert isinstance(wait, float) and wait <= 30.0
