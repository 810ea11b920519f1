"""Intake of one large batch, in process, on the configured database (e.g. beside a
running `aijobs dev`): N NDJSON lines validated (aijobs.batches.intake), inserted and
committed (service.submit), the batch read (GET's query, its counters), then cancelled
(so no worker runs them). Prints the seconds of each phase.

Run: python -m bench.batch_submit [N]   (N defaults to 50,000)"""

from __future__ import annotations

import json
import sys
import time
import uuid


def main(n: int = 50_000) -> None:
    from aijobs.batches import intake, service
    from aijobs.batches.schemas import BatchOptions
    from aijobs.db import autocommit, session_scope
    from aijobs.tenants.service import authenticate, create_key
    from cli.dev import use_running_dev

    use_running_dev()
    with session_scope() as session:
        key = create_key(session, f"bench-{uuid.uuid4().hex[:8]}").api_key
    with session_scope() as session:
        tenant_id = authenticate(session, key).id
    raw = [
        json.dumps(
            {
                "custom_id": f"c{i}",
                "model": "sim/echo",
                "messages": [{"role": "user", "content": f"line {i} {uuid.uuid4()}"}],
            }
        ).encode()
        for i in range(n)
    ]
    started = time.perf_counter()
    reader = intake.Intake(tenant_id)
    with autocommit() as conn:
        reader.feed_ndjson(conn, raw)
    lines = reader.finish()
    validated = time.perf_counter()
    with session_scope() as session:
        submitted = service.submit(
            session,
            tenant_id,
            BatchOptions(),
            lines,
            idempotency_key=None,
            body_hash="-",
            budgeted=False,
        )
    inserted = time.perf_counter()
    batch_id = submitted.batch["id"]
    reads = []
    for _ in range(20):
        start = time.perf_counter()
        with autocommit() as conn:
            service.get(conn, tenant_id, batch_id)
        reads.append(time.perf_counter() - start)
    with session_scope() as session:
        start = time.perf_counter()
        service.cancel(session.connection(), tenant_id, batch_id)
    cancelled = time.perf_counter() - start
    total = inserted - started
    print(
        f"{n} jobs: validated in {validated - started:.2f} s, inserted and committed in "
        f"{inserted - validated:.2f} s: accepted in {total:.2f} s ({n / total:.0f} jobs/s)"
    )
    print(
        f"GET batch: median {sorted(reads)[len(reads) // 2] * 1000:.2f} ms; "
        f"cancel of the queued jobs: {cancelled:.2f} s"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
