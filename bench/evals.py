"""Evals benchmark (SPEC "Datasets and evaluation runs"): what running an eval costs
beside running as many plain jobs, and what its cached re-run costs.

    .venv/bin/python -m bench.evals [--items 1000] [--concurrency 32] [--sim-latency 0]

A fresh bench database, a real `aijobs api` and one `aijobs worker --concurrency N`.
On `sim/echo` (the simulator, AIJOBS_SIM_LATENCY_S per call):

1. The plain drain: a batch of 2 x `--items` distinct jobs (POST /v1/batches), from
   the POST to the batch completed.
2. The eval: a dataset of `--items` items, two candidates (prompt versions "{{q}}" and
   "Q: {{q}}"), the `equals_expected` scorer; from the POST /v1/evals to the eval
   completed (every result scored), read by polling GET /v1/evals/{id} (which moves
   it on too), with the batch of its jobs' own end beside it.
3. The same eval again: every job answered by the cache; its wall time and cost.

Each wait polls every POLL_S (a GET of an eval reads its figures over all its results:
its cost per GET is shown). `wall s` is the client's (POST to seen ended); `ended s`
is the row's own, created_at to finished_at (for an eval: its last result scored).
The same stack and worker serve all three, in this order, after a warm-up batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from bench import common
from cli.dev import wait_ready
from cli.embedded import free_port

POLL_S = 0.5  # as a client polling an eval would; the figures come from the rows
TIMEOUT_S = 900.0
MODEL = "sim/echo"


@dataclass
class Row:
    name: str
    jobs: int
    accepted_s: float  # the POST's answer
    wall_s: float  # POST to ended
    ended_s: float  # the row's created_at to finished_at
    cost_usd: str
    note: str = ""

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.ended_s if self.ended_s else 0.0


def _cli(*args: str) -> str:
    argv = [str(common.VENV_BIN / "aijobs"), *args]
    done = subprocess.run(
        argv, cwd=common.ROOT, env=common.bench_env(), capture_output=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        raise SystemExit(f"`aijobs {' '.join(args)}` failed ({done.returncode})")
    return done.stdout.decode()


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


def _until(read: Callable[[], dict[str, Any]], ended: Callable[[dict[str, Any]], bool]) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        seen = read()
        if ended(seen):
            return seen
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out; last seen: {json.dumps(seen)[:300]}")
        time.sleep(POLL_S)


def _batch(http: httpx.Client, name: str, contents: list[str]) -> Row:
    lines = [
        {"custom_id": str(n), "model": MODEL, "messages": [{"role": "user", "content": c}]}
        for n, c in enumerate(contents)
    ]
    started = time.perf_counter()
    batch = _ok(http.post("/v1/batches", json={"jobs": lines}))
    accepted = time.perf_counter() - started
    done = _until(
        lambda: _ok(http.get(f"/v1/batches/{batch['id']}")),
        lambda b: b["status"] in ("completed", "cancelled"),
    )
    wall = time.perf_counter() - started
    failed = done["counts"]["failed"] + done["counts"]["cancelled"]
    ended = _span(done["created_at"], done["finished_at"])
    return Row(name, len(lines), accepted, wall, ended, done["cost_usd"], f"{failed} not succeeded")


def _eval(http: httpx.Client, name: str, body: dict[str, Any]) -> tuple[Row, dict[str, Any]]:
    started = time.perf_counter()
    made = _ok(http.post("/v1/evals", json=body))
    accepted = time.perf_counter() - started
    reads: list[float] = []

    def read() -> dict[str, Any]:
        began = time.perf_counter()
        found = _ok(http.get(f"/v1/evals/{made['id']}", params={"items_limit": 1}))
        reads.append(time.perf_counter() - began)
        return found

    done = _until(read, lambda e: e["status"] in ("completed", "cancelled"))
    wall = time.perf_counter() - started
    batch = _ok(http.get(f"/v1/batches/{done['batch_id']}"))
    jobs_ended_s = _span(batch["created_at"], batch["finished_at"])
    rates = ", ".join(str(c["pass_rate"]) for c in done["candidates"])
    hits = sum(c["cache_hits"] for c in done["candidates"])
    read_ms = 1000 * sum(reads) / len(reads)
    note = (
        f"its batch ended after {jobs_ended_s:.2f} s; pass rates {rates}; {hits} cache hits;"
        f" {len(reads)} GETs, {read_ms:.0f} ms each"
    )
    ended = _span(done["created_at"], done["finished_at"])
    total = done["progress"]["total"]
    return Row(name, total, accepted, wall, ended, done["cost_usd"], note), done


def _span(start: str, end: str | None) -> float:
    from datetime import datetime

    if end is None:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _setup(http: httpx.Client, items: int, tag: str) -> dict[str, Any]:
    """Two versions of a prompt on sim/echo, a dataset of `items` items: the eval body."""
    prompt = f"bench-{tag}"
    for content in ("{{q}}", "Q: {{q}}"):
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        _ok(http.post(f"/v1/prompts/{prompt}/versions", json=body))
    dataset = f"bench-{tag}"
    _ok(http.post("/v1/datasets", json={"name": dataset}))
    for n in range(items):
        q = f"eval item {n} {tag}"
        # sim/echo answers the last user message: version 1 passes, version 2 does not.
        _ok(http.post(f"/v1/datasets/{dataset}/items", json={"variables": {"q": q}, "expected": q}))
    return {
        "dataset": dataset,
        "candidates": [
            {"prompt": {"name": prompt, "version": 1}},
            {"prompt": {"name": prompt, "version": 2}},
        ],
        "scorers": [{"type": "equals_expected"}],
    }


def run(items: int, concurrency: int, sim_latency: float) -> list[Row]:
    extra = {"AIJOBS_SIM_LATENCY_S": str(sim_latency)}
    os.environ.update(common.bench_env(extra))
    children = common.Children()
    print(f"bench: logs in {children.log_dir}", flush=True)
    rows: list[Row] = []
    try:
        common.fresh_database()
        common.flush_redis()
        _cli("migrate")
        key = json.loads(_cli("keys", "create", "--tenant", "bench").splitlines()[-1])["api_key"]
        port = free_port()
        bin_ = str(common.VENV_BIN / "aijobs")
        api = children.start(
            "api",
            [bin_, "api", "--host", "127.0.0.1", "--port", str(port)],
            common.bench_env(extra),
        )
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", api)
        metrics = free_port()
        worker = children.start(
            "worker",
            [bin_, "worker", "--concurrency", str(concurrency)],
            common.bench_env({**extra, "AIJOBS_WORKER_METRICS_PORT": str(metrics)}),
        )
        wait_ready(f"http://127.0.0.1:{metrics}/readyz", worker)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            tag = uuid.uuid4().hex[:8]
            body = _setup(http, items, tag)
            _batch(http, "warm-up", [f"warm {n} {tag}" for n in range(100)])
            rows.append(
                _batch(http, "plain batch drain", [f"plain {n} {tag}" for n in range(2 * items)])
            )
            print(_table(rows), flush=True)
            first, _ = _eval(http, f"eval {items} x 2 (equals_expected)", body)
            rows.append(first)
            print(_table(rows), flush=True)
            again, _ = _eval(http, "the same eval again (cached)", body)
            rows.append(again)
            assert Decimal(again.cost_usd) == 0, again
    finally:
        children.stop_all()
    return rows


def _table(rows: list[Row]) -> str:
    out = [
        f"{'run':<38} {'jobs':>6} {'accepted s':>10} {'wall s':>7} {'ended s':>7}"
        f" {'jobs/s':>7} {'cost USD':>9}"
    ]
    for r in rows:
        out.append(
            f"{r.name:<38} {r.jobs:>6} {r.accepted_s:>10.2f} {r.wall_s:>7.2f} {r.ended_s:>7.2f}"
            f" {r.jobs_per_s:>7.0f} {r.cost_usd:>9}  {r.note}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evals", description=__doc__)
    parser.add_argument("--items", type=int, default=1000, help="dataset items (2 candidates)")
    parser.add_argument("--concurrency", type=int, default=32, help="the worker's calls in flight")
    parser.add_argument("--sim-latency", type=float, default=0.0, help="s per sim call")
    parser.add_argument("--database-url", default=common.database_url())
    parser.add_argument("--redis-url", default=common.redis_url())
    args = parser.parse_args(argv)
    os.environ["BENCH_DATABASE_URL"] = args.database_url
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    rows = run(args.items, args.concurrency, args.sim_latency)
    print()
    print(_table(rows))
    print(f"(one worker, --concurrency {args.concurrency}; sim latency {args.sim_latency:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
