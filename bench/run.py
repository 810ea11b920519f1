"""Entry point: `python -m bench.run` measures our API and worker next to bare baselines."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from bench import common


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="submit load per target")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="client threads (as ../shared/bench/perf.py)"
    )
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs for the end-to-end figure")
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=common.database_url())
    parser.add_argument("--redis-url", default=common.redis_url())
    parser.add_argument("--skip-submit", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--io", action="store_true", help="also the I/O-bound figure: sim at 1 s, 1000 threads"
    )
    parser.add_argument("--io-jobs", type=int, default=8000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="end-to-end and I/O-bound runs of each side, interleaved (medians reported)",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="also calls held at once: sim at 5 s, 1000; the OpenAI SDK at 6 s, 300",
    )
    parser.add_argument(
        "--scale-out", action="store_true", help="also one worker vs two, CPU not the limit"
    )
    parser.add_argument("--io-concurrency", type=int, default=1000)
    parser.add_argument(
        "--io-processes", type=int, default=1, help="worker processes sharing the concurrency"
    )
    return parser.parse_args(argv)


def _cli(*args: str) -> str:
    argv = [str(common.VENV_BIN / "aijobs"), *args]
    done = subprocess.run(
        argv, cwd=common.ROOT, env=common.bench_env(), capture_output=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        raise SystemExit(f"`aijobs {' '.join(args)}` failed ({done.returncode})")
    return done.stdout.decode()


def _setup() -> tuple[str, str]:
    """The plain tenant's key, and the key of a tenant with a budget and an rpm limit
    (neither ever reached), to measure their cost."""
    common.fresh_database()
    common.flush_redis()
    _cli("migrate")
    issued = json.loads(_cli("keys", "create", "--tenant", "bench").strip().splitlines()[-1])
    limited = _cli(
        "keys",
        "create",
        "--tenant",
        "bench-budget",
        "--daily-budget",
        "1000000",
        "--rpm",
        "10000000",
    )
    return str(issued["api_key"]), str(json.loads(limited.strip().splitlines()[-1])["api_key"])


def _ratio(ours: float, base: float) -> str:
    if not base or math.isnan(ours) or math.isnan(base):
        return "n/a"
    return f"{ours / base:.2f}"


def _medians(
    ours: list[Any], bare: list[Any], figure: Callable[[Any], float]
) -> tuple[float, float]:
    """The median of a figure on each side over the repeated runs."""
    return statistics.median(map(figure, ours)), statistics.median(map(figure, bare))


def _table(rows: list[tuple[str, float, float]]) -> str:
    lines = [f"{'figure':<28}{'ours':>12}{'baseline':>12}{'ratio':>8}"]
    for name, ours, base in rows:
        lines.append(f"{name:<28}{ours:>12.1f}{base:>12.1f}{_ratio(ours, base):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ["BENCH_DATABASE_URL"] = args.database_url
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    os.environ.update(common.bench_env())  # for the aijobs code used in-process
    started = time.monotonic()
    children = common.Children()
    rows: list[tuple[str, float, float]] = []
    print(f"bench: logs in {children.log_dir}", flush=True)
    try:
        api_key, limited_key = _setup()
        if not args.skip_submit:
            from bench.load import LoadResult
            from bench.submit import submit_baseline, submit_ours

            load = {
                "seconds": args.seconds,
                "concurrency": args.concurrency,
                "procs": args.client_procs,
            }
            news: list[LoadResult] = []
            hits: list[LoadResult] = []
            limits: list[LoadResult] = []
            bases: list[LoadResult] = []
            for run in range(1, args.repeat + 1):
                print(f"bench: submit run {run} ({args.seconds:g} s, C={args.concurrency})")
                new, hit, limited = submit_ours(children, api_key, limited_key=limited_key, **load)
                news.append(new)
                hits.append(hit)
                limits.append(limited)
                bases.append(submit_baseline(children, **load))
                for result, who in ((new, "ours"), (hit, "ours (hits)"), (bases[-1], "baseline")):
                    if result.errors:
                        print(f"bench: {who}: {result.errors} errors, first: {result.first_error}")
                print(f"bench:   {new.rps:.0f} vs {bases[-1].rps:.0f} req/s", flush=True)

            rps = attrgetter("rps")

            def p50(run: LoadResult) -> float:
                return run.percentile_ms(0.5)

            def p99(run: LoadResult) -> float:
                return run.percentile_ms(0.99)

            errors = (float(sum(r.errors for r in news)), float(sum(r.errors for r in bases)))
            rows += [
                ("submit req/s", *_medians(news, bases, rps)),
                ("submit p50 ms", *_medians(news, bases, p50)),
                ("submit p99 ms", *_medians(news, bases, p99)),
                ("submit errors (all runs)", *errors),
                # The load generator shares the cores: its CPU a request, to tell when it
                # is the limit (docs/scaling.md).
                ("submit client CPU ms/req", *_medians(news, bases, attrgetter("client_cpu_ms"))),
                # A hit is terminal in the POST response: submit latency is submit->terminal.
                ("cache hit req/s", *_medians(hits, bases, rps)),
                ("cache hit p50 ms", *_medians(hits, bases, p50)),
                ("cache hit p99 ms", *_medians(hits, bases, p99)),
                ("submit, budget+rpm on / off", *_medians(limits, news, rps)),
            ]
        if not args.skip_e2e:
            from bench.e2e import DrainResult, e2e_baseline, e2e_ours

            e2e = {"jobs": args.jobs, "concurrency": args.worker_concurrency}
            plain: list[DrainResult] = []
            budgeted: list[DrainResult] = []
            bare: list[DrainResult] = []
            for run in range(1, args.repeat + 1):
                print(f"bench: end-to-end run {run} ({args.jobs} jobs, sim/echo at 0 s)")
                for tenant_name, runs in (("bench", plain), ("bench-budget", budgeted)):
                    common.sql("TRUNCATE jobs CASCADE")
                    common.flush_redis()
                    runs.append(e2e_ours(children, tenant_name=tenant_name, **e2e))
                    if runs[-1].not_succeeded:
                        print(f"bench: ours: {runs[-1].not_succeeded} jobs did not succeed")
                bare.append(e2e_baseline(children, **e2e))
                print(
                    f"bench:   {plain[-1].jobs_per_s:.0f} (budget on {budgeted[-1].jobs_per_s:.0f})"
                    f" vs {bare[-1].jobs_per_s:.0f} jobs/s",
                    flush=True,
                )
            rows += [
                ("end-to-end jobs/s", *_medians(plain, bare, attrgetter("jobs_per_s"))),
                ("e2e jobs/s, budget on", *_medians(budgeted, bare, attrgetter("jobs_per_s"))),
                ("e2e budget on / off", *_medians(budgeted, plain, attrgetter("jobs_per_s"))),
            ]
        if args.io:
            from bench.e2e import e2e_baseline, e2e_ours

            load = {"jobs": args.io_jobs, "concurrency": args.io_concurrency, "latency_s": 1.0}
            ours_runs, bare_runs = [], []
            for run in range(1, args.repeat + 1):
                common.sql("TRUNCATE jobs CASCADE")
                common.flush_redis()
                print(f"bench: I/O-bound run {run}, ours ({args.io_jobs} jobs, sim at 1 s)")
                ours_runs.append(
                    e2e_ours(
                        children,
                        jobs=args.io_jobs,
                        concurrency=args.io_concurrency // args.io_processes,
                        latency_s=1.0,
                        processes=args.io_processes,
                    )
                )
                print(f"bench: I/O-bound run {run}, baseline (a Celery task sleeping 1 s)")
                bare_runs.append(e2e_baseline(children, **load))
                print(
                    f"bench:   {ours_runs[-1].jobs_per_s:.0f} vs {bare_runs[-1].jobs_per_s:.0f}"
                    f" jobs/s, {ours_runs[-1].peak_in_flight} vs"
                    f" {bare_runs[-1].peak_in_flight} in flight",
                    flush=True,
                )
            rows += [
                (
                    "I/O jobs/s (1 s calls)",
                    *_medians(ours_runs, bare_runs, attrgetter("jobs_per_s")),
                ),
                (
                    "I/O peak calls in flight",
                    *_medians(ours_runs, bare_runs, attrgetter("peak_in_flight")),
                ),
                (
                    "I/O worker peak RSS MiB",
                    *_medians(ours_runs, bare_runs, attrgetter("peak_rss_mb")),
                ),
            ]
        if args.capacity:
            from bench.e2e import e2e_baseline, e2e_ours

            # Long calls: how many one worker process holds at once, and in what memory.
            common.sql("TRUNCATE jobs CASCADE")
            common.flush_redis()
            print("bench: capacity, ours (2000 jobs, sim at 5 s, 1000 slots)", flush=True)
            held = e2e_ours(children, jobs=2000, concurrency=1000, latency_s=5.0)
            print("bench: capacity, baseline (1000 threads sleeping 5 s)", flush=True)
            bare_held = e2e_baseline(children, jobs=2000, concurrency=1000, latency_s=5.0)
            rows += [
                ("5 s calls: peak in flight", held.peak_in_flight, bare_held.peak_in_flight),
                ("5 s calls: peak RSS MiB", held.peak_rss_mb, bare_held.peak_rss_mb),
            ]
            from bench.call_loop import sdk_capacity

            # The same through the real OpenAI SDK (the fake provider, 6 s calls); the
            # baseline is a thread per call.
            common.sql("TRUNCATE jobs CASCADE")
            common.flush_redis()
            print("bench: capacity, OpenAI SDK (300 jobs, 6 s calls, 300 slots)", flush=True)
            sdk = sdk_capacity(children, calls=300, sleep_s=6.0)
            if not sdk.made_once or sdk.succeeded != sdk.calls or sdk.attempts != sdk.calls:
                print(
                    f"bench: SDK capacity: {sdk.succeeded}/{sdk.calls} succeeded,"
                    f" {sdk.attempts} attempts, each call once: {sdk.made_once}"
                )
            rows += [
                ("SDK 6 s calls: in flight", sdk.peak_in_flight, sdk.calls),
                ("SDK 6 s calls: threads", sdk.peak_threads, sdk.calls),
            ]
        if args.scale_out:
            from bench.e2e import e2e_ours

            rates = []
            for workers in (1, 2):
                common.sql("TRUNCATE jobs CASCADE")
                common.flush_redis()
                print(f"bench: scale-out, {workers} worker(s) x 50 slots, sim at 1 s", flush=True)
                rates.append(
                    e2e_ours(children, jobs=1500, concurrency=50, latency_s=1.0, workers=workers)
                )
            rows.append(("scale-out jobs/s: 2 vs 1", rates[1].jobs_per_s, rates[0].jobs_per_s))
    finally:
        children.stop_all()
    print()
    print(_table(rows))
    print(f"\n(ratio = ours/baseline; total bench time {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
