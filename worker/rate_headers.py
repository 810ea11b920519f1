"""What a provider's rate-limit headers say: how much quota is left and when it comes
back, for OpenAI (`x-ratelimit-*`) and Anthropic (`anthropic-ratelimit-*`).

Every value is read defensively: a junk, negative, NaN or absurd value is ignored
(None), never an exception and never an unbounded wait; the caller caps the waits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s", "0.5s".
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?"
    r"(?:(\d+(?:\.\d+)?)ms)?"
)
# Past this a header is taken for junk rather than a wait (a day).
_SANE_S = 86_400.0


@dataclass(frozen=True)
class RateState:
    """What the headers said; None where they said nothing readable."""

    requests_left: int | None = None
    tokens_left: int | None = None
    requests_reset_s: float | None = None
    tokens_reset_s: float | None = None


def duration_s(value: str | None) -> float | None:
    """OpenAI's Go-style duration ("6m0s", "20ms"), or plain seconds ("1.5")."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if match is None or not any(match.groups()):
            return None
        hours, minutes, secs, millis = (float(part) if part else 0.0 for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs + millis / 1000
    if not math.isfinite(seconds) or seconds < 0 or seconds > _SANE_S:
        return None
    return seconds


def until_s(value: str | None, now: datetime | None = None) -> float | None:
    """Anthropic's reset: an RFC 3339 time; the seconds from now until it (0 if past)."""
    if value is None or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds) or seconds > _SANE_S:
        return None
    return max(seconds, 0.0)


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 15:
        return None
    return int(text)


def read(headers: Mapping[str, str] | None) -> RateState:
    """The quota the headers report (either provider's names), or an empty state."""
    if not headers:
        return RateState()
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    if any(key.startswith("anthropic-ratelimit-") for key in lowered):
        prefix = "anthropic-ratelimit-"
        return RateState(
            requests_left=_count(lowered.get(prefix + "requests-remaining")),
            tokens_left=_count(lowered.get(prefix + "tokens-remaining")),
            requests_reset_s=until_s(lowered.get(prefix + "requests-reset")),
            tokens_reset_s=until_s(lowered.get(prefix + "tokens-reset")),
        )
    return RateState(
        requests_left=_count(lowered.get("x-ratelimit-remaining-requests")),
        tokens_left=_count(lowered.get("x-ratelimit-remaining-tokens")),
        requests_reset_s=duration_s(lowered.get("x-ratelimit-reset-requests")),
        tokens_reset_s=duration_s(lowered.get("x-ratelimit-reset-tokens")),
    )


def spent_for_s(state: RateState, tokens_needed: int) -> float | None:
    """How long calls must wait because the headers say the quota is spent: no request
    left, or fewer tokens left than a call like this one needs. None when not spent,
    or when spent with no readable reset (the caller's own backoff applies)."""
    waits: list[float] = []
    requests_spent = state.requests_left is not None and state.requests_left <= 0
    if requests_spent and state.requests_reset_s is not None:
        waits.append(state.requests_reset_s)
    tokens_short = state.tokens_left is not None and state.tokens_left < max(tokens_needed, 1)
    if tokens_short and state.tokens_reset_s is not None:
        waits.append(state.tokens_reset_s)
    return max(waits) if waits else None
