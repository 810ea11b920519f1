"""The fake provider's quota mode: a per-window request and token quota, as OpenAI
enforces it, answering 429 with OpenAI's rate-limit headers once spent, and sending the
headers on every answer under the quota.

Set `fake.quota = Quota(...)` (tests/fake_openai.py) to turn it on for one model; set it
back to None to turn it off. The window is fixed (it starts at the first call and
resets `window_s` later), tokens counted at the request as OpenAI does: the prompt's
words plus the output cap (max_tokens). `junk=True` sends nonsense header values
instead (a reset of "forever", a Retry-After of "NaN"), to show they are ignored.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

CAP_FIELDS = ("max_tokens", "max_completion_tokens")


def _duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.0f}s" if minutes else f"{secs:.3g}s"


def tokens_of(payload: dict[str, Any]) -> int:
    """What OpenAI counts against tokens-per-minute: the prompt and the output cap."""
    words = sum(len(str(m.get("content", "")).split()) for m in payload.get("messages", []))
    cap = next((int(payload[name]) for name in CAP_FIELDS if name in payload), 0)
    return max(words, 1) + cap


@dataclass
class Quota:
    model: str
    requests: int | None = None  # per window
    tokens: int | None = None  # per window
    window_s: float = 60.0
    junk: bool = False
    calls: int = 0  # calls to the model that reached the fake
    limited: int = 0  # of them, answered 429
    admitted_at: list[float] = field(default_factory=list)  # monotonic times of the others
    _started: float | None = None
    _requests_used: int = 0
    _tokens_used: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, model: str, tokens: int) -> tuple[bool, dict[str, str]]:
        """(allowed, headers) for a call to `model`; calls to other models pass."""
        if model != self.model:
            return True, {}
        with self._lock:
            now = time.monotonic()
            if self._started is None or now >= self._started + self.window_s:
                self._started, self._requests_used, self._tokens_used = now, 0, 0
            self.calls += 1
            fits = (self.requests is None or self._requests_used < self.requests) and (
                self.tokens is None or self._tokens_used + tokens <= self.tokens
            )
            if fits:
                self._requests_used += 1
                self._tokens_used += tokens
                self.admitted_at.append(now)
            else:
                self.limited += 1
            headers = self._headers(self._started + self.window_s - now, limited=not fits)
            return fits, headers

    def _headers(self, reset_s: float, *, limited: bool) -> dict[str, str]:
        if self.junk:
            junk = {
                "x-ratelimit-limit-requests": "lots",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "forever",
                "x-ratelimit-remaining-tokens": "-5",
                "x-ratelimit-reset-tokens": "1e999s",
            }
            return {**junk, "retry-after": "NaN"} if limited else junk
        headers: dict[str, str] = {}
        if self.requests is not None:
            headers["x-ratelimit-limit-requests"] = str(self.requests)
            headers["x-ratelimit-remaining-requests"] = str(self.requests - self._requests_used)
            headers["x-ratelimit-reset-requests"] = _duration(reset_s)
        if self.tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.tokens)
            headers["x-ratelimit-remaining-tokens"] = str(self.tokens - self._tokens_used)
            headers["x-ratelimit-reset-tokens"] = _duration(reset_s)
        if limited:
            headers["retry-after"] = str(max(math.ceil(reset_s), 1))
        return headers

    def max_in_any_window(self, window_s: float | None = None) -> int:
        """The most calls admitted within any sliding window (of window_s)."""
        span = self.window_s if window_s is None else window_s
        with self._lock:
            times = sorted(self.admitted_at)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= span:
                start += 1
            most = max(most, end - start + 1)
        return most
