"""One worker process holds hundreds of provider calls in flight on its call loop,
with a handful of threads, through the real OpenAI SDK; each call is made once."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import Stack

CALLS = 300
MODEL = "gpt-5-nano"  # no other test calls it: the fake's in-flight peak is ours alone


def test_one_process_holds_hundreds_of_calls_in_flight_on_few_threads(
    live: Stack, client: Client, fake_openai: FakeOpenAI, db: psycopg.Connection[Any]
) -> None:
    live.kill_workers(signal.SIGTERM)
    supervisor = live.start_worker(concurrency=CALLS)
    messages = [unique(f"[sleep:6] loop {n}") for n in range(CALLS)]
    try:
        with ThreadPoolExecutor(16) as pool:
            responses = list(
                pool.map(lambda m: client.submit(chat(m, model=f"openai/{MODEL}")), messages)
            )
        assert all(r.status_code == 202 for r in responses)
        ids = [r.json()["id"] for r in responses]
        (worker,) = psutil.Process(supervisor.pid).children()
        deadline = time.monotonic() + 30
        threads = 0
        while fake_openai.in_flight[MODEL] < CALLS * 0.8:
            assert time.monotonic() < deadline, fake_openai.in_flight[MODEL]
            threads = max(threads, worker.num_threads())
            time.sleep(0.1)
        threads = max(threads, worker.num_threads())
        # A thread a call would be hundreds; the loop needs its consumer, the loop,
        # a few database threads, the maintenance loop and the SDK's DNS helpers.
        assert threads < 50, threads
        done = [client.wait(job_id, timeout_s=60) for job_id in ids]
        assert all(job["status"] == "succeeded" for job in done)
        assert fake_openai.max_in_flight[MODEL] >= CALLS * 0.8
        assert all(fake_openai.count(m) == 1 for m in messages)
        attempts = db.execute(
            "SELECT count(*), count(DISTINCT job_id) FROM attempts WHERE job_id = ANY(%s::uuid[])",
            (ids,),
        ).fetchone()
        assert attempts == (CALLS, CALLS)
    finally:
        live.kill_workers(signal.SIGTERM)
