"""Providers' rate-limit headers: read when sane, ignored when junk, never unbounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker import rate_headers
from worker.rate_headers import RateState


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5)],
)
def test_openai_durations(value: str, seconds: float) -> None:
    assert rate_headers.duration_s(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "junk", ["", "forever", "-1s", "1e999s", "NaN", "inf", "999999h", "1s2h", "ms", "s"]
)
def test_junk_durations_are_ignored(junk: str) -> None:
    assert rate_headers.duration_s(junk) is None


def test_openai_headers_say_the_quota_is_spent() -> None:
    state = rate_headers.read(
        {
            "X-RateLimit-Remaining-Requests": "0",
            "x-ratelimit-reset-requests": "1.5s",
            "x-ratelimit-remaining-tokens": "100",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert state == RateState(0, 100, 1.5, 360.0)
    # No request left: wait for the requests' reset; too few tokens too: the later one.
    assert rate_headers.spent_for_s(state, tokens_needed=50) == 1.5
    assert rate_headers.spent_for_s(state, tokens_needed=500) == 360.0
    fine = rate_headers.read({"x-ratelimit-remaining-requests": "3"})
    assert rate_headers.spent_for_s(fine, 10) is None


def test_anthropic_headers_rfc3339() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    state = rate_headers.read(
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-remaining": "5000",
            "anthropic-ratelimit-tokens-reset": "not a time",
        }
    )
    assert state.requests_left == 0 and state.tokens_left == 5000
    assert state.requests_reset_s == pytest.approx(30, abs=2)
    assert state.tokens_reset_s is None
    wait = rate_headers.spent_for_s(state, 10)
    assert wait is not None and 25 < wait <= 30
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    assert rate_headers.until_s(past) == 0.0
    assert rate_headers.until_s("2026-01-01T00:00:00") is None  # no zone: not RFC 3339


def test_junk_headers_never_make_a_wait() -> None:
    state = rate_headers.read(
        {
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "forever",
            "x-ratelimit-remaining-tokens": "-5",
            "x-ratelimit-reset-tokens": "1e999s",
            "retry-after": "NaN",
        }
    )
    assert state == RateState(requests_left=0)
    assert rate_headers.spent_for_s(state, 10) is None
    assert rate_headers.read(None) == RateState()
