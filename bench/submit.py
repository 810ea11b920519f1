"""Submit benchmark: POST /v1/jobs through HTTP against one uvicorn process, ours vs baseline."""

from __future__ import annotations

from bench.common import VENV_BIN, Children, bench_env
from bench.load import LoadResult, run_load
from cli.dev import wait_ready
from cli.embedded import free_port

BODY = {"model": "sim/echo", "messages": [{"role": "user", "content": "hello from the bench"}]}
WARMUP_S = 1.0


def _measure(
    base: str, api_key: str, *, seconds: float, concurrency: int, procs: int, unique: bool = True
) -> LoadResult:
    """Distinct bodies (every submit a new job), or one body again and again (for us,
    after the first, every submit is a cache hit answered finished at submit)."""
    url = base + "/v1/jobs"
    headers = {"Authorization": f"Bearer {api_key}"}
    load = {"concurrency": concurrency, "procs": procs, "unique": unique}
    run_load(url, headers, BODY, seconds=WARMUP_S, **load)  # type: ignore[arg-type]
    return run_load(url, headers, BODY, seconds=seconds, **load)  # type: ignore[arg-type]


def _prime_cache(api_key: str) -> None:
    """Put BODY's answer in the cache, as a finished job would (no worker runs here)."""
    from sqlalchemy import text

    from aijobs.db import session_scope
    from aijobs.jobs.fingerprint import fingerprint
    from aijobs.jobs.schemas import JobRequest
    from aijobs.tenants.service import authenticate

    with session_scope() as session:
        tenant = authenticate(session, api_key)
        session.execute(
            text(
                """
                INSERT INTO cache_entries (tenant_id, fingerprint, result, model, cost_usd,
                                           input_tokens, output_tokens, created_at, expires_at)
                VALUES (:tenant, :fp, CAST(:result AS jsonb), 'sim/echo', 0.0000015, 4, 4,
                        now(), now() + interval '1 hour')
                ON CONFLICT DO NOTHING
                """
            ),
            {
                "tenant": tenant.id,
                "fp": fingerprint(tenant.id, JobRequest.model_validate(BODY)),
                "result": '{"content": "hello from the bench", "parsed": null,'
                ' "embeddings": null, "finish_reason": "stop"}',
            },
        )


def submit_ours(
    children: Children,
    api_key: str,
    *,
    seconds: float,
    concurrency: int,
    procs: int,
    limited_key: str,
) -> tuple[LoadResult, LoadResult, LoadResult]:
    """(new jobs, cache hits, new jobs of a tenant with a budget and an rpm limit)."""
    port = free_port()
    argv = [str(VENV_BIN / "aijobs"), "api", "--host", "127.0.0.1", "--port", str(port)]
    proc = children.start("api-ours", argv, bench_env())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", proc)
        load = {"seconds": seconds, "concurrency": concurrency, "procs": procs}
        new = _measure(base, api_key, **load)  # type: ignore[arg-type]
        _prime_cache(api_key)
        hits = _measure(base, api_key, unique=False, **load)  # type: ignore[arg-type]
        limited = _measure(base, limited_key, **load)  # type: ignore[arg-type]
        return new, hits, limited
    finally:
        children.stop(proc)


def submit_baseline(
    children: Children, *, seconds: float, concurrency: int, procs: int
) -> LoadResult:
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        "bench.baseline_api:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "info",
    ]
    proc = children.start("api-baseline", argv, bench_env())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz", proc)
        return _measure(base, "unused", seconds=seconds, concurrency=concurrency, procs=procs)
    finally:
        children.stop(proc)
