"""A small HTTP load generator: C concurrent httpx clients POSTing for a bounded duration."""

from __future__ import annotations

import asyncio
import os
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


async def _run(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    concurrency: int,
    seconds: float,
    unique: bool,
) -> tuple[int, list[float], str | None]:
    import httpx

    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        deadline = time.perf_counter() + seconds

        async def one_client(n: int) -> None:
            nonlocal errors, first_error
            sent = 0
            while time.perf_counter() < deadline:
                sent += 1
                payload = (
                    _unique(body, f"{os.getpid()}-{n}-{sent}-{time.time()}") if unique else body
                )
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=payload)
                    failed = response.status_code != 202
                    detail = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failed, detail = True, f"{type(exc).__name__}: {exc}"
                if failed:
                    errors += 1
                    first_error = first_error or detail
                elif time.perf_counter() <= deadline:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one_client(n) for n in range(concurrency)))
    return errors, latencies, first_error


def _run_in_process(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    concurrency: int,
    seconds: float,
    unique: bool,
) -> tuple[int, list[float], str | None]:
    return asyncio.run(_run(url, headers, body, concurrency, seconds, unique))


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
            pool.submit(_run_in_process, url, headers, body, share, seconds, unique)
            for share in shares
        ]
        parts = [future.result() for future in futures]
    latencies = [value for _, lat, _ in parts for value in lat]
    first_error = next((err for _, _, err in parts if err), None)
    return LoadResult(
        seconds=seconds,
        ok=len(latencies),
        errors=sum(errors for errors, _, _ in parts),
        latencies=latencies,
        first_error=first_error,
    )
