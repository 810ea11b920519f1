"""Admin: triage failed jobs and re-run them, by API and CLI; tenants and the audit log."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Client, Services
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import AIJOBS, Stack, child_env


def _failed_job(client: Client, message: str, **extra: Any) -> dict[str, Any]:
    done = client.wait(client.submit(chat(message, **extra)).json()["id"])
    assert done["status"] == "failed", done
    return done


def test_admin_routes_need_the_admin_token(live: Stack, client: Client) -> None:
    for headers, status in (
        ({}, 401),
        ({"Authorization": f"Bearer {client.api_key}"}, 403),
        ({"Authorization": "Bearer nope"}, 403),
    ):
        response = httpx.get(live.base_url + "/admin/jobs", headers=headers)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"


def test_admin_api_is_off_without_a_token(live: Stack) -> None:
    env = {k: v for k, v in live.env.items() if k != "AIJOBS_ADMIN_TOKEN"}
    bare = Stack(env, name="no-admin")
    bare.start_api()
    try:
        response = httpx.get(
            bare.base_url + "/admin/jobs", headers={"Authorization": "Bearer anything"}
        )
        assert response.status_code == 404
    finally:
        bare.stop()


def test_list_failed_jobs_with_counts_and_attempts(client: Client, admin: httpx.Client) -> None:
    failed = _failed_job(client, unique("[fail:500x9] broken"), max_attempts=3)
    _failed_job(client, unique("[status:400] refused"))
    listing = admin.get("/admin/jobs", params={"tenant": client.tenant, "status": "failed"})
    assert listing.status_code == 200
    body = listing.json()
    assert {job["tenant"] for job in body["data"]} == {client.tenant}
    assert len(body["data"]) == 2
    assert body["counts_by_error_code"] == {"provider_error": 2}
    attempts = admin.get(f"/admin/jobs/{failed['id']}/attempts").json()["data"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert {a["outcome"] for a in attempts} == {"failed"}
    assert all(a["http_status"] == 500 and a["latency_ms"] is not None for a in attempts)


def test_rerun_of_a_job_that_failed_three_times_and_now_succeeds(
    client: Client, admin: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[fail:500x3] flaky hour")
    failed = _failed_job(client, message, max_attempts=3)
    assert failed["attempts"] == 3
    response = admin.post(f"/admin/jobs/{failed['id']}/rerun")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    done = client.wait(failed["id"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 4
    history = admin.get(f"/admin/jobs/{failed['id']}/attempts").json()["data"]
    assert [a["outcome"] for a in history] == ["failed", "failed", "failed", "succeeded"]
    assert fake_openai.count(message) == 4
    again = admin.post(f"/admin/jobs/{done['id']}/rerun")  # a success may re-run: cache hit
    assert again.status_code == 202
    assert client.wait(done["id"])["cache_hit"] is True
    assert fake_openai.count(message) == 4


def test_rerunning_an_unfinished_job_is_a_conflict(client: Client, admin: httpx.Client) -> None:
    job = client.submit(chat(unique("[sleep:2] busy"))).json()
    response = admin.post(f"/admin/jobs/{job['id']}/rerun")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_request"


def test_bulk_rerun_dry_run_then_for_real(
    make_client: Callable[..., Client], admin: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    client = make_client()
    messages = [unique(f"[fail:500x1] batch {i}") for i in range(3)]
    ids = {_failed_job(client, m, max_attempts=1)["id"] for m in messages}
    filters = {"tenant": client.tenant, "error_code": "provider_error"}
    dry = admin.post("/admin/jobs/rerun", json={**filters, "dry_run": True}).json()
    assert dry["count"] == 3 and set(dry["ids"]) == ids
    assert {client.http.get(f"/v1/jobs/{i}").json()["status"] for i in ids} == {"failed"}
    assert sum(fake_openai.count(m) for m in messages) == 3

    real = admin.post("/admin/jobs/rerun", json=filters).json()
    assert real["count"] == 3 and real["requeued"] == 3 and real["skipped"] == {}
    assert {client.wait(i)["status"] for i in ids} == {"succeeded"}
    assert sum(fake_openai.count(m) for m in messages) == 6
    log = admin.get("/admin/audit").json()["data"]
    assert any(entry["action"] == "jobs.rerun" and entry["detail"]["count"] == 3 for entry in log)


def test_a_job_rerun_twice_at_once_runs_once(
    client: Client, admin: httpx.Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[sleep:0.5] [fail:500x1] twice")
    failed = _failed_job(client, message, max_attempts=1)
    with ThreadPoolExecutor(2) as pool:
        codes = sorted(
            pool.map(lambda _: admin.post(f"/admin/jobs/{failed['id']}/rerun").status_code, [1, 2])
        )
    assert codes == [202, 409]
    done = client.wait(failed["id"])
    assert done["status"] == "succeeded"
    # One re-run, one claim: the job is terminal, so no further call can be made.
    assert done["attempts"] == 2
    assert fake_openai.count(message) == 2


def test_cli_lists_and_reruns(
    make_client: Callable[..., Client], services: Services, fake_openai: FakeOpenAI
) -> None:
    client = make_client()
    message = unique("[fail:503x1] cli")
    failed = _failed_job(client, message, max_attempts=1)
    env = child_env(services.database_url, services.redis_url)

    def aijobs(*args: str) -> str:
        done = subprocess.run([*AIJOBS, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = aijobs("jobs", "list", "--status", "failed", "--tenant", client.tenant)
    assert failed["id"] in listed and "provider_error 1" in listed
    dry = json.loads(aijobs("rerun", "--tenant", client.tenant, "--dry-run").splitlines()[-1])
    assert dry["count"] == 1 and dry["ids"] == [failed["id"]]
    real = json.loads(aijobs("rerun", "--tenant", client.tenant).splitlines()[-1])
    assert real["requeued"] == 1
    assert client.wait(failed["id"])["status"] == "succeeded"
    one = json.loads(aijobs("rerun", "--job", failed["id"]).splitlines()[-1])
    assert one["count"] == 1  # a success re-runs as a cache hit
    assert fake_openai.count(message) == 2


def test_tenants_budgets_rpm_and_keys(live: Stack, admin: httpx.Client) -> None:
    name = unique("acme")
    created = admin.post("/admin/tenants", json={"name": name, "daily_budget_usd": "2.5"})
    assert created.status_code == 201
    tenant = created.json()
    assert tenant["budget"]["daily"]["limit"] == "2.5"
    key = tenant["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(live.base_url + "/v1/jobs", headers=headers).status_code == 200

    patched = admin.patch(f"/admin/tenants/{name}", json={"rpm": 100, "daily_budget_usd": None})
    assert patched.json()["rpm"] == 100
    assert patched.json()["budget"]["daily"]["limit"] is None
    extra = admin.post(f"/admin/tenants/{tenant['id']}/keys").json()["api_key"]
    assert extra != key
    key_id = admin.get(f"/admin/tenants/{name}").json()["keys"][0]["id"]
    revoked = admin.post(f"/admin/tenants/{name}/keys/{key_id}/revoke")
    assert revoked.json()["revoked_at"] is not None
    assert httpx.get(live.base_url + "/v1/jobs", headers=headers).status_code == 401
    other = {"Authorization": f"Bearer {extra}"}
    assert httpx.get(live.base_url + "/v1/jobs", headers=other).status_code == 200
    assert admin.get("/admin/tenants/no-such-tenant").status_code == 404
    actions = [entry["action"] for entry in admin.get("/admin/audit").json()["data"]]
    assert {"tenant.create", "tenant.update", "key.create", "key.revoke"} <= set(actions)


def test_a_bulk_rerun_needs_a_filter(client: Client, admin: httpx.Client) -> None:
    failed = _failed_job(client, unique("[status:400] stays failed"))
    for body in ({}, {"dry_run": True}, {"status": None}, {"ids_limit": 5}):
        response = admin.post("/admin/jobs/rerun", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_request"
        assert "needs at least one filter" in response.json()["detail"]
    # Nothing was re-queued, and nothing was written to the audit log.
    job = client.http.get(f"/v1/jobs/{failed['id']}").json()
    assert (job["status"], job["attempts"]) == ("failed", failed["attempts"])
    log = admin.get("/admin/audit").json()["data"]
    assert not any(failed["id"] in entry["detail"].get("ids", []) for entry in log)
    # One filter is enough; status, when not sent, is failed.
    dry = admin.post("/admin/jobs/rerun", json={"tenant": client.tenant, "dry_run": True})
    assert dry.status_code == 200 and dry.json()["ids"] == [failed["id"]]
