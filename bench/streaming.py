"""Streaming benchmark (SPEC "Streaming"): the time to the first delta through aijobs
against the provider's own time to its first chunk, and what open event streams cost
one API process.

    .venv/bin/python -m bench.streaming [--n 200] [--concurrency 20] [--streams 1000]

1. Time to first delta. The fake provider (tests/fake_openai.py) in this process, a
   real `aijobs api` and `aijobs worker` pointed at it, a fresh bench database. Each
   message makes the fake wait PACE_S before each of CHUNKS chunks, so the first one
   comes after 50 ms, as from a provider that thinks a little. Per request, from just
   before it is sent: the fake alone (the `openai` SDK streaming from it, to the first
   content chunk); ours (`POST /v1/jobs` with stream: true, then at once `GET
   /v1/jobs/{id}/events`, to the first `delta`); the front door (the SDK pointed at
   aijobs' `POST /v1/chat/completions` with stream: true, skipped with a note when
   that route does not stream). After a warm-up, `--n` sequential requests a side,
   the sides alternating request by request so the machine's drift hits both; then
   with `--concurrency` in flight (closed loop), the sides alternating by blocks.
   Where the time goes: ours is split at the POST's answer, the worker's claim, the
   call reaching the fake, and the first delta's publication (heard on a subscription
   of the bench's own).
2. Open streams. No worker runs (the jobs stay queued). `--streams` SSE connections
   to `/v1/jobs/{id}/events` of as many queued jobs, each held past its first event:
   first all at once into a fresh API process (how many fail), then `--wave` at a
   time into another, whose RSS before and after, Redis and PostgreSQL connections,
   and CPU a second with the streams open and quiet are read (each follower re-reads
   its job every 2 s at most while nothing comes). Streams that fail or drop are
   counted, not fatal; `--redis-max-connections 5000` lifts redis-py's pool limit in
   those two processes, to tell the streams' cost from that limit's failures.

Run it on its own database and Redis db when other benches may run (it drops both):
BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1/aijobs_bench_streaming
BENCH_REDIS_URL=redis://127.0.0.1:6379/13 (or --database-url, --redis-url).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import psutil
import psycopg
import redis
from httpx_sse import aconnect_sse, connect_sse

from aijobs.streaming.events import stream_key
from bench import common
from cli.dev import wait_ready
from cli.embedded import free_port
from tests.fake_openai import FakeOpenAI

MODEL = "gpt-5-nano"
PACE_S = 0.05
CHUNKS = 5
WARMUP = 10
STAGGER_S = 0.3  # about one request's length: the concurrent threads' first sends spread
TIMEOUT_S = 60.0


@dataclass
class Timing:
    """One request, in seconds from just before it was sent."""

    first_s: float  # the first content chunk, or the first `delta` event
    last_s: float  # the last chunk, or the `done` event
    accepted_s: float = math.nan  # ours: the POST's answer
    job_id: str = ""
    sent_at: float = 0.0  # time.time() when it was sent (to place the worker's claim)
    only_done: bool = False  # ours: the job had ended when its events were first read
    content: str = ""  # ours: the message (the fake's key for the call)
    sent_mono: float = 0.0  # time.monotonic() when it was sent (the fake's clock)


Side = Callable[[str], Timing]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _message(tag: str, name: str) -> str:
    return f"[pace:{PACE_S:g}] [chunks:{CHUNKS}] ttfd {tag} {name}"


def _chunks(stream: openai.Stream[Any], started: float) -> tuple[float, float]:
    """(first content chunk, last chunk), read to the end: the fake logs a broken pipe
    when a stream is dropped, and the next request should not overlap this one."""
    first = math.nan
    for chunk in stream:
        if math.isnan(first) and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


def _sdk_side(sdk: openai.OpenAI, model: str) -> Side:
    def call(content: str) -> Timing:
        sent_at, started = time.time(), time.perf_counter()
        stream = sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], stream=True
        )
        first, last = _chunks(stream, started)
        if math.isnan(first):
            raise RuntimeError(f"no content chunk from {sdk.base_url}")
        return Timing(first, last, sent_at=sent_at)

    return call


def _jobs_side(http: httpx.Client) -> Side:
    """POST /v1/jobs with stream: true, then its events at once, as a client would."""

    def call(content: str) -> Timing:
        body = {
            "model": f"openai/{MODEL}",
            "messages": [{"role": "user", "content": content}],
            "stream": True,
            "cache": False,
        }
        sent_at, sent_mono, started = time.time(), time.monotonic(), time.perf_counter()
        answer = http.post("/v1/jobs", json=body)
        accepted = time.perf_counter() - started
        if answer.status_code not in (200, 201, 202):
            raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:300]}")
        job_id = answer.json()["id"]
        first = math.nan
        with connect_sse(http, "GET", f"/v1/jobs/{job_id}/events") as source:
            if source.response.status_code != 200:
                raise RuntimeError(f"events answered {source.response.status_code}")
            for sse in source.iter_sse():
                if sse.event == "delta" and math.isnan(first):
                    first = time.perf_counter() - started
                elif sse.event == "done":
                    if json.loads(sse.data)["status"] != "succeeded":
                        raise RuntimeError(f"job {job_id} did not succeed: {sse.data[:300]}")
                    break
        last = time.perf_counter() - started
        # A job that has ended when its events are first read answers `done` alone (its
        # text is in the job object): the text came at `done`, and the request is counted.
        only_done = math.isnan(first)
        first = last if only_done else first
        return Timing(first, last, accepted, job_id, sent_at, only_done, content, sent_mono)

    return call


def _front_door_note(base: str, key: str) -> str | None:
    """None when `POST /v1/chat/completions` with stream: true answers server-sent
    events, else why the front door is skipped."""
    body = {
        "model": f"openai/{MODEL}",
        "messages": [{"role": "user", "content": _message(uuid.uuid4().hex, "probe")}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as answer,
    ):
        answer.read()
        kind = answer.headers.get("content-type", "")
        if answer.status_code == 422:
            return "the front door answered 422 to stream: true: skipped"
        if answer.status_code != 200 or not kind.startswith("text/event-stream"):
            return f"the front door answered {answer.status_code} {kind!r}: skipped"
    return None


@dataclass
class Runs:
    """Each side's timings, in request order."""

    sides: dict[str, list[Timing]] = field(default_factory=dict)

    def add(self, name: str, timing: Timing) -> None:
        self.sides.setdefault(name, []).append(timing)


def _sequential(sides: dict[str, Side], tag: str, n: int) -> Runs:
    runs = Runs()
    names = list(sides)
    for i in range(WARMUP + n):
        for name in names if i % 2 == 0 else names[::-1]:
            timing = sides[name](_message(tag, f"{name} {i}"))
            if i >= WARMUP:
                runs.add(name, timing)
    return runs


def _concurrent(sides: dict[str, Side], tag: str, n: int, concurrency: int) -> Runs:
    """`concurrency` requests in flight, each thread sending its next as its last ends
    (the first ones spread over a request's length, so arrivals do not come in
    lockstep); in blocks of n/4 a side, the sides alternating, after a warm-up block."""
    runs = Runs()
    names = list(sides)
    block = max(concurrency, n // 4)
    with ThreadPoolExecutor(concurrency) as pool:
        for r in range(5):
            for name in names if r % 2 == 0 else names[::-1]:

                def send(k: int, name: str = name, r: int = r) -> Timing:
                    if k < concurrency:
                        time.sleep(k * STAGGER_S / concurrency)
                    return sides[name](_message(tag, f"c {name} {r} {k}"))

                timings = list(pool.map(send, range(concurrency if r == 0 else block)))
                if r:
                    for timing in timings:
                        runs.add(name, timing)
    return runs


def _claims(timings: list[Timing]) -> list[float]:
    """Seconds from each submit to the worker's claim (the attempt's start)."""
    sent = {t.job_id: t.sent_at for t in timings}
    ids = ",".join(f"'{job_id}'" for job_id in sent)
    query = f"SELECT job_id, extract(epoch FROM started_at) FROM attempts WHERE job_id IN ({ids})"
    with psycopg.connect(common.libpq_url(common.database_url())) as conn:
        rows = conn.execute(query).fetchall()
    return [float(at) - sent[str(job_id)] for job_id, at in rows]


class Published:
    """When each job's first delta was published (the worker's side of the latency),
    heard on a pattern subscription of this process's own."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}  # job id -> time.time()
        self.client = redis.Redis.from_url(common.redis_url())
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(**{f"{stream_key('')}*": self._heard})
        self.thread = self.pubsub.run_in_thread(sleep_time=0.5, daemon=True)

    def _heard(self, message: dict[str, Any]) -> None:
        at = time.time()
        if b" delta " in message["data"][:32]:
            job_id = message["channel"].decode().removeprefix(stream_key(""))
            self.first.setdefault(job_id, at)

    def since_sent(self, timings: list[Timing]) -> list[float]:
        return [self.first[t.job_id] - t.sent_at for t in timings if t.job_id in self.first]

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(timeout=5)
        self.client.close()


Row = tuple[str, float, float]


def _called(fake: FakeOpenAI, timings: list[Timing]) -> list[float]:
    """Seconds from each submit to the worker's call reaching the fake."""
    return [
        fake.call_times[t.content][0] - t.sent_mono for t in timings if t.content in fake.call_times
    ]


def _latency_rows(
    runs: Runs, label: str, published: Published, fake: FakeOpenAI, *, paired: bool
) -> list[Row]:
    def ms(values: list[float]) -> tuple[float, float]:
        return _pct(values, 0.5) * 1000, _pct(values, 0.99) * 1000

    base = runs.sides["fake"]
    rows: list[Row] = [(f"{label}: fake alone, first chunk", *ms([t.first_s for t in base]))]
    for name, title in (("jobs", "POST /v1/jobs + events"), ("door", "front door")):
        ours = runs.sides.get(name)
        if not ours:
            continue
        first = ms([t.first_s for t in ours])
        if paired:  # request i of each side ran back to back
            added = ms([o.first_s - b.first_s for o, b in zip(ours, base, strict=True)])
        else:
            added = (first[0] - ms([t.first_s for t in base])[0], math.nan)
        rows += [
            (f"{label}: {title}, first delta", *first),
            (f"{label}:   added ({'paired' if paired else 'p50 - p50'})", *added),
        ]
    rows.append((f"{label}: fake alone, last chunk", *ms([t.last_s for t in base])))
    jobs = runs.sides["jobs"]
    rows += [
        (f"{label}: jobs, POST answered", *ms([t.accepted_s for t in jobs])),
        (f"{label}: jobs, claimed by worker", *ms(_claims(jobs))),
        (f"{label}: jobs, provider called", *ms(_called(fake, jobs))),
        (f"{label}: jobs, first delta published", *ms(published.since_sent(jobs))),
        (f"{label}: jobs, `done` event", *ms([t.last_s for t in jobs])),
        (f"{label}: jobs answered `done` alone / of", sum(t.only_done for t in jobs), len(jobs)),
    ]
    return rows


def _cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: of each process (with its children), of this one (the client
    and the fake), of the whole machine (every session on it), and the clock."""
    me = psutil.Process().cpu_times()
    machine = psutil.cpu_times()
    found = {name: _cpu_s(pid) for name, pid in pids.items()}
    return found | {
        "postgres": _postgres_cpu_s(),
        "bench": me.user + me.system,
        "machine": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        "clock": time.monotonic(),
    }


def _postgres_cpu_s() -> float:
    """CPU seconds of the PostgreSQL backends serving the bench database (their titles
    name it), those alive now: a backend that ends within a phase is missed."""
    name = common.libpq_url(common.database_url()).rsplit("/", 1)[1]
    spent = 0.0
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or ())
        if title.startswith("postgres: ") and f" {name} " in title:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                spent += times.user + times.system
    return spent


def _cpu_rows(label: str, before: dict[str, float], after: dict[str, float]) -> list[Row]:
    """CPU used over a phase, in % of a core (200 % on this machine at most)."""

    def used(name: str) -> float:
        return (after[name] - before[name]) / (after["clock"] - before["clock"]) * 100

    return [
        (f"{label}: CPU %, API / worker", used("API"), used("worker")),
        (f"{label}: CPU %, PG (bench db) / bench", used("postgres"), used("bench")),
        (f"{label}: CPU %, whole machine", used("machine"), math.nan),
    ]


def time_to_first_delta(
    children: common.Children, key: str, *, n: int, concurrency: int, worker_processes: int = 1
) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    fake = FakeOpenAI().start()
    published = Published()
    try:
        env = common.bench_env({"OPENAI_API_KEY": "bench-key", "OPENAI_BASE_URL": fake.base_url})
        port = free_port()
        argv = [str(common.VENV_BIN / "aijobs"), "api", "--host", "127.0.0.1", "--port", str(port)]
        api = children.start("api-ttfd", argv, env)
        worker_argv = [str(common.VENV_BIN / "aijobs"), "worker", "--concurrency", "50"]
        worker_argv += ["--processes", str(worker_processes)]
        worker = children.start("worker-ttfd", worker_argv, env)
        pids = {"API": api.pid, "worker": worker.pid}
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", api)
        limits = httpx.Limits(
            max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
        )
        headers = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S, limits=limits) as http,
            openai.OpenAI(base_url=fake.base_url, api_key="bench", max_retries=0) as direct,
            openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as door,
        ):
            sides = {"fake": _sdk_side(direct, MODEL), "jobs": _jobs_side(http)}
            _jobs_side(http)(_message(uuid.uuid4().hex, "worker up"))  # waits for the worker
            note = _front_door_note(base, key)
            if note is None:
                sides["door"] = _sdk_side(door, f"openai/{MODEL}")
            else:
                notes.append(note)
            tag = uuid.uuid4().hex
            print(f"bench: time to first delta, {n} sequential a side", flush=True)
            before = _cpu_now(pids)
            rows = _latency_rows(_sequential(sides, tag, n), "seq", published, fake, paired=True)
            rows += _cpu_rows("seq", before, _cpu_now(pids))
            print(f"bench: time to first delta, {concurrency} in flight", flush=True)
            before = _cpu_now(pids)
            label = f"C={concurrency}"
            runs = _concurrent(sides, tag, n, concurrency)
            rows += _latency_rows(runs, label, published, fake, paired=False)
            rows += _cpu_rows(label, before, _cpu_now(pids))
        return rows, notes
    finally:
        children.stop_all()
        fake.stop()
        published.close()


# 2. Open streams.


def _rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    return float(sum(p.memory_info().rss for p in [process, *process.children(True)])) / 2**20


def _cpu_s(pid: int) -> float:
    process = psutil.Process(pid)
    times = [p.cpu_times() for p in [process, *process.children(True)]]
    return float(sum(t.user + t.system for t in times))


def _peers(pid: int, port: int) -> list[str]:
    """The process's TCP connections to `port`, by their local address."""
    found = psutil.Process(pid).net_connections(kind="tcp")
    return [f"{c.laddr.ip}:{c.laddr.port}" for c in found if c.raddr and c.raddr.port == port]


def _redis_connections(client: redis.Redis, pid: int, port: int) -> tuple[int, int, int]:
    """(the API's Redis connections, how many are subscribed, the channels they hold)."""
    mine = set(_peers(pid, port))
    listed = [c for c in client.client_list() if c["addr"] in mine]
    subscribed = [c for c in listed if int(c.get("sub", 0))]
    return len(mine), len(subscribed), sum(int(c["sub"]) for c in subscribed)


def _xranges(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


def _pg_counters() -> tuple[int, int]:
    """The bench database's transactions and sessions (connections) so far."""
    name = common.libpq_url(common.database_url()).rsplit("/", 1)[1]
    with psycopg.connect(common.libpq_url(common.database_url()), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


@dataclass
class Held:
    """An asyncio loop in a thread holding SSE connections open, opened `wave` at a
    time (each wave past its first events before the next; 0: all at once)."""

    base: str
    key: str
    ids: list[str]
    wave: int = 0
    opened: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    first: int = 0  # streams past their first event
    failed: int = 0  # streams that ended in an error before their first event
    dropped: int = 0  # ... after it, while held
    errors: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def __enter__(self) -> Held:
        self.thread = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)
        self.thread.start()
        self.opened.wait()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        if self.thread is not None:
            self.thread.join()

    async def _one(self, client: httpx.AsyncClient, job_id: str) -> None:
        seen = False
        try:
            async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
                if source.response.status_code != 200:
                    raise RuntimeError(f"events answered {source.response.status_code}")
                async for sse in source.aiter_sse():
                    if not seen:
                        seen, self.first = True, self.first + 1
                    if sse.event == "done":
                        raise RuntimeError(f"job {job_id} ended: {sse.data[:200]}")
            raise RuntimeError("the stream ended")
        except Exception as exc:  # counted: a failure is a figure here
            if seen:
                self.dropped += 1
            else:
                self.failed += 1
            if len(self.errors) < 3:
                self.errors.append(repr(exc))

    async def _hold(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(TIMEOUT_S, read=None, pool=None)
        headers = {"Authorization": f"Bearer {self.key}"}
        async with httpx.AsyncClient(
            base_url=self.base, headers=headers, limits=limits, timeout=timeout
        ) as client:
            tasks: list[asyncio.Task[None]] = []
            step = self.wave or len(self.ids)
            deadline = time.monotonic() + 300
            for start in range(0, len(self.ids), step):
                tasks += [
                    asyncio.create_task(self._one(client, job_id))
                    for job_id in self.ids[start : start + step]
                ]
                while self.first + self.failed < len(tasks) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            self.opened.set()
            while not self.release.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _queued_jobs(base: str, key: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    tag = uuid.uuid4().hex
    ids = []
    with httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT_S) as http:
        for n in range(count):
            body = {"model": "sim/echo", "messages": [{"role": "user", "content": f"{tag} {n}"}]}
            answer = http.post("/v1/jobs", json=body)
            answer.raise_for_status()
            ids.append(answer.json()["id"])
    return ids


@contextlib.contextmanager
def _api(children: common.Children, name: str, pool: int = 0) -> Iterator[tuple[str, int]]:
    """A fresh `aijobs api` process (no worker runs: the jobs stay queued); pool: the
    most connections each of its Redis clients' pools may open (redis-py's default,
    100, when 0). It goes in the URL, which kombu's publisher refuses: only for
    processes that submit nothing."""
    port = free_port()
    argv = [str(common.VENV_BIN / "aijobs"), "api", "--host", "127.0.0.1", "--port", str(port)]
    url = common.redis_url()
    if pool:
        url += f"{'&' if '?' in url else '?'}max_connections={pool}"
    api = children.start(name, argv, common.bench_env({"AIJOBS_REDIS_URL": url}))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", api)
        yield base, api.pid
    finally:
        children.stop(api)


class _Probe:
    """What the API process holds and spends, read from outside it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.redis = redis.Redis.from_url(common.redis_url())
        self.redis_port = int(self.redis.connection_pool.connection_kwargs.get("port", 6379))

    def connections(self) -> tuple[int, int, int]:
        return _redis_connections(self.redis, self.pid, self.redis_port)

    def sample(self, window_s: float) -> dict[str, float]:
        """Over the window, a second: CPU (in % of a core) of the API, of the Redis
        server (shared with any other user of it) and of this process; XRANGE calls,
        PostgreSQL transactions and new connections; then the API's PostgreSQL
        connections. (Not PostgreSQL's CPU: backends that come and go are missed.)"""
        me, server = psutil.Process(), psutil.Process(int(self.redis.info("server")["process_id"]))

        def now() -> dict[str, float]:
            mine, redis_cpu = me.cpu_times(), server.cpu_times()
            transactions, sessions = _pg_counters()
            return {
                "api": _cpu_s(self.pid) * 100,
                "redis": (redis_cpu.user + redis_cpu.system) * 100,
                "bench": (mine.user + mine.system) * 100,
                "xrange": _xranges(self.redis),
                "transactions": transactions,
                "sessions": sessions,
            }

        before = now()
        time.sleep(window_s)
        after = now()
        rates = {name: (after[name] - before[name]) / window_s for name in after}
        return rates | {"pg_conns": len(_peers(self.pid, 5432))}


def open_streams_cost(
    children: common.Children, key: str, *, streams: int, wave: int, window_s: float, pool: int
) -> list[Row]:
    """The API's memory, connections and idle CPU with `streams` open event streams;
    first, whether one fresh API process takes that many opened at once."""
    with _api(children, "api-jobs") as (base, _):
        ids = _queued_jobs(base, key, streams + 20)
    print(f"bench: {streams} event streams opened at once", flush=True)
    with _api(children, "api-burst", pool) as (base, pid):
        started = time.monotonic()
        with Held(base, key, ids[:streams]) as burst:
            burst_s = time.monotonic() - started
            burst_redis = _Probe(pid).connections()
    print(f"bench: {streams} event streams opened {wave} at a time", flush=True)
    with _api(children, "api-streams", pool) as (base, pid):
        probe = _Probe(pid)
        with Held(base, key, ids[streams:], wave=1):  # warm-up: the code paths run once
            pass
        time.sleep(12)  # PostgreSQL 15 flushes an idle backend's statistics up to 10 s late
        rss_before, redis_before = _rss_mib(pid), probe.connections()
        idle = probe.sample(window_s)
        started = time.monotonic()
        with Held(base, key, ids[:streams], wave=wave) as held:
            opened_s = time.monotonic() - started
            time.sleep(5)  # the followers' quiet pauses grow to their 2 s
            rss_open, redis_open = _rss_mib(pid), probe.connections()
            open_now = held.first - held.dropped
            busy = probe.sample(window_s)
        time.sleep(3)
        rss_closed = _rss_mib(pid)
        probe.redis.close()
    for who, run in (("at once", burst), (f"{wave} at a time", held)):
        if run.errors:
            print(f"bench: streams opened {who}: first errors {run.errors}")
    per_1000 = (rss_open - rss_before) / max(open_now, 1) * 1000
    nan = math.nan
    return [
        (f"at once: streams failed / of {streams}", burst.failed, streams),
        ("at once: s to open", burst_s, nan),
        ("at once: API Redis conns / subscribed", burst_redis[0], burst_redis[1]),
        (f"{wave} at a time: failed / dropped held", held.failed, held.dropped),
        (f"{wave} at a time: s to open", opened_s, nan),
        ("streams open when RSS was read / of", open_now, streams),
        ("API RSS MiB: none open / all open", rss_before, rss_open),
        ("API RSS MiB per 1,000 open streams", per_1000, nan),
        ("API RSS MiB after closing them", rss_closed, nan),
        ("API Redis conns: none open / all open", redis_before[0], redis_open[0]),
        ("  subscribed conns / their channels", redis_open[1], redis_open[2]),
        ("API PostgreSQL conns: none / all open", idle["pg_conns"], busy["pg_conns"]),
        ("API CPU %: none / all open", idle["api"], busy["api"]),
        ("Redis server CPU %: none / all open", idle["redis"], busy["redis"]),
        ("bench client CPU %: none / all open", idle["bench"], busy["bench"]),
        ("XRANGE/s in Redis: none / all open", idle["xrange"], busy["xrange"]),
        ("PG transactions/s: none / all open", idle["transactions"], busy["transactions"]),
        ("PG new connections/s: none / all open", idle["sessions"], busy["sessions"]),
    ]


def _cli(*args: str) -> str:
    argv = [str(common.VENV_BIN / "aijobs"), *args]
    done = subprocess.run(
        argv, cwd=common.ROOT, env=common.bench_env(), capture_output=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        raise SystemExit(f"`aijobs {' '.join(args)}` failed ({done.returncode})")
    return done.stdout.decode()


def _table(rows: list[Row]) -> str:
    def cell(value: float) -> str:
        return "" if math.isnan(value) else f"{value:.1f}"

    lines = [f"{'figure':<44}{'p50 / value':>12}{'p99 / 2nd':>12}"]
    lines += [f"{name:<44}{cell(a):>12}{cell(b):>12}" for name, a, b in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streaming",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=200, help="requests a side, after a warm-up")
    parser.add_argument("--concurrency", type=int, default=20, help="the concurrent variant")
    parser.add_argument(
        "--worker-processes", type=int, default=1, help="`aijobs worker --processes` (part 1)"
    )
    parser.add_argument("--streams", type=int, default=1000, help="event streams held open")
    parser.add_argument("--wave", type=int, default=50, help="streams opened at a time")
    parser.add_argument("--window", type=float, default=20.0, help="s of CPU sampled")
    parser.add_argument(
        "--redis-max-connections",
        type=int,
        default=0,
        help="diagnostic: lift the stream-holding API's Redis pools to this many connections",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--database-url", default=common.database_url())
    parser.add_argument("--redis-url", default=common.redis_url())
    args = parser.parse_args(argv)
    os.environ["BENCH_DATABASE_URL"] = args.database_url
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    os.environ.update(common.bench_env())
    children = common.Children()
    rows: list[Row] = []
    notes: list[str] = []
    print(f"bench: logs in {children.log_dir}", flush=True)
    try:
        common.fresh_database()
        common.flush_redis()
        _cli("migrate")
        key = str(
            json.loads(_cli("keys", "create", "--tenant", "bench").splitlines()[-1])["api_key"]
        )
        if not args.skip_latency:
            found, notes = time_to_first_delta(
                children,
                key,
                n=args.n,
                concurrency=args.concurrency,
                worker_processes=args.worker_processes,
            )
            rows += found
            print(_table(rows), flush=True)  # kept if the second part fails
        if not args.skip_streams:
            rows += open_streams_cost(
                children,
                key,
                streams=args.streams,
                wave=args.wave,
                window_s=args.window,
                pool=args.redis_max_connections,
            )
    finally:
        children.stop_all()
    print()
    print(_table(rows))
    for note in notes:
        print(f"note: {note}")
    print(f"(the fake waits {PACE_S * 1000:g} ms before each of {CHUNKS} chunks; ms unless said)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
