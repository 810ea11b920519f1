"""A small HTTP load generator: C client threads (httpx, one kept-alive connection each)
POSTing for a bounded duration."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class LoadResult:
    """Completed requests in the window, their latencies (seconds), and failures."""

    seconds: float
    ok: int
    errors: int
    latencies: list[float]
    first_error: str | None = None
    client_cpu_s: float = 0.0  # the load generator's own CPU time

    @property
    def client_cpu_ms(self) -> float:
        """The load generator's CPU per completed request."""
        return self.client_cpu_s / self.ok * 1000 if self.ok else float("nan")

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000


def _unique(body: dict[str, Any], tag: str) -> dict[str, Any]:
    """The body with a message no other request sends (a cache miss for us)."""
    messages = [dict(m) for m in body["messages"]]
    messages[-1]["content"] = f"{messages[-1]['content']} {tag}"
    return {**body, "messages": messages}


def _run(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    concurrency: int,
    seconds: float,
    unique: bool,
) -> tuple[int, list[float], str | None, float]:
    """C threads, each a synchronous httpx client on one kept-alive connection (the
    shared harness's client, ../shared/bench/perf.py). An asyncio httpx client with 32
    requests in flight in one process cost 4-6 ms of client CPU a request here against
    about 1 ms for these threads, so both servers were measured starved of the CPU
    the client took (docs/scaling.md). Returns errors, latencies, the first error and
    this process's CPU seconds."""
    import httpx

    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def one_client(n: int) -> None:
        nonlocal errors, first_error
        sent = 0
        with httpx.Client(timeout=30, headers=headers) as client:
            while time.perf_counter() < deadline:
                sent += 1
                payload = (
                    _unique(body, f"{os.getpid()}-{n}-{sent}-{time.time()}") if unique else body
                )
                started = time.perf_counter()
                try:
                    response = client.post(url, json=payload)
                    failed = response.status_code != 202
                    detail = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failed, detail = True, f"{type(exc).__name__}: {exc}"
                took = time.perf_counter() - started
                with lock:
                    if failed:
                        errors += 1
                        first_error = first_error or detail
                    elif time.perf_counter() <= deadline:
                        latencies.append(took)

    cpu = time.process_time()
    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors, latencies, first_error, time.process_time() - cpu


def run_load(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    concurrency: int,
    seconds: float,
    procs: int = 1,
    unique: bool = True,
) -> LoadResult:
    """Split C clients over `procs` client processes; count what completes inside the window."""
    procs = max(1, min(procs, concurrency))
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    with ProcessPoolExecutor(max_workers=procs) as pool:
        futures = [
            pool.submit(_run, url, headers, body, share, seconds, unique) for share in shares
        ]
        parts = [future.result() for future in futures]
    latencies = [value for _, lat, _, _ in parts for value in lat]
    first_error = next((err for _, _, err, _ in parts if err), None)
    return LoadResult(
        seconds=seconds,
        ok=len(latencies),
        errors=sum(errors for errors, _, _, _ in parts),
        latencies=latencies,
        first_error=first_error,
        client_cpu_s=sum(cpu for _, _, _, cpu in parts),
    )
