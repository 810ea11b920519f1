"""How long to wait before the next attempt: exponential backoff with full jitter,
never sooner than the provider's Retry-After."""

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
