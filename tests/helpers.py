"""Small helpers the tests share: request bodies, unique messages, and waits.

Every wait in the tests is a poll on the event it waits for, with a generous deadline
(a loaded 2-core machine queues work for seconds): `wait_until` for something that
becomes true, `barrier` for "nothing more happens" (an absence is only checked once
every message published before it has been handled, never after a fixed sleep)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tests.conftest import Client
    from tests.stack import Stack
    from tests.webhook_receiver import Receiver

T = TypeVar("T")

WAIT_S = 60.0


def chat(content: str, model: str = "openai/gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def unique(text: str = "") -> str:
    """A message no other test sends, so the fake's per-message counters are ours alone."""
    return f"{text} {uuid.uuid4().hex}".strip()


def gpt4o_mini_cost(input_tokens: int, output_tokens: int) -> Decimal:
    """List price of openai/gpt-4o-mini: 0.15 in, 0.60 out per 1M tokens."""
    return (input_tokens * Decimal("0.15") + output_tokens * Decimal("0.60")) / 1_000_000


def wait_until(
    check: Callable[[], T | None],
    timeout_s: float = WAIT_S,
    what: str | Callable[[], str] = "the condition",
    interval_s: float = 0.05,
) -> T:
    """Poll `check` until it returns something truthy, and return that; fail after
    timeout_s, saying `what` (a string, or a function giving the state seen last)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {detail}")
        time.sleep(interval_s)


def job_status(client: Client, job_id: str) -> dict[str, Any]:
    response = client.http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_for_call(fake: Any, message: str, calls: int = 1, timeout_s: float = WAIT_S) -> None:
    """Until the fake provider has received `calls` calls with this message: the call
    is then in flight (a `[sleep:S]` call answers S seconds after it arrived)."""
    wait_until(
        lambda: fake.count(message) >= calls,
        timeout_s,
        lambda: f"{calls} call(s) of {message!r} at the fake provider (got {fake.count(message)})",
    )


def barrier(
    stack: Stack, client: Client, receiver: Receiver | None = None, timeout_s: float = WAIT_S
) -> None:
    """Return once every job the client's tenant queued before the call (and, with a
    receiver, every deliver_webhook message) has been handled to its end.

    A sentinel job (and its webhook, with a receiver) goes through each queue behind
    them: a tenant's list in the fair queue and the webhook queue are FIFO, so once it
    is done every earlier one has been taken by a worker. A warm shutdown then waits
    for what the workers have in flight. One worker is running again on return."""
    body = chat(unique("barrier"), model="sim/echo", cache=False)
    url = receiver.path() if receiver is not None else None
    if url is not None:
        body["webhook_url"] = url
    sentinel = client.submit(body).json()["id"]
    done = client.wait(sentinel, timeout_s=timeout_s)
    assert done["status"] == "succeeded", done
    if receiver is not None and url is not None:
        receiver.wait_for(url, 1, timeout_s=timeout_s)
    stack.kill_workers(signal.SIGTERM)  # warm: each worker drains its call loop first
    stack.start_worker()


def publish_again(job_ids: list[str], times: int = 1) -> None:
    """Push the jobs into the fair queue again, a token each, as the sweeper or a
    redelivery would: each push must find the job and never run it twice."""
    from api.publisher import publish_runs

    for _ in range(times):
        assert publish_runs([uuid.UUID(job_id) for job_id in job_ids])


def spend_today(db: Any, tenant: str, usd: str) -> None:
    """Record `usd` as the tenant's spend today (its budget counters), as if calls had
    cost it: a daily budget of that much is then spent."""
    db.execute(
        "UPDATE budget_counters SET day_spent = %s"
        " WHERE tenant_id = (SELECT id FROM tenants WHERE name = %s)",
        (usd, tenant),
    )
