"""The events script (aijobs/streaming/events.py APPEND) on a real Redis: ids 1, 2, 3 …
per job, each entry published on the job's channel, a `reset` put before an attempt
that follows one cut off, and both keys given their time to live."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from aijobs.streaming.events import (
    APPEND,
    SEQ_TTL_S,
    TTL_S,
    from_entry,
    from_message,
    script_args,
    seq_key,
    stream_key,
)
from tests.conftest import Services


@pytest.fixture
def conn(services: Services) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(services.redis_url)
    yield client
    client.close()


def _append(conn: redis.Redis, job: uuid.UUID, *entries: tuple[str, dict[str, object]]) -> int:
    script = conn.register_script(APPEND)
    return int(script(keys=[stream_key(job), seq_key(job)], args=script_args(list(entries))))


def _kinds(conn: redis.Redis, job: uuid.UUID) -> list[tuple[int, str]]:
    return [
        (event.id, event.type)
        for event in (from_entry(i, f) for i, f in conn.xrange(stream_key(job)) or [])
    ]


def test_ids_count_up_and_each_entry_is_published(conn: redis.Redis) -> None:
    job = uuid.uuid4()
    listener = conn.pubsub()
    listener.subscribe(stream_key(job))
    listener.get_message(timeout=1)  # the subscription's confirmation
    assert _append(conn, job, ("status", {"status": "running"}), ("attempt", {"number": 1})) == 2
    assert _append(conn, job, ("delta", {"text": "Hé "})) == 3
    assert _kinds(conn, job) == [(1, "status"), (2, "attempt"), (3, "delta")]
    heard = []
    for _ in range(3):
        message = listener.get_message(timeout=1)
        assert message is not None
        heard.append(from_message(message["data"]))
    assert [(e.id, e.type, e.data) for e in heard] == [
        (1, "status", {"status": "running"}),
        (2, "attempt", {"number": 1}),
        (3, "delta", {"text": "Hé "}),
    ]
    assert 0 < conn.ttl(stream_key(job)) <= TTL_S
    assert TTL_S < conn.ttl(seq_key(job)) <= SEQ_TTL_S
    listener.close()


def test_an_attempt_after_one_cut_off_gets_a_reset_first(conn: redis.Redis) -> None:
    job = uuid.uuid4()
    _append(conn, job, ("status", {"status": "running"}), ("attempt", {"number": 1}))
    _append(conn, job, ("delta", {"text": "half"}))
    # The worker died; the next attempt starts.
    _append(conn, job, ("status", {"status": "running"}), ("attempt", {"number": 2}))
    assert _kinds(conn, job) == [
        (1, "status"),
        (2, "attempt"),
        (3, "delta"),
        (4, "reset"),
        (5, "status"),
        (6, "attempt"),
    ]
    found = conn.xrange(stream_key(job), min="0-4", max="0-4")
    assert found
    reset = from_entry(*found[0])
    assert reset.data == {"attempt": None, "code": "interrupted"}


def test_an_attempt_after_a_settled_one_gets_no_extra_reset(conn: redis.Redis) -> None:
    job = uuid.uuid4()
    _append(conn, job, ("status", {"status": "running"}), ("attempt", {"number": 1}))
    _append(conn, job, ("reset", {"attempt": 1, "code": "provider_error"}))
    _append(conn, job, ("status", {"status": "queued"}))
    _append(conn, job, ("status", {"status": "running"}), ("attempt", {"number": 2}))
    assert [kind for _, kind in _kinds(conn, job)] == [
        "status",
        "attempt",
        "reset",
        "status",
        "status",
        "attempt",
    ]


def test_an_unknown_type_is_refused_before_it_is_written() -> None:
    with pytest.raises(ValueError):
        script_args([("bogus", {})])
