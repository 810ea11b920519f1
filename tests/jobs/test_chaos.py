"""Chaos: 500 jobs through the HTTP API against a faulty provider (20% answer 500 once,
10% answer 429 once with assorted Retry-After headers, a few answer a NUL character),
on two workers, while the run is hit by four faults: a worker SIGKILLed mid-call, a
Postgres restart, the other worker SIGKILLed mid-call, a Redis FLUSHALL.

Once the last fault has struck, within 60 s every job is terminal, none is lost, no
attempt stays open (`started`), no budget stays reserved, and every call the fake
provider saw is an attempt row (per job: calls == attempts rows).

The run has its own embedded Postgres and Redis (it restarts and flushes them), its
own fake provider and its own stack; the session's servers are not touched.
Prints: chaos: 500 jobs, F faults, 500 terminal, 0 lost, 0 stuck, 0 unrecorded calls,
recovery max S s (a fault's recovery: until every job accepted before it is terminal).
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import psycopg
import pytest

from tests.chaos_support import (
    TERMINAL,
    Accepted,
    ChaosServers,
    Fault,
    Poller,
    Submitter,
    sigkill_worker_mid_calls,
)
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat
from tests.stack import AIJOBS, ARTIFACTS, Stack, child_env

JOBS = 500
FAILING_500 = 100  # 20%: the first call answers HTTP 500
FAILING_429 = 50  # 10%: the first call answers 429 with a Retry-After from below
NUL_ANSWERS = 5  # the answer holds U+0000, which Postgres text and JSONB refuse
SUBMIT_RATE = 25.0  # jobs a second: the intake lasts 20 s, through the first three faults
CONCURRENCY = 8  # calls in flight per worker
RECOVERY_LIMIT_S = 60.0
SEED = 20_250  # the job mix and call latencies are the same every run


def _retry_after(n: int) -> str:
    """Assorted Retry-After values: seconds, zero, junk, empty, HTTP dates ahead and past."""
    now = time.time()
    values = ["1", "2", "0", "soon", "", formatdate(now + 2, usegmt=True)]
    values.append(formatdate(now - 60, usegmt=True))
    return values[n % len(values)]


@dataclass(frozen=True)
class Mix:
    kinds: list[str]  # per job: 500 | 429 | nul | ok
    sleeps: list[float]  # per job: the fake's latency for each call (0.1-0.8 s)
    run: str

    @classmethod
    def make(cls) -> Mix:
        rng = random.Random(SEED)
        order = list(range(JOBS))
        rng.shuffle(order)
        kinds = ["ok"] * JOBS
        cuts = [("500", FAILING_500), ("429", FAILING_429), ("nul", NUL_ANSWERS)]
        start = 0
        for kind, count in cuts:
            for i in order[start : start + count]:
                kinds[i] = kind
            start += count
        sleeps = [round(rng.uniform(0.1, 0.8), 2) for _ in range(JOBS)]
        return cls(kinds, sleeps, uuid.uuid4().hex)

    def message(self, i: int) -> str:
        """Job i's unique message (made when it is first submitted: dates are relative)."""
        kind = self.kinds[i]
        directive = {
            "500": "[fail:500x1]",
            "429": f"[429:{_retry_after(self.kinds[:i].count('429'))}]",
            "nul": "[nul]",
            "ok": "",
        }[kind]
        return f"[sleep:{self.sleeps[i]}] {directive} chaos-{kind} {i} {self.run}"


@dataclass
class Chaos:
    servers: ChaosServers
    fake: FakeOpenAI
    stack: Stack
    api_key: str


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    servers = ChaosServers(tmp_path_factory.mktemp("chaos"), database="aijobs_chaos")
    fake: FakeOpenAI | None = None
    stack: Stack | None = None
    try:
        fake = FakeOpenAI().start()
        env = child_env(
            servers.database_url,
            servers.redis_url,
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=fake.base_url,
        )
        migrated = subprocess.run([*AIJOBS, "migrate"], env=env, capture_output=True, text=True)
        assert migrated.returncode == 0, f"aijobs migrate failed:\n{migrated.stderr}"
        # A daily budget, so every call is reserved before it is made and released after.
        created = subprocess.run(
            [*AIJOBS, "keys", "create", "--tenant", "chaos", "--daily-budget", "100"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, f"aijobs keys create failed:\n{created.stderr}"
        api_key = str(json.loads(created.stdout.strip().splitlines()[-1])["api_key"])
        stack = Stack(env, name="chaos")
        stack.start_api()
        stack.start_worker(concurrency=CONCURRENCY)
        stack.start_worker(concurrency=CONCURRENCY)
        yield Chaos(servers, fake, stack, api_key)
    finally:
        if stack is not None:
            for worker in stack.workers:  # the end state is measured already
                if worker.poll() is None:
                    worker.send_signal(signal.SIGKILL)
            stack.stop()
        if fake is not None:
            fake.stop()
        servers.stop()


def _connect(chaos: Chaos) -> psycopg.Connection[Any]:
    return psycopg.connect(chaos.servers.database_url, autocommit=True, connect_timeout=5)


def _open_attempts(chaos: Chaos) -> int:
    with _connect(chaos) as conn:
        row = conn.execute("SELECT count(*) FROM attempts WHERE outcome = 'started'").fetchone()
    return int(row[0]) if row else 0


def _wait_for_calls_in_flight(chaos: Chaos, at_least: int, timeout_s: float = 15) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        held = _open_attempts(chaos)
        if held >= at_least or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def _until(t0: float, offset_s: float) -> None:
    """Space the fault injections out (pacing; every check of state polls)."""
    delay = t0 + offset_s - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _accepted_ids(submitter: Submitter) -> frozenset[str]:
    return frozenset(job.job_id for job in submitter.snapshot())


@dataclass
class EndState:
    statuses: dict[str, str]  # every job in the database: id -> status
    attempts: dict[str, Counter[str]]  # job id -> outcomes of its attempt rows
    open_attempts: int
    reserved: tuple[float, float]  # day_reserved, month_reserved

    @property
    def quiet(self) -> bool:
        running = any(status not in TERMINAL for status in self.statuses.values())
        return not running and self.open_attempts == 0 and self.reserved == (0.0, 0.0)


def _end_state(chaos: Chaos) -> EndState:
    with _connect(chaos) as conn:
        statuses = {
            str(job_id): str(status)
            for job_id, status in conn.execute("SELECT id, status FROM jobs").fetchall()
        }
        attempts: dict[str, Counter[str]] = {}
        for job_id, outcome, count in conn.execute(
            "SELECT job_id, outcome, count(*) FROM attempts GROUP BY job_id, outcome"
        ).fetchall():
            attempts.setdefault(str(job_id), Counter())[str(outcome)] = int(count)
        reserved = conn.execute(
            "SELECT coalesce(sum(day_reserved), 0), coalesce(sum(month_reserved), 0)"
            " FROM budget_counters"
        ).fetchone()
    assert reserved is not None
    open_attempts = sum(outcomes["started"] for outcomes in attempts.values())
    return EndState(statuses, attempts, open_attempts, (float(reserved[0]), float(reserved[1])))


def _wait_quiet(chaos: Chaos, deadline: float) -> EndState:
    """Poll until every job is terminal, no attempt is open and nothing is reserved, or
    the deadline passes; the state at that moment."""
    while True:
        try:
            state = _end_state(chaos)
        except psycopg.Error:  # the database may still be coming back
            state = None
        if state is not None and (state.quiet or time.monotonic() > deadline):
            return state
        assert time.monotonic() < deadline + 30, "the database is unreachable"
        time.sleep(0.25)


def _kind(message: str) -> str:
    found = re.search(r"chaos-(\w+) ", message)
    return found.group(1) if found else "?"


def _recovery(faults: list[Fault], now: float) -> str:
    if all(fault.recovery_s is not None for fault in faults):
        return f"{max(fault.recovery_s or 0.0 for fault in faults):.1f}"
    return f">{max(now - fault.at for fault in faults if fault.recovery_s is None):.1f}"


@pytest.mark.timeout(300)
def test_chaos_every_job_ends_every_call_is_recorded(chaos: Chaos) -> None:
    mix = Mix.make()
    poller = Poller(chaos.servers.database_url).start()
    submitter = Submitter(
        base_url=chaos.stack.base_url,
        api_key=chaos.api_key,
        make_message=mix.message,
        make_body=chat,
        count=JOBS,
        rate=SUBMIT_RATE,
    )
    started = time.monotonic()
    notes: list[str] = []
    kills: list[tuple[int, bool]] = []  # per SIGKILL: calls it cut, all seen by the fake
    try:
        submitter.start()
        t0 = time.monotonic()

        # 1. SIGKILL the first worker while it holds calls; a replacement starts.
        _until(t0, 3)
        with _connect(chaos) as conn:
            held, reached = sigkill_worker_mid_calls(conn, chaos.fake, chaos.stack.workers[0])
        kills.append((held, reached))
        poller.strike("sigkill worker 1", _accepted_ids(submitter), f"{held} calls cut")
        chaos.stack.start_worker(concurrency=CONCURRENCY)

        # 2. Restart Postgres (fast shutdown, 1.5 s down) with calls in flight: their
        # settles meet a database that cut every session.
        _until(t0, 9)
        held = _wait_for_calls_in_flight(chaos, at_least=4)
        poller.strike("restart postgres", _accepted_ids(submitter), f"{held} calls in flight")
        chaos.servers.restart_postgres(down_s=1.5)

        # 3. SIGKILL the other original worker, mid-call; a replacement starts.
        _until(t0, 15)
        with _connect(chaos) as conn:
            held, reached = sigkill_worker_mid_calls(conn, chaos.fake, chaos.stack.workers[1])
        kills.append((held, reached))
        poller.strike("sigkill worker 2", _accepted_ids(submitter), f"{held} calls cut")
        chaos.stack.start_worker(concurrency=CONCURRENCY)

        # 4. When every job is in, FLUSHALL the broker (its queued messages are gone).
        submitter.join(timeout_s=120)
        before = _accepted_ids(submitter)
        last = poller.strike("flush redis", before)
        last.detail = f"{chaos.servers.flush_redis()} queued messages lost"

        state = _wait_quiet(chaos, deadline=last.at + RECOVERY_LIMIT_S)
        finished = time.monotonic()
    finally:
        poller.stop()

    accepted: list[Accepted] = submitter.snapshot()
    ids = [job.job_id for job in accepted]
    mine = set(ids)
    terminal = sum(state.statuses.get(job_id) in TERMINAL for job_id in ids)
    lost = [job_id for job_id in ids if job_id not in state.statuses]
    stuck = sorted(
        (job_id, status) for job_id, status in state.statuses.items() if status not in TERMINAL
    )
    strays = sorted(set(state.statuses) - mine)  # jobs nobody was told about
    mismatched = []
    for job in accepted:
        calls = chaos.fake.count(job.message)
        rows = sum(state.attempts.get(job.job_id, Counter()).values())
        if calls != rows:
            mismatched.append((job.message, calls, dict(state.attempts.get(job.job_id, {}))))
    unrecorded = sum(abs(calls - sum(rows.values())) for _, calls, rows in mismatched)
    recovery = _recovery(poller.faults, finished)

    print(
        f"chaos: {len(accepted)} jobs, {len(poller.faults)} faults, {terminal} terminal,"
        f" {len(lost)} lost, {len(stuck)} stuck, {unrecorded} unrecorded calls,"
        f" recovery max {recovery} s",
        flush=True,
    )

    kinds = {job.job_id: _kind(job.message) for job in accepted}
    by_status = Counter(state.statuses.get(job_id, "lost") for job_id in ids)
    outcomes = sum((state.attempts.get(job_id, Counter()) for job_id in ids), Counter())
    by_kind = Counter((kinds[job_id], state.statuses.get(job_id, "lost")) for job_id in ids)
    calls_total = sum(chaos.fake.count(job.message) for job in accepted)
    notes.append(
        f"ran {finished - started:.1f} s ({finished - last.at:.1f} s after the last fault);"
        f" {submitter.retried} submits sent again"
    )
    notes.append(f"jobs by status {dict(by_status)}; by (kind, status) {dict(by_kind)}")
    notes.append(
        f"calls at the fake {calls_total}; attempt rows {sum(outcomes.values())}, by outcome"
        f" {dict(outcomes)}"
    )
    for fault in poller.faults:
        recovered = "never" if fault.recovery_s is None else f"{fault.recovery_s:.1f} s"
        notes.append(
            f"fault {fault.name} at +{fault.at - started:.1f} s ({fault.detail}; "
            f"{len(fault.before)} jobs accepted before it): recovered in {recovered}"
        )
    # The run's particulars, beside the stack's logs (the one printed line stays one).
    (ARTIFACTS / "chaos-summary.txt").write_text("\n".join(notes) + "\n")
    failures: list[str] = []
    if len(accepted) != JOBS or submitter.refused:
        failures.append(f"{len(accepted)} of {JOBS} accepted; refused: {submitter.refused[:5]}")
    if len(poller.faults) != 4 or not all(held and reached for held, reached in kills):
        failures.append(f"a fault did not strike as planned: kills (calls cut, sent) {kills}")
    if lost:
        failures.append(f"{len(lost)} accepted jobs are not in the database: {lost[:5]}")
    if strays:
        failures.append(f"{len(strays)} jobs in the database were never accepted: {strays[:5]}")
    if stuck:
        detail = [(job_id, status, kinds.get(job_id, "?")) for job_id, status in stuck]
        failures.append(
            f"{len(stuck)} jobs not terminal {RECOVERY_LIMIT_S:.0f} s after the last fault"
            f" (job, status, kind): {detail[:10]}; by kind"
            f" {dict(Counter(kind for *_, kind in detail))}"
        )
    if state.open_attempts:
        failures.append(f"{state.open_attempts} attempts still 'started'")
    if state.reserved != (0.0, 0.0):
        failures.append(f"budget still reserved (day, month): {state.reserved}")
    if mismatched:
        failures.append(
            f"{len(mismatched)} jobs whose calls at the fake differ from their attempt rows"
            f" (message, calls, rows by outcome): {mismatched[:10]}"
        )
    assert not failures, "\n".join([*failures, *notes])
