"""The admin web page in real headless Chromium (Debian's, driven by Playwright): log in,
find a failed job under its error code, re-run it; re-runs by checkbox and by filter;
webhook redelivery; tenants; the session cookie and CSRF checks over plain HTTP."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import ADMIN_TOKEN, ARTIFACTS, Stack
from tests.webhook_receiver import Receiver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _no_browser(why: str) -> None:
    # In CI the page test must run: a missing browser is a failure there, not a skip.
    if os.environ.get("CI") == "true":
        pytest.fail(f"the admin page test cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed")
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live: Stack) -> Iterator[Any]:
    context = browser.new_context(base_url=live.base_url)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def _log_in(page: Any, token: str = ADMIN_TOKEN) -> None:
    page.goto("/admin/")
    assert page.url.endswith("/admin/login")  # not logged in: 303 to the form
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def _failed(client: Client, message: str, **extra: Any) -> dict[str, Any]:
    done = client.wait(client.submit(chat(message, **extra)).json()["id"])
    assert done["status"] == "failed", done
    return done


def _reload_until(page: Any, done: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"still not there after {timeout_s} s: {page.url}"
        time.sleep(0.3)
        page.reload()


def _audit(live: Stack) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = httpx.get(live.base_url + "/admin/audit", headers=headers)
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_log_in_find_a_failed_job_and_rerun_it(
    live: Stack, client: Client, page: Any, fake_openai: FakeOpenAI
) -> None:
    message = unique("[fail:500x3] flaky page")
    failed = _failed(client, message, max_attempts=3)
    _log_in(page)
    assert page.url.endswith("/admin/")
    page.fill("#filter input[name=tenant]", client.tenant)
    page.click("#filter button[type=submit]")
    assert "provider_error" in page.inner_text("#counts")
    link = page.locator(f"section#code-provider_error a[href='/admin/ui/jobs/{failed['id']}']")
    link.click()
    assert page.inner_text("#status") == "failed"
    assert page.locator("#attempts tr.attempt").count() == 3
    assert page.inner_text("#error-code").startswith("provider_error")

    page.click("#rerun")
    assert "queued again" in page.inner_text("#notice")
    _reload_until(page, lambda: page.inner_text("#status") == "succeeded")
    outcomes = page.locator("#attempts td.outcome").all_inner_texts()
    assert outcomes == ["failed", "failed", "failed", "succeeded"]
    assert page.locator("#result").count() == 1
    page.screenshot(path=str(ARTIFACTS / "admin-page-job.png"), full_page=True)
    assert fake_openai.count(message) == 4

    (entry,) = [e for e in _audit(live) if e["detail"].get("job_id") == failed["id"]]
    assert entry["action"] == "job.rerun" and entry["actor"].startswith("page:")
    page.goto("/admin/")
    assert failed["id"] in page.inner_text("#audit")


def test_rerun_selected_and_by_filter_after_a_dry_run(
    make_client: Callable[..., Client], page: Any, fake_openai: FakeOpenAI
) -> None:
    client = make_client()
    messages = [unique(f"[fail:500x1] page batch {i}") for i in range(3)]
    ids = [_failed(client, m, max_attempts=1)["id"] for m in messages]
    _log_in(page)
    page.goto(f"/admin/?status=failed&tenant={client.tenant}")
    page.screenshot(path=str(ARTIFACTS / "admin-page-failed.png"), full_page=True)
    page.check(f"input[name=job][value='{ids[0]}']")
    page.click("#selected button[type=submit]")
    assert "Re-run 1 job(s)" in page.inner_text("#notice")
    assert client.wait(ids[0])["status"] == "succeeded"

    page.goto(f"/admin/?status=failed&tenant={client.tenant}")
    page.fill("#bulk input[name=error_code]", "provider_error")
    page.click("#bulk button[type=submit]")
    assert page.inner_text("#dry-run-count") == "2"
    assert sum(fake_openai.count(m) for m in messages) == 4  # the dry run re-ran nothing
    page.click("form[action='/admin/ui/rerun'] button")
    assert "Re-run 2 job(s)" in page.inner_text("#notice")
    assert {client.wait(i)["status"] for i in ids[1:]} == {"succeeded"}
    assert sum(fake_openai.count(m) for m in messages) == 6


def test_redeliver_a_webhook_from_the_job_page(
    live: Stack, client: Client, page: Any, receiver: Receiver
) -> None:
    url = receiver.path()
    job = client.wait(client.submit(chat(unique("hook"), webhook_url=url)).json()["id"])
    receiver.wait_for(url, 1)
    _log_in(page)
    page.goto(f"/admin/ui/jobs/{job['id']}")
    page.click("#redeliver")
    assert "redelivery queued" in page.inner_text("#notice")
    receiver.wait_for(url, 2)
    _reload_until(page, lambda: page.locator("#deliveries tr").count() == 3)  # header + 2
    actions = [e["action"] for e in _audit(live) if e["detail"].get("job_id") == job["id"]]
    assert actions == ["webhook.redeliver"]


def test_tenants_page_shows_spend_and_budgets_escaped(live: Stack, page: Any) -> None:
    name = f"<i>acme</i>-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"name": name, "daily_budget_usd": "2.5"}
    created = httpx.post(live.base_url + "/admin/tenants", json=body, headers=headers)
    assert created.status_code == 201
    _log_in(page)
    page.click("header a[href='/admin/ui/tenants']")
    row = page.locator("#tenants tr", has_text=name)
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == name  # shown as text, not as markup
    assert cells[2:8] == ["0", "0", "2.5", "0", "0", "2.5"]
    assert page.locator("#tenants i").count() == 0


def test_a_wrong_token_shows_an_error(page: Any) -> None:
    _log_in(page, token="not-the-token")
    assert page.url.endswith("/admin/login")
    assert "Wrong admin token" in page.inner_text("#login-error")
    assert page.context.cookies() == []
    page.goto("/admin/")
    assert page.url.endswith("/admin/login")


def _logged_in(live: Stack) -> httpx.Client:
    http = httpx.Client(base_url=live.base_url, timeout=30)
    response = http.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/admin/"
    return http


def test_session_cookie_and_csrf(live: Stack) -> None:
    http = _logged_in(live)
    cookie = http.post("/admin/login", data={"token": ADMIN_TOKEN}).headers["set-cookie"]
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/admin"} <= attributes
    assert "secure" not in attributes  # plain http here; https requests get Secure
    assert ADMIN_TOKEN not in cookie

    page = http.get("/admin/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src" not in page.headers["content-security-policy"]  # none allowed
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    csrf = match.group(1)
    job = f"/admin/ui/jobs/{uuid.uuid4()}/rerun"
    assert http.post(job).status_code == 403
    assert http.post(job, data={"csrf": "forged"}).status_code == 403
    assert http.post("/admin/logout", data={}).status_code == 403
    assert http.post(job, data={"csrf": csrf}).status_code == 404  # past the check: no job

    # Another session's CSRF token does not pass in this one.
    other = _logged_in(live)
    assert other.post(job, data={"csrf": csrf}).status_code == 403

    logout = http.post("/admin/logout", data={"csrf": csrf})
    assert logout.status_code == 303 and logout.headers["location"] == "/admin/login"
    assert http.get("/admin/").status_code == 303
    # Without a session a POST goes to the login form, and the JSON API still wants Bearer.
    anonymous = httpx.post(live.base_url + job, data={"csrf": csrf})
    assert anonymous.status_code == 303
    assert httpx.get(live.base_url + "/admin/jobs", cookies=other.cookies).status_code == 401
    assert httpx.get(live.base_url + "/admin").headers["location"] == "/admin/"


def test_the_page_is_off_without_an_admin_token(live: Stack) -> None:
    env = {k: v for k, v in live.env.items() if k != "AIJOBS_ADMIN_TOKEN"}
    bare = Stack(env, name="no-admin-page")
    bare.start_api()
    try:
        for method, path in (
            ("GET", "/admin/"),
            ("GET", "/admin"),
            ("GET", "/admin/login"),
            ("POST", "/admin/login"),
            ("GET", "/admin/ui/tenants"),
        ):
            response = httpx.request(method, bare.base_url + path, data={"token": ""})
            assert response.status_code == 404, (method, path)
    finally:
        bare.stop()
