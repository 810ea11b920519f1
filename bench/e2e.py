"""End-to-end benchmark: N queued jobs drained by one worker process, ours vs baseline."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import VENV_BIN, WORKER_QUEUE, Children, bench_env, scalar, sql

POLL_S = 0.02
TERMINAL_SQL = "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"
FAILED_SQL = "SELECT count(*) FROM jobs WHERE status <> 'succeeded'"
DONE_SQL = "SELECT count(*) FROM bench_rows WHERE done"
RUNNING_SQL = "SELECT count(*) FROM jobs WHERE status = 'running'"


class PeakSampler:
    """Samples, while a drain runs, the worker's RSS (with its children) and, for ours,
    the jobs running at once."""

    def __init__(self, pid: int, running_sql: str | None) -> None:
        self.pid = pid
        self.running_sql = running_sql
        self.rss_mb = 0.0
        self.in_flight = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil  # type: ignore[import-untyped]

        process = psutil.Process(self.pid)
        while not self._stop.wait(0.25):
            try:
                rss = sum(p.memory_info().rss for p in [process, *process.children(True)])
            except psutil.Error:
                continue
            self.rss_mb = max(self.rss_mb, rss / 2**20)
            if self.running_sql:
                self.in_flight = max(self.in_flight, scalar(self.running_sql))


@dataclass
class DrainResult:
    """How long N jobs took from the first publish until all were terminal."""

    jobs: int
    seconds: float
    not_succeeded: int = 0
    peak_in_flight: int = 0
    peak_rss_mb: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def _wait_count(sql: str, target: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while scalar(sql) < target:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {proc.args!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {target} rows of {sql!r}")
        time.sleep(POLL_S)


def _drain(
    proc: subprocess.Popen[bytes],
    publish: Callable[[list[uuid.UUID]], None],
    ids: list[uuid.UUID],
    sql: str,
    already: int,
) -> float:
    started = time.perf_counter()
    publish(ids)
    _wait_count(sql, already + len(ids), proc, timeout_s=max(60.0, len(ids) / 10))
    return time.perf_counter() - started


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

    from aijobs import submission
    from aijobs.db import session_scope
    from aijobs.models import Tenant
    from aijobs.schemas import JobRequest
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
    proc = children.start("worker-ours", argv, env)
    more = [children.start(f"worker-ours-{n}", argv, env) for n in range(1, workers)]
    try:
        _drain(proc, publish, insert(1), TERMINAL_SQL, 0)  # warm-up: worker up, pools open
        ids = insert(jobs)
        # Fresh enqueued_at, so the sweeper does not re-publish rows that the slow
        # insert made look stale before we publish them ourselves.
        sql("UPDATE jobs SET enqueued_at = now() WHERE status = 'queued'")
        with PeakSampler(proc.pid, RUNNING_SQL) as peak:
            seconds = _drain(proc, publish, ids, TERMINAL_SQL, 1)
        return DrainResult(
            jobs,
            seconds,
            not_succeeded=scalar(FAILED_SQL),
            peak_in_flight=peak.in_flight,
            peak_rss_mb=peak.rss_mb,
        )
    finally:
        for worker in (proc, *more):
            children.stop(worker)


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
    proc = children.start("worker-baseline", argv, bench_env({"BENCH_SLEEP_S": str(latency_s)}))
    try:
        sql("TRUNCATE bench_rows")
        _drain(proc, publish, insert(1), DONE_SQL, 0)
        ids = insert(jobs)
        with PeakSampler(proc.pid, None) as peak:
            seconds = _drain(proc, publish, ids, DONE_SQL, 1)
        return DrainResult(jobs, seconds, peak_rss_mb=peak.rss_mb)
    finally:
        children.stop(proc)
