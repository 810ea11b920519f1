"""Checks on a prompt version apply to its jobs; the prompt's stats give the share of
jobs whose checks passed; /metrics counts check failures by prompt and check type."""

from __future__ import annotations

import httpx

from cli.embedded import free_port
from tests.conftest import Client
from tests.helpers import unique
from tests.prompts.test_versions import create, put_label, unique_name, version_body
from tests.stack import Stack
from tests.test_observability import _metric

YES_OR_NO = {"type": "one_of", "values": ["yes", "no"], "on_fail": "fail"}


def test_a_versions_checks_run_on_its_jobs(live: Stack, client: Client) -> None:
    live.kill_workers()
    port = free_port()
    live.start_worker(env={"AIJOBS_WORKER_METRICS_PORT": str(port)})
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    before = httpx.get(metrics_url).text

    name = unique_name()
    create(client, name, version_body("Decide: {{q}}", checks=[YES_OR_NO]))
    put_label(client, name, "production", {"version": 1})
    jobs = []
    for reply in ("yes", "perhaps", "no", "dunno"):
        q = unique(f"[reply:{reply}]")
        response = client.submit({"prompt": {"name": name, "variables": {"q": q}}})
        assert response.status_code == 202, response.text
        jobs.append(client.wait(response.json()["id"]))
    assert [job["status"] for job in jobs] == ["succeeded", "failed", "succeeded", "failed"]
    assert all(job["checks"][0]["type"] == "one_of" for job in jobs)
    assert jobs[1]["error"]["code"] == "check_failed"

    # The request's own checks replace the version's.
    q = unique("[reply:perhaps]")
    own = client.submit(
        {
            "prompt": {"name": name, "variables": {"q": q}},
            "checks": [{"type": "contains", "value": "perhaps"}],
        }
    )
    assert client.wait(own.json()["id"])["status"] == "succeeded"

    stats = client.http.get(f"/v1/prompts/{name}/stats").json()
    [version] = stats["versions"]
    assert version["jobs"] == 5 and version["checks_passed"] == 0.6

    after = httpx.get(metrics_url).text
    labels = {"prompt": name, "type": "one_of"}
    failures = "aijobs_check_failures_total"
    assert _metric(after, failures, **labels) - _metric(before, failures, **labels) == 2
