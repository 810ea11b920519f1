"""Batches on the admin page in headless Chromium: every tenant's batches newest first
with a server-drawn progress bar, counts by status and cost, filtered by tenant; a
batch's page with its first jobs linking to their job pages; and /admin/batches (JSON)
behind the admin token."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.admin import test_admin_page
from tests.batches.test_batches import _post, _wait_ended
from tests.conftest import Client
from tests.helpers import chat, unique
from tests.stack import ADMIN_TOKEN, ARTIFACTS, Stack

browser = test_admin_page.browser
page = test_admin_page.page
_log_in = test_admin_page._log_in
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _lines(prefix: str, ok: int, failing: int = 0) -> list[dict[str, Any]]:
    lines = [{"custom_id": f"{prefix}-{i}", **chat(unique(prefix))} for i in range(ok)]
    lines += [
        {"custom_id": f"{prefix}-bad-{i}", **chat(unique("[status:400] refused"))}
        for i in range(failing)
    ]
    return lines


def test_the_batches_list_and_a_batchs_page(make_client: Callable[..., Client], page: Any) -> None:
    first, second = make_client(), make_client()
    older = _post(first, {"jobs": _lines("older", 2)}).json()
    mixed = _post(first, {"jobs": _lines("mixed", 3, failing=1)}).json()
    other = _post(second, {"jobs": _lines("other", 1)}).json()
    for client, batch in ((first, older), (first, mixed), (second, other)):
        _wait_ended(client, batch["id"])
    done = first.http.get(f"/v1/batches/{mixed['id']}").json()
    assert done["counts"]["succeeded"] == 3 and done["counts"]["failed"] == 1

    _log_in(page)
    page.click("header a[href='/admin/ui/batches']")
    listed = page.locator("#batches tr.batch").evaluate_all(
        "rows => rows.map(r => r.dataset.batch)"
    )
    # Every tenant's, newest first.
    assert listed.index(other["id"]) < listed.index(mixed["id"]) < listed.index(older["id"])

    page.fill("#filter input[name=tenant]", first.tenant)
    page.click("#filter button[type=submit]")
    rows = page.locator("#batches tr.batch")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.batch)") == [
        mixed["id"],
        older["id"],
    ]
    row = page.locator(f"#batches tr.batch[data-batch='{mixed['id']}']")
    assert row.locator("td.status").inner_text() == "completed"
    assert row.locator("td.pct, span.pct").inner_text() == "4/4 (100%)"
    counts = [row.locator(f"td.{name}").inner_text() for name in ("succeeded", "failed", "total")]
    assert counts == ["3", "1", "4"]
    assert row.locator("td.cost").inner_text() == done["cost_usd"]
    assert row.locator(".bar .succeeded").get_attribute("style") == "width: 75.0%"
    assert row.locator(".bar .failed").get_attribute("style") == "width: 25.0%"
    assert page.locator("script").count() == 0  # drawn by the server
    page.screenshot(path=str(ARTIFACTS / "admin-page-batches.png"), full_page=True)

    row.locator("td.id a").click()
    assert page.inner_text("#batch-id") == mixed["id"]
    assert page.inner_text("#tenant") == first.tenant
    assert page.inner_text("#status") == "completed"
    assert page.inner_text("#cost") == done["cost_usd"]
    jobs = page.locator("#jobs tr.job")
    assert jobs.evaluate_all("rows => rows.map(r => r.dataset.customId)") == [
        "mixed-0",
        "mixed-1",
        "mixed-2",
        "mixed-bad-0",
    ]
    bad = page.locator("#jobs tr.job[data-custom-id='mixed-bad-0']")
    assert "failed" in bad.locator("td.status").inner_text()
    bad.locator("td.job-id a").click()
    assert page.inner_text("#status") == "failed"
    assert page.inner_text("#priority") == "batch"
    page.click("#batch a")  # and back from the job to its batch
    assert page.inner_text("#batch-id") == mixed["id"]


def test_the_admin_batch_routes(live: Stack, make_client: Callable[..., Client], page: Any) -> None:
    client = make_client()
    batch = _post(client, {"jobs": _lines("json", 3)}).json()
    _wait_ended(client, batch["id"])
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.get("/admin/batches").status_code == 401
        as_tenant = {"Authorization": f"Bearer {client.api_key}"}
        assert http.get("/admin/batches", headers=as_tenant).status_code == 403
        assert http.get(f"/admin/batches/{batch['id']}", headers=as_tenant).status_code == 403

        listed = http.get("/admin/batches", params={"tenant": client.tenant}, headers=ADMIN)
        assert listed.status_code == 200, listed.text
        (found,) = listed.json()["data"]
        assert found["id"] == batch["id"] and found["tenant"] == client.tenant
        assert found["counts"]["succeeded"] == 3

        one = http.get(f"/admin/batches/{batch['id']}", params={"jobs": 2}, headers=ADMIN)
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["status"] == "completed" and body["tenant"] == client.tenant
        assert [job["custom_id"] for job in body["jobs"]] == ["json-0", "json-1"]
        assert all(job["priority"] == "batch" for job in body["jobs"])

        missing = http.get(f"/admin/batches/{uuid.uuid4()}", headers=ADMIN)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert http.get("/admin/batches/nope", headers=ADMIN).status_code == 404
        bad_cursor = http.get("/admin/batches", params={"cursor": "x"}, headers=ADMIN)
        assert bad_cursor.status_code == 422

    _log_in(page)
    page.goto(f"/admin/ui/batches/{uuid.uuid4()}")
    assert "no batch" in page.inner_text("#action-error")
    page.goto("/admin/ui/batches?cursor=garbage")
    assert page.locator("p.error").count() == 1
