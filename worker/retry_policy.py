"""How long to wait before the next attempt. Provider calls: exponential backoff with
full jitter, never sooner than the provider's Retry-After. Webhooks: a fixed schedule
with ±20% jitter, never sooner than the receiver's Retry-After (clamped)."""

from __future__ import annotations

import random


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
