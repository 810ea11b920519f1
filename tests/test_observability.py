"""What an operator sees: metrics that move, JSON logs with the job, Sentry events
tagged and scrubbed, readiness, and a graceful worker shutdown."""

from __future__ import annotations

import json
import re
import signal
from typing import Any

import httpx

from cli.embedded import free_port
from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.fake_sentry import FakeSentry
from tests.helpers import chat, job_status, unique, wait_for_call, wait_until
from tests.stack import ARTIFACTS, Stack


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_for(check: Any, timeout_s: float = 60) -> Any:
    return wait_until(check, timeout_s, interval_s=0.2)


def test_metrics_move_as_jobs_run(live: Stack, client: Client) -> None:
    live.kill_workers()
    port = free_port()
    live.start_worker(env={"AIJOBS_WORKER_METRICS_PORT": str(port)})
    worker_metrics = f"http://127.0.0.1:{port}/metrics"
    api_before = httpx.get(live.base_url + "/metrics").text
    worker_before = httpx.get(worker_metrics).text

    ids = [client.submit(chat(unique("measured"))).json()["id"] for _ in range(3)]
    for job_id in ids:
        assert client.wait(job_id)["status"] == "succeeded"
    client.submit(chat(unique("[status:400] refused"))).json()
    api_after = httpx.get(live.base_url + "/metrics").text
    submitted = "aijobs_jobs_submitted_total"
    labels = {"model": "openai/gpt-4o-mini", "outcome": "queued"}
    assert _metric(api_after, submitted, **labels) - _metric(api_before, submitted, **labels) == 4
    assert "aijobs_queue_depth" in api_after and "aijobs_queue_oldest_age_seconds" in api_after

    def finished() -> str | None:
        text = httpx.get(worker_metrics).text
        failed = _metric(text, "aijobs_jobs_finished_total", status="failed")
        return (
            text
            if failed > _metric(worker_before, "aijobs_jobs_finished_total", status="failed")
            else None
        )

    worker_after = _wait_for(finished)
    name = "aijobs_jobs_finished_total"
    ok = {"status": "succeeded"}
    assert _metric(worker_after, name, **ok) - _metric(worker_before, name, **ok) == 3
    calls = "aijobs_provider_call_seconds_count"
    model = {"model": "openai/gpt-4o-mini"}
    assert _metric(worker_after, calls, **model) - _metric(worker_before, calls, **model) == 4
    spend = "aijobs_spend_usd_total"
    assert _metric(worker_after, spend, **model) > _metric(worker_before, spend, **model)
    ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_log_lines_are_json_and_carry_the_job(live: Stack, client: Client) -> None:
    response = client.submit(chat(unique("logged")), headers={"X-Request-ID": "req-abc-123"})
    assert response.headers["x-request-id"] == "req-abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", client.http.get("/healthz").headers["x-request-id"])
    job_id = response.json()["id"]
    assert client.wait(job_id)["status"] == "succeeded"

    def line_for_job() -> dict[str, Any] | None:
        for path in sorted(ARTIFACTS.glob(live.log_path("worker*").name)):
            for raw in path.read_text(errors="replace").splitlines():
                if job_id in raw and raw.startswith("{"):
                    record: dict[str, Any] = json.loads(raw)
                    if record.get("job_id") == job_id:
                        return record
        return None

    record = _wait_for(line_for_job)
    assert record["status"] == "succeeded"
    assert record["model"] == "openai/gpt-4o-mini"
    assert record["attempt"] == 1 and "latency_ms" in record and "cost_usd" in record
    for raw in live.log_path("api").read_text(errors="replace").splitlines()[-50:]:
        if raw.startswith("{"):
            json.loads(raw)


def test_sentry_events_are_tagged_and_scrubbed(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    sentry = FakeSentry()
    try:
        live.kill_workers()
        live.start_worker(env={"SENTRY_DSN": sentry.dsn})
        secret_prompt = unique("[broken] my secret prompt")
        job = client.wait(client.submit(chat(secret_prompt, max_attempts=1)).json()["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "provider_error"
        text = _wait_for(lambda: sentry.text() if '"event_id"' in sentry.text() else None)
        assert f'"job_id":"{job["id"]}"' in text.replace(" ", "")
        assert '"model":"openai/gpt-4o-mini"' in text.replace(" ", "")
        assert '"attempt":"1"' in text.replace(" ", "")
        assert "my secret prompt" not in text
        assert client.api_key not in text
        assert "AttributeError" in text
        # An expected outcome (a provider 4xx) is not an error report. The worker's
        # SDK sends its events in order: once the next real error's event is in, any
        # event about the 4xx would be in too.
        before = len(sentry.envelopes)
        refused = client.wait(client.submit(chat(unique("[status:400] no"))).json()["id"])
        assert refused["status"] == "failed"
        marker = client.wait(
            client.submit(chat(unique("[broken] the next error"), max_attempts=1)).json()["id"]
        )
        marker_id = f'"job_id":"{marker["id"]}"'

        def since_before() -> list[bytes]:
            return [e for e in sentry.envelopes[before:] if b'"level":"error"' in e]

        _wait_for(lambda: any(marker_id in e.decode().replace(" ", "") for e in since_before()))
        late = [e for e in since_before() if marker_id not in e.decode().replace(" ", "")]
        assert late == [], late[0][:3000]
    finally:
        live.kill_workers()
        sentry.stop()


def test_sigterm_during_a_call_finishes_the_job_once(
    live: Stack, client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:2] graceful")
    job = client.submit(chat(message)).json()
    wait_for_call(fake_openai, message)  # the call is in flight
    live.kill_workers(signal.SIGTERM)  # warm shutdown: waits for the call in flight
    done = job_status(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    # Every worker has exited and the job is terminal: no call can follow.
    assert fake_openai.count(message) == 1


def test_not_ready_when_the_database_is_unreachable(live: Stack) -> None:
    env = {**live.env, "AIJOBS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    broken = Stack(env, name="no-db")
    broken.start_api(ready_path="/healthz")
    try:
        ready = httpx.get(broken.base_url + "/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert ready.json()["checks"]["database"].startswith("unreachable")
        assert httpx.get(broken.base_url + "/healthz").status_code == 200
    finally:
        broken.stop()
