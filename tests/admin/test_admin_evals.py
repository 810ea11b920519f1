"""Evals on the admin page in headless Chromium: every tenant's evals, filtered by tenant;
an eval's page with its candidates side by side item by item (regressions first, failures
highlighted, each cell linking to its job), a server-drawn SVG chart of pass rate and
cost, an output holding markup shown as text; and /admin/evals (JSON) behind the admin
token, the pages behind a login."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.admin import test_admin_page
from tests.conftest import Client
from tests.helpers import wait_until
from tests.prompts.test_versions import create, put_label, unique_name
from tests.stack import ADMIN_TOKEN, ARTIFACTS, Stack

browser = test_admin_page.browser
page = test_admin_page.page
_log_in = test_admin_page._log_in
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOSTILE = "<script>alert('eval')</script><img src=x id='eval-img'>"


def user_prompt(content: str) -> dict[str, Any]:
    """A version whose one message is the user's: the fake provider answers
    "echo: <the rendered message>" (or the text of a [reply:...] in it)."""
    return {"messages": [{"role": "user", "content": content}], "model": "openai/gpt-4o-mini"}


def make_prompt(client: Client) -> str:
    """Version 1 (labelled production) echoes the item's text; version 2 always answers
    "nope"."""
    name = unique_name("summarise")
    create(client, name, user_prompt("{{text}}"))
    create(client, name, user_prompt("[reply:nope] {{text}}"))
    assert put_label(client, name, "production", {"version": 1}).status_code == 200
    return name


def items(tag: str) -> dict[str, dict[str, Any]]:
    """Four items, in the order they are added. Against equals_expected: `both` fails on
    both versions, `better` passes only on v2; `plain` and `hostile` pass on v1 and fail
    on v2: the regressions, added last so that putting them first is the page's doing."""
    text = {key: f"{key} {tag}" for key in ("both", "better", "plain")}
    text["hostile"] = f"{HOSTILE} {tag}"
    return {
        "both": {"variables": {"text": text["both"]}, "expected": "something else"},
        "better": {"variables": {"text": text["better"]}, "expected": "nope"},
        "plain": {"variables": {"text": text["plain"]}, "expected": f"echo: {text['plain']}"},
        "hostile": {
            "variables": {"text": text["hostile"]},
            "expected": f"echo: {text['hostile']}",
        },
    }


def make_dataset(client: Client) -> tuple[str, dict[str, str]]:
    """A dataset of the four items, through the tenant API; its name and the item ids."""
    name = unique_name("ds")
    created = client.http.post("/v1/datasets", json={"name": name})
    assert created.status_code == 201, created.text
    ids = {}
    for key, item in items(uuid.uuid4().hex[:8]).items():
        added = client.http.post(f"/v1/datasets/{name}/items", json=item)
        assert added.status_code == 201, added.text
        ids[key] = added.json()["id"]
    return name, ids


def run_eval(client: Client) -> tuple[dict[str, Any], dict[str, str]]:
    """An eval of v1 (by its label) against v2 on the four items, run to its end."""
    prompt = make_prompt(client)
    dataset, ids = make_dataset(client)
    body = {
        "dataset": dataset,
        "candidates": [
            {"prompt": {"name": prompt, "label": "production"}},
            {"prompt": {"name": prompt, "version": 2}},
        ],
        "scorers": [{"type": "equals_expected"}],
    }
    started = client.http.post("/v1/evals", json=body)
    assert started.status_code == 202, started.text

    def ended() -> dict[str, Any] | None:
        found: dict[str, Any] = client.http.get(f"/v1/evals/{started.json()['id']}").json()
        return found if found["status"] == "completed" else None

    return wait_until(ended, what="the eval to complete"), ids


def test_an_evals_page_compares_the_candidates_item_by_item(
    make_client: Callable[..., Client], page: Any
) -> None:
    client, other = make_client(), make_client()
    found, ids = run_eval(client)
    elsewhere, _ = run_eval(other)
    assert {r["item_id"] for r in found["regressions"]} == {ids["plain"], ids["hostile"]}
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    _log_in(page)
    page.click("header a[href='/admin/ui/evals']")
    listed = page.locator("#evals tr.eval").evaluate_all("rows => rows.map(r => r.dataset.eval)")
    assert listed.index(elsewhere["id"]) < listed.index(found["id"])  # newest first
    page.fill("#filter input[name=tenant]", client.tenant)
    page.click("#filter button[type=submit]")
    rows = page.locator("#evals tr.eval")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.eval)") == [found["id"]]
    assert rows.locator("td.status").inner_text() == "completed"
    assert rows.locator("span.pct").inner_text() == "8/8 (100%)"

    rows.locator("td.id a").click()
    assert page.inner_text("#eval-id") == found["id"]
    assert page.inner_text("#tenant") == client.tenant
    assert page.inner_text("#status") == "completed"
    assert page.inner_text("#regression-count") == "2"

    # One column per candidate, its header naming the prompt version and its numbers.
    headers = page.locator("#items th.candidate")
    assert headers.count() == 2
    assert "@1 (production)" in headers.nth(0).locator(".name").inner_text()
    assert "@2" in headers.nth(1).locator(".name").inner_text()
    assert headers.nth(0).locator(".pass-rate").inner_text() == "pass rate 50.0%"
    assert headers.nth(1).locator(".pass-rate").inner_text() == "pass rate 25.0%"
    assert "openai/gpt-4o-mini" in headers.nth(0).locator(".model").inner_text()
    assert "p50" in headers.nth(0).locator(".latency").inner_text()

    # Regressions first, then the others in the order they were added.
    order = page.locator("#items tr.item").evaluate_all("rows => rows.map(r => r.dataset.item)")
    assert order[:2] == [ids["plain"], ids["hostile"]]
    assert order[2:] == [ids["both"], ids["better"]]
    assert page.locator("#items tr.item.regression .tag").count() == 2

    # A failure is highlighted; a pass is not.
    failed = page.locator(f"#items tr[data-item='{ids['plain']}'] td[data-candidate='1']")
    passed = page.locator(f"#items tr[data-item='{ids['plain']}'] td[data-candidate='0']")
    assert failed.get_attribute("data-verdict") == "fail"
    assert passed.get_attribute("data-verdict") == "pass"
    background = "el => getComputedStyle(el).backgroundColor"
    assert failed.evaluate(background) == "rgb(251, 234, 234)"
    assert passed.evaluate(background) != failed.evaluate(background)
    assert failed.locator("pre.output").inner_text() == "nope"

    # The hostile output is text: no element was made of it.
    hostile = page.locator(f"#items tr[data-item='{ids['hostile']}'] td[data-candidate='0']")
    assert HOSTILE in hostile.locator("pre.output").inner_text()
    assert page.locator("script").count() == 0
    assert page.locator("#eval-img, img").count() == 0
    assert dialogs == []

    # The chart: a bar per candidate for pass rate and for cost, drawn by the server.
    rates = page.locator("#chart g.panel[data-metric='pass-rate'] g.bar")
    assert rates.evaluate_all("bars => bars.map(b => b.dataset.value)") == ["50%", "25%"]
    widths = page.locator("#chart rect.pass-rate").evaluate_all(
        "rects => rects.map(r => Number(r.getAttribute('width')))"
    )
    assert widths[0] == 2 * widths[1] > 0
    costs = page.locator("#chart g.panel[data-metric='cost'] g.bar")
    assert costs.count() == 2
    assert all(
        value.startswith("$")
        for value in costs.evaluate_all("bars => bars.map(b => b.dataset.value)")
    )
    page.screenshot(path=str(ARTIFACTS / "admin-page-eval.png"), full_page=True)

    # A cell links to its job's page.
    job_id = next(
        r["job_id"]
        for item in found["items"]
        if item["item_id"] == ids["plain"]
        for r in item["results"]
        if r["candidate"] == 1
    )
    failed.locator("a.job").click()
    assert page.url.endswith(f"/admin/ui/jobs/{job_id}")


def test_the_admin_eval_routes_need_the_admin_token(
    live: Stack, make_client: Callable[..., Client], page: Any
) -> None:
    client = make_client()
    found, ids = run_eval(client)
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.get("/admin/evals").status_code == 401
        as_tenant = {"Authorization": f"Bearer {client.api_key}"}
        assert http.get("/admin/evals", headers=as_tenant).status_code == 403
        assert http.get(f"/admin/evals/{found['id']}", headers=as_tenant).status_code == 403
        # The pages want a login session: the admin token as a bearer is not one.
        for path in ("/admin/ui/evals", f"/admin/ui/evals/{found['id']}"):
            answer = http.get(path, headers=ADMIN)
            assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"

        listed = http.get("/admin/evals", params={"tenant": client.tenant}, headers=ADMIN)
        assert listed.status_code == 200, listed.text
        (row,) = listed.json()["data"]
        assert row["id"] == found["id"] and row["tenant"] == client.tenant

        one = http.get(f"/admin/evals/{found['id']}", headers=ADMIN)
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["tenant"] == client.tenant
        assert {r["item_id"] for r in body["regressions"]} == {ids["plain"], ids["hostile"]}

        missing = http.get(f"/admin/evals/{uuid.uuid4()}", headers=ADMIN)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        assert http.get("/admin/evals/nope", headers=ADMIN).status_code == 404

    _log_in(page)
    page.goto(f"/admin/ui/evals/{uuid.uuid4()}")
    assert "no eval" in page.inner_text("#action-error")
