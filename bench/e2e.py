"""End-to-end benchmark: a backlog of N queued jobs drained by a worker, ours vs baseline."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import (
    VENV_BIN,
    WORKER_QUEUE,
    Children,
    bench_env,
    scalar,
    scalar_float,
    sql,
)

POLL_S = 0.25
TERMINAL_SQL = "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"
FAILED_SQL = "SELECT count(*) FROM jobs WHERE status <> 'succeeded'"
DONE_SQL = "SELECT count(*) FROM bench_rows WHERE done"
# Each side's calls as [start, end) intervals, from its own rows: the window from the
# first start to the last end gives jobs/s, and the most that overlap, calls in flight.
OURS_CALLS = "SELECT started_at, finished_at FROM attempts"
BASELINE_CALLS = "SELECT started_at, updated_at FROM bench_rows"
WINDOW_SQL = "SELECT extract(epoch FROM max(e) - min(s)) FROM ({calls}) AS c(s, e)"
PEAK_SQL = """
SELECT coalesce(max(n), 0) FROM (
    SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n
    FROM (SELECT s AS t, 1 AS d FROM ({calls}) AS c(s, e)
          UNION ALL SELECT e, -1 FROM ({calls}) AS c(s, e)) AS events
) AS running
"""


class PeakRss:
    """Samples, while a drain runs, the worker's RSS with its children."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.25):
            try:
                processes = [psutil.Process(pid) for pid in self.pids]
                tree = [q for p in processes for q in [p, *p.children(True)]]
                rss = sum(q.memory_info().rss for q in tree)
            except psutil.Error:
                continue
            self.rss_mb = max(self.rss_mb, rss / 2**20)


@dataclass
class DrainResult:
    """N jobs from the first call's start to the last one's end."""

    jobs: int
    seconds: float
    not_succeeded: int = 0
    peak_in_flight: int = 0
    peak_rss_mb: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def _wait_count(
    sql: str, target: int, procs: list[subprocess.Popen[bytes]], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while scalar(sql) < target:
        if any(proc.poll() is not None for proc in procs):
            raise RuntimeError(f"a worker exited: {[proc.args for proc in procs]!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {target} rows of {sql!r}")
        time.sleep(POLL_S)


def _drain(
    start_workers: Callable[[], list[subprocess.Popen[bytes]]],
    children: Children,
    *,
    jobs: int,
    done_sql: str,
    calls_sql: str,
) -> DrainResult:
    """The whole backlog is queued before a worker starts, so the figure is the
    worker's, not the publisher's: the bench publishes from one Python process."""
    procs = start_workers()
    try:
        with PeakRss([proc.pid for proc in procs]) as rss:
            _wait_count(done_sql, jobs, procs, timeout_s=max(120.0, jobs / 10))
    finally:
        for proc in procs:
            children.stop(proc)
    seconds = float(scalar_float(WINDOW_SQL.format(calls=calls_sql)))
    return DrainResult(
        jobs,
        seconds,
        peak_in_flight=scalar(PEAK_SQL.format(calls=calls_sql)),
        peak_rss_mb=rss.rss_mb,
    )


def e2e_ours(
    children: Children,
    *,
    jobs: int,
    concurrency: int,
    tenant_name: str = "bench",
    latency_s: float = 0.0,
    workers: int = 1,
    processes: int = 1,
) -> DrainResult:
    """Our worker path; tenant "bench-budget" has a (never reached) budget, so every call
    is reserved and settled against it."""
    from sqlalchemy import select

    from aijobs.db import session_scope
    from aijobs.jobs import submission
    from aijobs.jobs.schemas import JobRequest
    from aijobs.models import Tenant
    from api.publisher import publish_run

    def request(n: int) -> JobRequest:
        """Distinct messages: the cache is on, and each job misses it."""
        content = f"hello from the bench {uuid.uuid4()} {n}"
        return JobRequest.model_validate(
            {"model": "sim/echo", "messages": [{"role": "user", "content": content}]}
        )

    def insert(count: int) -> list[uuid.UUID]:
        with session_scope() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one()
            return [
                submission.submit(session, tenant.id, request(n)).row["id"] for n in range(count)
            ]

    def publish(ids: list[uuid.UUID]) -> None:
        for job_id in ids:
            if not publish_run(job_id):
                raise RuntimeError("publish failed")

    argv = [str(VENV_BIN / "aijobs"), "worker", "--concurrency", str(concurrency)]
    argv += ["--processes", str(processes)]
    env = bench_env({"AIJOBS_SIM_LATENCY_S": str(latency_s)})
    publish(insert(jobs))
    # Fresh enqueued_at, so the sweeper does not re-publish rows that the slow insert
    # made look stale: the broker holds every one of them.
    sql("UPDATE jobs SET enqueued_at = now() WHERE status = 'queued'")

    def start() -> list[subprocess.Popen[bytes]]:
        return [children.start(f"worker-ours-{n}", argv, env) for n in range(workers)]

    result = _drain(start, children, jobs=jobs, done_sql=TERMINAL_SQL, calls_sql=OURS_CALLS)
    result.not_succeeded = scalar(FAILED_SQL)
    return result


def e2e_baseline(
    children: Children, *, jobs: int, concurrency: int, latency_s: float = 0.0
) -> DrainResult:
    from bench.baseline_worker import TASK, app, engine

    def insert(count: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO bench_rows (id) VALUES (%(id)s)", [{"id": i} for i in ids]
            )
        return ids

    def publish(ids: list[uuid.UUID]) -> None:
        for row_id in ids:
            app.send_task(TASK, args=[str(row_id)], queue=WORKER_QUEUE, retry=False)

    argv = [
        str(VENV_BIN / "celery"),
        "-A",
        "bench.baseline_worker",
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        f"--queues={WORKER_QUEUE}",
        "--without-gossip",
        "--without-mingle",
    ]
    env = bench_env({"BENCH_SLEEP_S": str(latency_s)})
    sql("TRUNCATE bench_rows")
    publish(insert(jobs))

    def start() -> list[subprocess.Popen[bytes]]:
        return [children.start("worker-baseline", argv, env)]

    return _drain(start, children, jobs=jobs, done_sql=DONE_SQL, calls_sql=BASELINE_CALLS)
