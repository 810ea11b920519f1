"""Real `aijobs api` and `aijobs worker` processes for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from cli.embedded import free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Two runs in one checkout (each with its own AIJOBS_TEST_DB_NAME) keep their own logs:
# the waits read them (" ready."), and must not see the other run's processes.
_RUN = os.environ.get("AIJOBS_TEST_DB_NAME", "aijobs_test")
LOG_PREFIX = "" if _RUN == "aijobs_test" else f"{_RUN}-"
AIJOBS = [sys.executable, "-m", "cli"]
ADMIN_TOKEN = "test-admin-token"


class Stack:
    """One API process and any number of worker processes sharing one environment."""

    def __init__(self, env: dict[str, str], name: str = "stack") -> None:
        self.env = env
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        ARTIFACTS.mkdir(exist_ok=True)

    def _spawn(
        self, args: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.log_path(log_name).open("ab")
        self._logs.append(log)
        return subprocess.Popen(
            [*AIJOBS, *args], env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )

    def log_path(self, log_name: str) -> Path:
        return ARTIFACTS / f"{LOG_PREFIX}{self.name}-{log_name}.log"

    def start_api(self, ready_path: str = "/readyz") -> None:
        self.api = self._spawn(["api", "--port", str(self.port)], "api")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.api.poll() is None, "the API process exited; see test-artifacts/"
            try:
                if httpx.get(self.base_url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the API did not become ready")

    def start_worker(
        self, concurrency: int = 4, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        worker = self._spawn(["worker", "--concurrency", str(concurrency)], f"worker{n}", env)
        self.workers.append(worker)
        self._wait_worker_ready(worker, n)
        return worker

    def _wait_worker_ready(self, worker: subprocess.Popen[bytes], n: int) -> None:
        log_path = self.log_path(f"worker{n}")
        start = log_path.stat().st_size if log_path.exists() else 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert worker.poll() is None, "a worker exited during start-up; see test-artifacts/"
            with log_path.open("rb") as log:
                log.seek(start)
                if b" ready." in log.read():
                    return
            time.sleep(0.2)
        raise AssertionError("the worker did not become ready")

    def kill_workers(self, sig: int = signal.SIGKILL) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(sig)
        for worker in self.workers:
            worker.wait(timeout=60)
        self.workers.clear()

    def ensure_worker(self) -> None:
        self.ensure_workers(1)

    def ensure_workers(self, count: int) -> None:
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < count:
            self.start_worker()

    def stop(self) -> None:
        self.kill_workers(signal.SIGTERM)
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            self.api.wait(timeout=30)
        for log in self._logs:
            log.close()


def child_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIJOBS_", "OPENAI_"))}
    env.update(
        {
            "AIJOBS_DATABASE_URL": database_url,
            "AIJOBS_REDIS_URL": redis_url,
            # Short clocks so recovery is seen in seconds, not minutes.
            "AIJOBS_LEASE_S": "4",
            "AIJOBS_REQUEUE_AFTER_S": "3",
            "AIJOBS_SWEEP_INTERVAL_S": "0.5",
            "AIJOBS_RETRY_BASE_S": "0.2",
            "AIJOBS_SIM_LATENCY_S": "0.05",
            "AIJOBS_PROVIDER_BATCH_POLL_S": "0.3",
            # One model capped, for the in-flight cap test; the others are free.
            "AIJOBS_MODEL_INFLIGHT_CAPS": "openai/gpt-4.1-nano=2",
            "AIJOBS_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    env.update(extra)
    return env
