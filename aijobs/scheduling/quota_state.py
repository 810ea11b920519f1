"""Where the provider quotas live in Redis (the keys every worker shares), and the
reading of them that /metrics does: quota waits by model, adaptive limits by model."""

from __future__ import annotations

from collections.abc import Iterator

import redis

WAITS = "aijobs:quota:waits"  # hash "model|reason" -> count


def block_key(model: str) -> str:
    return f"aijobs:quota:block:{model}"


def aimd_key(model: str) -> str:
    return f"aijobs:quota:aimd:{model}"


def refused_key(model: str) -> str:
    return f"aijobs:quota:refused:{model}"


def left_key(model: str) -> str:
    return f"aijobs:quota:left:{model}"


def inflight_key(model: str) -> str:
    """The set worker/inflight.py counts a model's calls in flight in."""
    return f"aijobs:inflight:{model}"


def rule_keys(rule: str) -> tuple[str, str, str]:
    """A rule's sliding-window log, the tokens each call holds, and their sum."""
    return (f"aijobs:quota:log:{rule}", f"aijobs:quota:tok:{rule}", f"aijobs:quota:sum:{rule}")


def waits(client: redis.Redis) -> Iterator[tuple[str, str, int]]:
    """(model, reason, count) of the calls that waited for quota, across all workers."""
    for field, count in client.hgetall(WAITS).items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        model, _, reason = text.rpartition("|")
        yield model, reason, int(count)


def adaptive_limits(client: redis.Redis) -> Iterator[tuple[str, int]]:
    """(model, limit) of every model whose concurrency is held down after 429s."""
    prefix = aimd_key("")
    for key in client.scan_iter(match=prefix + "*", count=100):
        limit = client.hget(key, "limit")
        if limit is not None:
            name = key.decode() if isinstance(key, bytes) else str(key)
            yield name[len(prefix) :], int(limit)
