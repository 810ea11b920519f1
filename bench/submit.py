"""Submit benchmark: POST /v1/jobs through HTTP against one uvicorn process, ours vs baseline."""

from __future__ import annotations

from bench.common import VENV_BIN, Children, bench_env, free_port, wait_http
from bench.load import LoadResult, run_load

BODY = {"model": "sim/echo", "messages": [{"role": "user", "content": "hello from the bench"}]}
WARMUP_S = 1.0


def _measure(
    base: str, api_key: str, *, seconds: float, concurrency: int, procs: int
) -> LoadResult:
    url = base + "/v1/jobs"
    headers = {"Authorization": f"Bearer {api_key}"}
    run_load(url, headers, BODY, concurrency=concurrency, seconds=WARMUP_S, procs=procs)
    return run_load(url, headers, BODY, concurrency=concurrency, seconds=seconds, procs=procs)


def submit_ours(
    children: Children, api_key: str, *, seconds: float, concurrency: int, procs: int
) -> LoadResult:
    port = free_port()
    argv = [str(VENV_BIN / "aijobs"), "api", "--host", "127.0.0.1", "--port", str(port)]
    proc = children.start("api-ours", argv, bench_env())
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/readyz", proc)
        return _measure(base, api_key, seconds=seconds, concurrency=concurrency, procs=procs)
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
        wait_http(base + "/healthz", proc)
        return _measure(base, "unused", seconds=seconds, concurrency=concurrency, procs=procs)
    finally:
        children.stop(proc)
