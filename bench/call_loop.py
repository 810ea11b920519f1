"""Capacity through the real OpenAI SDK: one worker process holds hundreds of long
provider calls in flight on its call loop, with a handful of threads.

The provider is the tests' fake (tests/fake_openai.py), in this process, each call
answering after `sleep_s`; the jobs are queued before the worker starts, so the
figure is the worker's. Each call must be made once. Part of `python -m bench.run
--capacity`; alone: `python -m bench.call_loop [--calls 300] [--sleep 6]`.

(It was a functional test; it measures capacity, so it lives here: on a loaded
2-core machine "240 of 300 six-second calls in flight at once" is a speed bound.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from bench import common

MODEL = "gpt-5-nano"
TERMINAL_SQL = "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"


@dataclass
class SdkCapacity:
    calls: int
    peak_in_flight: int  # at the fake provider, at once
    peak_threads: int  # of the worker process (the supervisor's child)
    seconds: float  # from the worker's start to the last job's end
    succeeded: int
    made_once: bool  # every job's call reached the provider exactly once
    attempts: int  # attempt rows of the jobs (one each when nothing was retried)


class _Threads:
    """Samples the thread count of the supervisor's child (the Celery worker)."""

    def __init__(self, supervisor_pid: int) -> None:
        self.pid = supervisor_pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Threads:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            try:
                children = psutil.Process(self.pid).children()
                self.peak = max([self.peak, *(c.num_threads() for c in children)])
            except psutil.Error:
                continue


def sdk_capacity(
    children: common.Children, *, tenant_name: str = "bench", calls: int = 300, sleep_s: float = 6
) -> SdkCapacity:
    """Queue `calls` jobs whose calls last sleep_s each, start one worker with as many
    slots, and measure what it holds at once until every job has ended."""
    from sqlalchemy import select

    from aijobs.db import session_scope
    from aijobs.jobs import submission
    from aijobs.jobs.schemas import JobRequest
    from aijobs.models import Tenant
    from api.publisher import publish_run
    from tests.fake_openai import FakeOpenAI

    fake = FakeOpenAI().start()
    try:
        tag = uuid.uuid4().hex
        messages = [f"[sleep:{sleep_s:g}] loop {tag} {n}" for n in range(calls)]
        with session_scope() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.name == tenant_name)).one()
            ids = [
                submission.submit(
                    session,
                    tenant.id,
                    JobRequest.model_validate(
                        {
                            "model": f"openai/{MODEL}",
                            "messages": [{"role": "user", "content": m}],
                            "cache": False,
                        }
                    ),
                ).row["id"]
                for m in messages
            ]
        for job_id in ids:
            if not publish_run(job_id):
                raise RuntimeError("publish failed")
        common.sql("UPDATE jobs SET enqueued_at = now() WHERE status = 'queued'")

        env = common.bench_env({"OPENAI_API_KEY": "bench-key", "OPENAI_BASE_URL": fake.base_url})
        argv = [str(common.VENV_BIN / "aijobs"), "worker", "--concurrency", str(calls)]
        started = time.monotonic()
        worker = children.start("worker-sdk-capacity", argv, env)
        try:
            with _Threads(worker.pid) as threads:
                deadline = started + max(120.0, sleep_s * 10)
                while common.scalar(TERMINAL_SQL) < len(ids):
                    if worker.poll() is not None:
                        raise RuntimeError("the worker exited")
                    if time.monotonic() > deadline:
                        raise RuntimeError("timed out waiting for the jobs to end")
                    time.sleep(0.25)
            seconds = time.monotonic() - started
        finally:
            children.stop(worker)
        id_list = ",".join(f"'{job_id}'" for job_id in ids)
        return SdkCapacity(
            calls=calls,
            peak_in_flight=fake.max_in_flight[MODEL],
            peak_threads=threads.peak,
            seconds=seconds,
            succeeded=common.scalar(
                f"SELECT count(*) FROM jobs WHERE id IN ({id_list}) AND status = 'succeeded'"
            ),
            made_once=all(fake.count(m) == 1 for m in messages),
            attempts=common.scalar(f"SELECT count(*) FROM attempts WHERE job_id IN ({id_list})"),
        )
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.call_loop", description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--sleep", type=float, default=6.0, help="seconds each call lasts")
    parser.add_argument("--database-url", default=common.database_url())
    parser.add_argument("--redis-url", default=common.redis_url())
    args = parser.parse_args(argv)
    os.environ["BENCH_DATABASE_URL"] = args.database_url
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    os.environ.update(common.bench_env())
    children = common.Children()
    try:
        common.fresh_database()
        common.flush_redis()
        cli = [str(common.VENV_BIN / "aijobs")]
        subprocess.run([*cli, "migrate"], cwd=common.ROOT, env=common.bench_env(), check=True)
        subprocess.run(
            [*cli, "keys", "create", "--tenant", "bench"],
            cwd=common.ROOT,
            env=common.bench_env(),
            check=True,
            capture_output=True,
        )
        result = sdk_capacity(children, calls=args.calls, sleep_s=args.sleep)
    finally:
        children.stop_all()
    print(json.dumps(result.__dict__, indent=2))
    ok = result.made_once and result.succeeded == result.attempts == result.calls
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
