"""Writing a job's events from synchronous code (the API's cancel, a leader's followers):
the same script as the worker's call loop, on a blocking client. A failed write is
logged, not raised: the end state is in Postgres, and a follower reads it there."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

import redis

from aijobs.settings import get_settings
from aijobs.streaming.events import APPEND, script_args, seq_key, stream_key

log = logging.getLogger("aijobs.events")


@lru_cache
def _script() -> Any:
    client = redis.Redis.from_url(get_settings().required_redis_url, socket_timeout=2)
    return client.register_script(APPEND)


def append(job_id: uuid.UUID, entries: list[tuple[str, dict[str, Any]]]) -> None:
    try:
        _script()(keys=[stream_key(job_id), seq_key(job_id)], args=script_args(entries))
    except (redis.RedisError, OSError):
        log.warning("job %s: its events could not be written", job_id, exc_info=True)


def ended(job_id: uuid.UUID, status: str) -> None:
    """The job has ended (its row is committed): `status`, then `done`."""
    append(job_id, [("status", {"status": status}), ("done", {})])
