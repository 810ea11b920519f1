"""The admin prompt page's history in headless Chromium: each version's last 30 days as
server-drawn SVG charts (jobs, checks passed, the mean of each numeric or boolean
feedback name, cost, p50 latency) and a table, with no script on the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.admin import test_admin_page
from tests.conftest import Client
from tests.feedback.test_feedback import give
from tests.helpers import unique
from tests.prompts.test_versions import create, unique_name, version_body
from tests.stack import ARTIFACTS

# The page tests' Chromium and tab, and their login.
browser = test_admin_page.browser
page = test_admin_page.page
_log_in = test_admin_page._log_in

CHECK = [{"type": "contains", "value": "PASS", "on_fail": "fail"}]


def _job(client: Client, name: str, version: int, text: str = "") -> dict[str, Any]:
    ref = {"name": name, "version": version, "variables": {"x": unique(text)}}
    response = client.submit({"prompt": ref})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = client.wait(response.json()["id"])
    assert job["status"] in ("succeeded", "failed"), job
    return job


def _created_days_ago(db: psycopg.Connection[Any], job_id: str, days: int) -> None:
    db.execute(
        "UPDATE jobs SET created_at = created_at - make_interval(days => %s) WHERE id = %s",
        (days, job_id),
    )


def _titles(section: Any, metric: str, mark: str) -> list[str]:
    marks = section.locator(f"figure[data-metric='{metric}'] svg {mark} title")
    return [str(title) for title in marks.all_text_contents()]


def test_the_prompt_page_charts_each_versions_days(
    client: Client, db: psycopg.Connection[Any], page: Any
) -> None:
    name = unique_name()
    create(client, name, version_body("A {{x}}"))
    create(client, name, version_body("B {{x}}", checks=CHECK))
    old, today_job, ancient = (_job(client, name, 1) for _ in range(3))
    _created_days_ago(db, old["id"], 1)
    _created_days_ago(db, ancient["id"], 40)  # outside the 30 days shown
    passed, failed = _job(client, name, 2, "PASS"), _job(client, name, 2)
    assert (passed["status"], failed["status"]) == ("succeeded", "failed")
    given: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (old, {"name": "rating", "value": 3}),
        (today_job, {"name": "rating", "value": 5}),
        (ancient, {"name": "rating", "value": 1}),
        (passed, {"name": "rating", "value": 4}),
        (failed, {"name": "rating", "value": 5}),
        (passed, {"name": "helpful", "value": True}),
        (failed, {"name": "helpful", "value": True}),
        (passed, {"name": "verdict", "value": "good"}),
    ]
    for job, body in given:
        assert give(client, job["id"], body).status_code == 201

    today = datetime.now(UTC).date()
    before = (today - timedelta(days=1)).isoformat()
    _log_in(page)
    page.goto(f"/admin/ui/prompts?tenant={client.tenant}")
    page.locator(f"#prompts tr.prompt[data-prompt='{name}'] td.name a").click()
    sections = page.locator("#history section.history")
    assert [sections.nth(n).get_attribute("data-version") for n in range(2)] == ["2", "1"]

    two = page.locator("#history-2")
    metrics = two.locator("figure.chart").evaluate_all("fs => fs.map(f => f.dataset.metric)")
    assert metrics == [
        "jobs",
        "checks_passed",
        "feedback:helpful",
        "feedback:rating",
        "cost_usd",
        "p50_ms",
    ]  # a string feedback name has no mean, hence no chart
    now = today.isoformat()
    assert _titles(two, "jobs", "rect.bar") == [f"{now}: 2"]
    assert _titles(two, "checks_passed", "circle") == [f"{now}: 50%"]
    assert _titles(two, "feedback:rating", "circle") == [f"{now}: 4.5"]
    assert _titles(two, "feedback:helpful", "circle") == [f"{now}: 1"]
    assert len(_titles(two, "cost_usd", "rect.bar")) == 1
    assert len(_titles(two, "p50_ms", "circle")) == 1
    header = two.locator("table.history-table tr").first.locator("th").all_inner_texts()
    assert header == [
        "day",
        "jobs",
        "checks passed",
        "feedback helpful",
        "feedback rating",
        "cost (USD)",
        "latency p50 (ms)",
    ]
    row = two.locator(f"tr.day[data-day='{now}'] td").all_inner_texts()
    assert row[:5] == [now, "2", "50%", "1", "4.5"]
    assert float(row[5]) > 0 and int(row[6]) >= 0

    # Version 1: a job yesterday and one today (the one of 40 days ago is out).
    one = page.locator("#history-1")
    assert _titles(one, "jobs", "rect.bar") == [f"{before}: 1", f"{now}: 1"]
    bars = one.locator("figure[data-metric=jobs] rect.bar")
    # A slot of 10 px a day, today the 30th: bars at slots 28 and 29, full height.
    assert [bars.nth(n).get_attribute("x") for n in range(2)] == ["281", "291"]
    assert [bars.nth(n).get_attribute("height") for n in range(2)] == ["54.0", "54.0"]
    # The line over 0..5: 3 then 5, at the middle of each day's slot.
    rating = one.locator("figure[data-metric='feedback:rating']")
    assert rating.locator("polyline").get_attribute("points") == "285,24.6 295,3"
    assert _titles(one, "feedback:rating", "circle") == [f"{before}: 3", f"{now}: 5"]
    assert "0 to 5" in rating.locator("figcaption").inner_text()
    assert _titles(one, "checks_passed", "circle") == []  # no checks ran on version 1
    days = one.locator("tr.day").evaluate_all("rows => rows.map(r => r.dataset.day)")
    assert days == [before, now]

    # No script on the page: the charts are drawn by the server.
    assert page.locator("script").count() == 0
    page.screenshot(path=str(ARTIFACTS / "admin-page-prompt-history.png"), full_page=True)


def test_a_prompt_without_recent_jobs_says_so(client: Client, page: Any) -> None:
    name = unique_name()
    create(client, name, version_body("A {{x}}"))
    _log_in(page)
    page.goto(f"/admin/ui/prompts?tenant={client.tenant}")
    page.locator(f"#prompts tr.prompt[data-prompt='{name}'] td.name a").click()
    assert page.locator("#history section.history").count() == 0
    assert "No jobs ran this prompt in the last 30 days." in page.inner_text("#history")
