"""The fair queue's scripts against the real Redis, under a key prefix of their own (the
workers of other tests use the real one): the order across tenants (virtual time,
weights, a tenant back from idle), interactive before batch, the in-flight caps, the
parked tokens and what the sweeper's reconcile owes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from aijobs.scheduling import fair_queue
from tests.conftest import Services

LEASE_S = 30.0


@pytest.fixture
def conn(services: Services) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(services.redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(conn: redis.Redis) -> Iterator[str]:
    prefix = f"aijobs:test:fq:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(conn.scan_iter(prefix + "*"))
    if keys:
        conn.delete(*keys)


def _push(
    conn: redis.Redis, prefix: str, tenant: uuid.UUID, n: int, **options: object
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    entries = [fair_queue.Entry(job_id, tenant, **options) for job_id in ids]  # type: ignore[arg-type]
    fair_queue.push(conn, entries, prefix=prefix)
    return ids


def _next(conn: redis.Redis, prefix: str) -> fair_queue.Turn | None:
    return fair_queue.next_turn(conn, LEASE_S, prefix=prefix)


def _take(conn: redis.Redis, prefix: str, n: int) -> list[fair_queue.Turn]:
    turns = [_next(conn, prefix) for _ in range(n)]
    assert all(turn is not None for turn in turns)
    return [turn for turn in turns if turn is not None]


def test_a_tenant_that_comes_with_one_job_goes_before_a_long_backlog(
    conn: redis.Redis, prefix: str
) -> None:
    big, small = uuid.uuid4(), uuid.uuid4()
    backlog = _push(conn, prefix, big, 1000)
    assert [t.job_id for t in _take(conn, prefix, 10)] == backlog[:10]  # FIFO in a tenant
    (newcomer,) = _push(conn, prefix, small, 1)
    picked = _take(conn, prefix, 2)
    assert newcomer in {turn.job_id for turn in picked}


def test_tenants_with_backlogs_share_by_weight(conn: redis.Redis, prefix: str) -> None:
    heavy, light, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _push(conn, prefix, heavy, 300, weight=3)
    _push(conn, prefix, light, 300, weight=1)
    _push(conn, prefix, plain, 300)  # weight 1 by default
    counts = Counter(turn.tenant for turn in _take(conn, prefix, 250))
    assert counts[str(heavy)] == pytest.approx(150, abs=2)
    assert counts[str(light)] == pytest.approx(50, abs=2)
    assert counts[str(plain)] == pytest.approx(50, abs=2)


def test_a_tenant_back_from_idle_does_not_cash_in_its_idle_time(
    conn: redis.Redis, prefix: str
) -> None:
    busy, idle = uuid.uuid4(), uuid.uuid4()
    _push(conn, prefix, idle, 1)
    _push(conn, prefix, busy, 500)
    _take(conn, prefix, 201)  # idle's one job, then busy's alone for a while
    _push(conn, prefix, idle, 100)
    counts = Counter(turn.tenant for turn in _take(conn, prefix, 40))
    # It alternates with the busy tenant; it does not get the 200 turns it sat out.
    assert counts[str(idle)] == pytest.approx(20, abs=1)


def test_interactive_before_batch_within_a_tenant(conn: redis.Redis, prefix: str) -> None:
    tenant = uuid.uuid4()
    batch = _push(conn, prefix, tenant, 5, priority="batch")
    interactive = _push(conn, prefix, tenant, 3, priority="interactive")
    turns = _take(conn, prefix, 8)
    assert [t.job_id for t in turns] == interactive + batch
    assert [t.priority for t in turns] == ["interactive"] * 3 + ["batch"] * 5
    assert _next(conn, prefix) is None


def test_a_capped_tenant_is_passed_over_and_its_token_parked(
    conn: redis.Redis, prefix: str
) -> None:
    capped, other = uuid.uuid4(), uuid.uuid4()
    _push(conn, prefix, capped, 10, max_inflight=2)
    running = _take(conn, prefix, 2)
    assert fair_queue.in_flight(conn, capped, prefix=prefix) == 2
    assert _next(conn, prefix) is None  # at its cap: nothing to start
    assert _next(conn, prefix) is None
    assert int(conn.get(prefix + fair_queue.PARKED) or 0) == 2
    # Another tenant is not held up by it.
    (free,) = _push(conn, prefix, other, 1)
    turn = _next(conn, prefix)
    assert turn is not None and turn.job_id == free
    # An end frees a place and gives a parked token back.
    assert fair_queue.release(conn, running[0], prefix=prefix) == fair_queue.Released(
        token_owed=True, budget_waiters=False
    )
    assert int(conn.get(prefix + fair_queue.PARKED) or 0) == 1
    again = _next(conn, prefix)
    assert again is not None and again.tenant == str(capped)
    assert _next(conn, prefix) is None


def test_a_raised_cap_takes_effect_at_once(conn: redis.Redis, prefix: str) -> None:
    tenant = uuid.uuid4()
    _push(conn, prefix, tenant, 10, max_inflight=1)
    _take(conn, prefix, 1)
    assert _next(conn, prefix) is None
    fair_queue.configure_tenant(conn, tenant, 1, 3, prefix=prefix)
    _take(conn, prefix, 2)
    assert _next(conn, prefix) is None
    fair_queue.configure_tenant(conn, tenant, 1, None, prefix=prefix)
    assert len(_take(conn, prefix, 7)) == 7


def test_a_place_held_by_a_dead_worker_lapses(conn: redis.Redis, prefix: str) -> None:
    tenant = uuid.uuid4()
    _push(conn, prefix, tenant, 3, max_inflight=1)
    assert fair_queue.next_turn(conn, 0.2, prefix=prefix) is not None  # never released
    assert _next(conn, prefix) is None
    time.sleep(0.3)  # the place's lease runs out
    assert _next(conn, prefix) is not None


def test_renew_keeps_a_place_and_only_one_still_held(conn: redis.Redis, prefix: str) -> None:
    tenant = uuid.uuid4()
    _push(conn, prefix, tenant, 3, max_inflight=1)
    turn = fair_queue.next_turn(conn, 0.2, prefix=prefix)
    assert turn is not None
    fair_queue.renew(conn, [turn], LEASE_S, prefix=prefix)
    time.sleep(0.3)
    assert _next(conn, prefix) is None  # renewed: still held
    fair_queue.release(conn, turn, prefix=prefix)
    fair_queue.renew(conn, [turn], LEASE_S, prefix=prefix)  # released: not brought back
    assert fair_queue.in_flight(conn, tenant, prefix=prefix) == 0


def test_reconcile_counts_the_queue_and_owes_the_missing_tokens(
    conn: redis.Redis, prefix: str
) -> None:
    tokens = prefix + "tokens"
    capped, free = uuid.uuid4(), uuid.uuid4()
    fair_queue.push(
        conn,
        [fair_queue.Entry(uuid.uuid4(), free) for _ in range(4)],
        token_key=tokens,
        tokens=[b"t"] * 4,
        prefix=prefix,
    )
    assert fair_queue.reconcile(conn, tokens, prefix=prefix) == (4, 0)
    conn.delete(tokens)  # the broker lost them
    assert fair_queue.reconcile(conn, tokens, prefix=prefix) == (4, 4)
    _push(conn, prefix, capped, 5, max_inflight=2)
    _take(conn, prefix, 6)  # free's 4 and capped's 2 (ties go either way)
    # Capped has 3 queued and no room: nothing owed for them.
    assert fair_queue.reconcile(conn, tokens, prefix=prefix) == (3, 0)


def test_tokens_without_a_list_to_push_them_on_are_refused(conn: redis.Redis, prefix: str) -> None:
    with pytest.raises(ValueError):
        fair_queue.push(conn, [], tokens=[b"t"], prefix=prefix)
    with pytest.raises(ValueError):
        fair_queue.push(
            conn, [fair_queue.Entry(uuid.uuid4(), uuid.uuid4(), "urgent")], prefix=prefix
        )


def test_release_says_when_the_tenant_may_have_budget_waiters(
    conn: redis.Redis, prefix: str
) -> None:
    tenant = uuid.uuid4()
    _push(conn, prefix, tenant, 2)
    first, second = _take(conn, prefix, 2)
    assert fair_queue.release(conn, first, prefix=prefix).budget_waiters is False
    fair_queue.mark_budget_waiters(conn, tenant, prefix=prefix)
    assert fair_queue.release(conn, second, prefix=prefix).budget_waiters is True
    ttl = conn.ttl(f"{prefix}{fair_queue.BUDGET_WAITERS}{tenant}")
    assert 0 < ttl <= fair_queue.BUDGET_WAITERS_TTL_S
