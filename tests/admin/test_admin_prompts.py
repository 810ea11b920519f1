"""The admin page's prompts in headless Chromium: every tenant's prompts with their labels,
a prompt's versions and two of them side by side, prompt text shown as text (never as
markup), and a job's page linking the prompt version it ran."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.admin import test_admin_page
from tests.conftest import Client
from tests.prompts.test_versions import create, put_label, unique_name, version_body
from tests.stack import ADMIN_TOKEN, ARTIFACTS, Stack

# The page tests' Chromium and tab, and their login.
browser = test_admin_page.browser
page = test_admin_page.page
_log_in = test_admin_page._log_in


def _row(page: Any, tenant: str, name: str) -> Any:
    return page.locator(f"#prompts tr.prompt[data-tenant='{tenant}'][data-prompt='{name}']")


def test_prompts_of_every_tenant_with_versions_labels_and_a_diff(
    make_client: Callable[..., Client], page: Any
) -> None:
    first, second = make_client(), make_client()
    name = unique_name()  # the same name in two tenants: two prompts
    create(first, name, version_body("Summarise: {{text}}", note="first cut"))
    create(
        first,
        name,
        version_body("Summarise briefly: {{text}}", params={"temperature": 0.2}, note="shorter"),
    )
    assert put_label(first, name, "production", {"version": 2}).status_code == 200
    assert put_label(first, name, "canary", {"split": {"1": 90, "2": 10}}).status_code == 200
    create(second, name, version_body("Translate: {{text}}"))
    assert put_label(second, name, "production", {"version": 1}).status_code == 200

    _log_in(page)
    page.click("header a[href='/admin/ui/prompts']")
    page.fill("#filter input[name=tenant]", first.tenant)
    page.click("#filter button[type=submit]")
    row = _row(page, first.tenant, name)
    assert row.locator("td").all_inner_texts()[:3] == [first.tenant, name, "2"]
    assert row.locator(".labels").inner_text() == "canary: split v1 90%, v2 10%; production: v2"
    assert page.locator("#prompts tr.prompt").count() == 1  # the other tenant's is not here
    page.goto(f"/admin/ui/prompts?tenant={second.tenant}")
    assert _row(page, second.tenant, name).locator(".labels").inner_text() == "production: v1"

    page.goto(f"/admin/ui/prompts?tenant={first.tenant}")
    _row(page, first.tenant, name).locator("td.name a").click()
    assert page.inner_text("#prompt-name") == name
    assert page.inner_text("#tenant") == first.tenant
    versions = page.locator("#versions tr.version")
    assert versions.count() == 2
    newest = versions.nth(0).locator("td").all_inner_texts()
    assert newest[0] == "2"
    assert newest[2:6] == ["openai/gpt-4o-mini", "shorter", "text", "canary (10%), production"]
    assert versions.nth(1).locator("td.labels").inner_text() == "canary (90%)"
    assert page.locator("#labels tr[data-label=canary] td").nth(1).inner_text() == (
        "split v1 90%, v2 10%"
    )

    # By default the last two versions, field by field, the changed word marked.
    diff = page.locator("#diff")
    assert (diff.get_attribute("data-old"), diff.get_attribute("data-new")) == ("1", "2")
    messages = page.locator("#diff tbody[data-field=messages]")
    assert messages.get_attribute("data-changed") == "yes"
    changed = messages.locator("tr.row-replace td.text")
    assert changed.all_inner_texts() == ["  Summarise: {{text}}", "  Summarise briefly: {{text}}"]
    assert changed.nth(1).locator("mark").all_inner_texts() == [" briefly"]
    assert page.locator("#diff tbody[data-field=model]").get_attribute("data-changed") == "no"
    params = page.locator("#diff tbody[data-field=params]")
    assert params.get_attribute("data-changed") == "yes"
    assert '"temperature": 0.2' in params.locator("tr.row-insert").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "admin-page-prompt.png"), full_page=True)

    # Any two versions, chosen in the form (the query is ?a=&b=).
    page.select_option("#compare select[name=a]", "2")
    page.select_option("#compare select[name=b]", "1")
    page.click("#compare button[type=submit]")
    assert "a=2" in page.url and "b=1" in page.url
    assert (diff.get_attribute("data-old"), diff.get_attribute("data-new")) == ("2", "1")
    assert messages.locator("tr.row-replace td.text mark").all_inner_texts() == [" briefly"]


def test_prompt_text_is_shown_as_text(client: Client, page: Any) -> None:
    name = unique_name()
    hostile = "<script>alert(1)</script><b id='bold'>bold</b>"

    def body(user: str, **extra: Any) -> dict[str, Any]:
        messages = [{"role": "system", "content": hostile}, {"role": "user", "content": user}]
        return {"messages": messages, "model": "openai/gpt-4o-mini", **extra}

    # In an unchanged line (the system message), a changed one (its marked words), and
    # the note of a version.
    create(client, name, body("plain {{text}}"))
    create(client, name, body(f"{hostile} {{{{text}}}}", note="<img src=x id='note-img'>"))
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    _log_in(page)
    page.goto(f"/admin/ui/prompts?tenant={client.tenant}")
    _row(page, client.tenant, name).locator("td.name a").click()
    messages = page.locator("#diff tbody[data-field=messages]")
    unchanged = messages.locator("tr.row-equal td.text").all_inner_texts()
    assert unchanged[2:4] == [f"  {hostile}", f"  {hostile}"]
    new_side = messages.locator("tr.row-replace td.text").nth(1)
    assert new_side.inner_text() == f"  {hostile} {{{{text}}}}"
    assert hostile in "".join(new_side.locator("mark").all_inner_texts())
    assert page.locator("#versions td.note").first.inner_text() == "<img src=x id='note-img'>"
    # The markup is text: no element was made of it (the CSP would also stop a script;
    # this checks the escaping itself).
    assert page.locator("script").count() == 0
    assert page.locator("#bold, #note-img, #diff b, img").count() == 0
    assert dialogs == []


def test_a_jobs_page_shows_its_prompt_version(client: Client, page: Any) -> None:
    name = unique_name()
    create(client, name, version_body("Summarise: {{text}}"))
    create(client, name, version_body("Summarise in one line: {{text}}"))
    assert put_label(client, name, "production", {"version": 2}).status_code == 200
    submitted = client.submit({"prompt": {"name": name, "variables": {"text": "x"}}})
    assert submitted.status_code == 202, submitted.text
    job = client.wait(submitted.json()["id"])
    assert job["prompt"] == {"name": name, "version": 2}

    _log_in(page)
    page.goto(f"/admin/ui/jobs/{job['id']}")
    assert page.inner_text("#prompt") == f"{name} v2"
    page.click("#prompt a")
    assert page.inner_text("#prompt-name") == name
    assert page.url.endswith("?b=2#version-2")
    diff = page.locator("#diff")
    assert (diff.get_attribute("data-old"), diff.get_attribute("data-new")) == ("1", "2")
    stats = page.locator("#version-2 td").all_inner_texts()
    assert stats[6:8] == ["1", "1"]  # one job ran version 2, and it succeeded


def test_unknown_prompts_and_versions(live: Stack, client: Client) -> None:
    name = unique_name()
    create(client, name, version_body("only one"))
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 303
        tenant_id = _tenant_id(http, client.tenant, name)
        assert http.get(f"/admin/ui/prompts/{uuid.uuid4()}/{name}").status_code == 404
        assert http.get(f"/admin/ui/prompts/not-a-uuid/{name}").status_code == 404
        assert http.get(f"/admin/ui/prompts/{tenant_id}/{unique_name()}").status_code == 404
        one = http.get(f"/admin/ui/prompts/{tenant_id}/{name}", params={"a": "7", "b": "x"})
        assert one.status_code == 200
        assert "There is no version &#39;7&#39; or &#39;x&#39;" in one.text
        assert 'data-old="1" data-new="1"' in one.text  # one version: compared with itself
        jobless = http.get(f"/admin/ui/jobs/{uuid.uuid4()}/prompt")
        assert jobless.status_code == 404


def _tenant_id(http: httpx.Client, tenant: str, name: str) -> str:
    listed = http.get("/admin/ui/prompts", params={"tenant": tenant})
    assert listed.status_code == 200
    marker = "/admin/ui/prompts/"
    start = listed.text.index(marker, listed.text.index(f'data-prompt="{name}"')) + len(marker)
    return listed.text[start : listed.text.index("/", start)]
