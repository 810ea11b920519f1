"""How long to wait before the next attempt. Provider calls: exponential backoff with
full jitter, never sooner than the provider's Retry-After. Webhooks: a fixed schedule
with ±20% jitter, never sooner than the receiver's Retry-After (clamped)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The one reading of a server's wait, for providers and webhook receivers alike:
    `retry-after-ms`, else `Retry-After` as seconds or an HTTP date. None when absent
    or unreadable (junk, NaN, infinity): then the caller's own backoff applies. Never
    negative; each caller caps it."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = _seconds(lowered.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = (lowered.get("retry-after") or "").strip()
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retry_delay(
    attempt_no: int, *, base_s: float, cap_s: float, retry_after_s: float | None = None
) -> float:
    ceiling = min(cap_s, base_s * 2 ** max(attempt_no - 1, 0))
    delay = random.uniform(0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


# A receiver's Retry-After is honoured up to an hour, or the longest scheduled delay.
RETRY_AFTER_CAP_S = 3600.0


def webhook_retry_delay(
    tries: int, schedule: tuple[float, ...], retry_after_s: float | None = None
) -> float | None:
    """The wait after the tries-th attempt of a delivery failed; None when none is left."""
    if tries > len(schedule):
        return None
    delay = schedule[tries - 1] * random.uniform(0.8, 1.2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max((RETRY_AFTER_CAP_S, *schedule))))
    return delay
