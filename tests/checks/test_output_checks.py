"""Output checks in the worker: each type passes and fails; on_fail retry (the next
call carries the failed output and what failed), fallback and fail; check_failed at the
end with the last output kept; each attempt's checks in the admin attempts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import psycopg

from tests.conftest import Client
from tests.fake_openai import FakeOpenAI
from tests.helpers import chat, unique
from tests.stack import ADMIN_TOKEN, Stack

# (check, reply that passes, reply that fails)
CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "regex", "pattern": "^[0-9]+$"}, "42", "forty-two"),
    ({"type": "not_regex", "pattern": "(?i)sorry"}, "fine", "Sorry, no"),
    ({"type": "contains", "value": "PARIS", "ignore_case": True}, "paris it is", "london"),
    ({"type": "contains", "value": "PARIS"}, "PARIS", "paris"),
    ({"type": "not_contains", "value": "TODO"}, "done", "TODO later"),
    ({"type": "not_contains", "value": "todo", "ignore_case": True}, "done", "ToDo later"),
    ({"type": "min_chars", "value": 5}, "abcdef", "abc"),
    ({"type": "max_chars", "value": 5}, "abc", "abcdefgh"),
    ({"type": "one_of", "values": ["yes", "no"]}, " yes ", "maybe"),
]


def _attempts(live: Stack, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{live.base_url}/admin/jobs/{job_id}/attempts",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_each_check_type_passes_and_fails(client: Client, live: Stack) -> None:
    submitted = []
    for check, good, bad in CASES:
        for reply, passes in ((good, True), (bad, False)):
            body = chat(unique(f"[reply:{reply}]"), checks=[{**check, "on_fail": "fail"}])
            response = client.submit(body)
            assert response.status_code == 202, response.text
            submitted.append((check, reply, passes, response.json()["id"]))
    for check, reply, passes, job_id in submitted:
        job = client.wait(job_id)
        [result] = job["checks"]
        assert result["type"] == check["type"] and result["passed"] is passes, (check, reply, job)
        assert result["detail"]
        # on_fail "fail": one call, then the job fails, keeping the output.
        assert job["attempts"] == 1
        assert job["result"]["content"] == reply, job
        if passes:
            assert job["status"] == "succeeded", job
        else:
            assert job["status"] == "failed" and job["error"]["code"] == "check_failed", job
            assert check["type"] in job["error"]["message"]
            [attempt] = _attempts(live, job_id)
            assert attempt["outcome"] == "failed" and attempt["error_code"] == "check_failed"
            assert attempt["checks"] == job["checks"] and attempt["kind"] == "call"


def test_a_detail_never_quotes_the_output(client: Client) -> None:
    secret = "s3cr3t-" + unique()
    job = client.wait(
        client.submit(
            chat(unique(f"[reply:{secret}]"), checks=[{"type": "max_chars", "value": 3}])
        ).json()["id"]
    )
    assert job["status"] == "failed"
    assert secret not in str(job["checks"]) and secret not in job["error"]["message"]


def test_retry_sends_the_failed_output_and_what_failed_then_passes(
    client: Client, fake_openai: FakeOpenAI, live: Stack, db: psycopg.Connection[Any]
) -> None:
    # The first answer is "wrong"; the retry's last user message is our instruction, which
    # the fake echoes ("echo: ..."): that one passes.
    message = unique("answer [reply:wrong]")
    response = client.submit(chat(message, checks=[{"type": "regex", "pattern": "^echo: "}]))
    assert response.status_code == 202, response.text
    job = client.wait(response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert job["checks"] == [
        {"type": "regex", "passed": True, "detail": "the output matches '^echo: '"}
    ]
    first, second = fake_openai.received_with(message)
    assert first["messages"] == [{"role": "user", "content": message}]
    assert second["messages"][:2] == [
        {"role": "user", "content": message},
        {"role": "assistant", "content": "wrong"},
    ]
    [instruction] = second["messages"][2:]
    assert instruction["role"] == "user"
    assert "regex: the output does not match '^echo: '" in instruction["content"]
    assert job["result"]["content"] == f"echo: {instruction['content']}"

    one, two = _attempts(live, job["id"])
    assert one["outcome"] == "failed" and one["error_code"] == "check_failed"
    assert one["checks"] == [
        {"type": "regex", "passed": False, "detail": "the output does not match '^echo: '"}
    ]
    assert two["outcome"] == "succeeded" and two["checks"] == job["checks"]
    # The retry's reservation counts the messages it adds (bytes + 8 tokens each, at
    # gpt-4o-mini's $0.15 per million input tokens).
    reserved = [
        row[0]
        for row in db.execute(
            "SELECT reserved_usd FROM attempts WHERE job_id = %s ORDER BY attempt_no",
            (job["id"],),
        )
    ]
    added = sum(len(m["content"].encode()) + 8 for m in second["messages"][1:])
    assert reserved[1] - reserved[0] == Decimal(added) * Decimal("0.15") / 1_000_000
    # It ended: what the retry added is gone from the job.
    row = db.execute(
        "SELECT retry_messages, retry_reserve_usd FROM jobs WHERE id = %s", (job["id"],)
    ).fetchone()
    assert row == (None, 0)


def test_retries_used_up_fail_check_failed_keeping_the_last_output(
    client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[reply:never right]")
    body = chat(message, max_attempts=3, checks=[{"type": "regex", "pattern": "^OK$"}])
    job = client.wait(client.submit(body).json()["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "check_failed" and not job["error"]["retryable"]
    assert job["attempts"] == 3
    # The last call's output (the fake echoes our instruction on retries).
    bodies = fake_openai.received_with(message)
    assert len(bodies) == 3
    assert job["result"]["content"] == f"echo: {bodies[2]['messages'][-1]['content']}"
    # Each retry carries the output and failure of the attempt just before it.
    assert bodies[1]["messages"][1] == {"role": "assistant", "content": "never right"}
    second_output = f"echo: {bodies[1]['messages'][-1]['content']}"
    assert bodies[2]["messages"][1] == {"role": "assistant", "content": second_output}
    assert [len(body["messages"]) for body in bodies] == [1, 3, 3]
    assert job["checks"][0]["passed"] is False


def test_fallback_moves_to_the_next_model(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[reply:nope]")
    body = chat(
        message,
        fallbacks=["openai/gpt-4o"],
        max_attempts=3,
        checks=[{"type": "one_of", "values": ["yes"], "on_fail": "fallback"}],
    )
    job = client.wait(client.submit(body).json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "check_failed", job
    # One call per model, not a retry of the first; the fallback gets the plain request.
    assert job["attempts"] == 2
    assert fake_openai.count_model(message, "gpt-4o-mini") == 1
    assert fake_openai.count_model(message, "gpt-4o") == 1
    assert [len(b["messages"]) for b in fake_openai.received(message)] == [1, 1]
    assert job["result"]["content"] == "nope"


def test_a_retry_then_a_fallback_leaves_the_retry_messages_behind(
    client: Client, fake_openai: FakeOpenAI
) -> None:
    message = unique("[reply:nope]")
    body = chat(
        message,
        fallbacks=["openai/gpt-4o"],
        max_attempts=2,
        checks=[{"type": "one_of", "values": ["yes"]}],
    )
    job = client.wait(client.submit(body).json()["id"])
    assert job["status"] == "failed" and job["attempts"] == 4, job
    models = [(b["model"], len(b["messages"])) for b in fake_openai.received_with(message)]
    assert models == [("gpt-4o-mini", 1), ("gpt-4o-mini", 3), ("gpt-4o", 1), ("gpt-4o", 3)]


def test_the_strictest_on_fail_decides(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("[reply:short]")
    checks = [
        {"type": "min_chars", "value": 100},  # retry
        {"type": "not_contains", "value": "short", "on_fail": "fail"},
        {"type": "contains", "value": "short"},  # passes
    ]
    job = client.wait(client.submit(chat(message, checks=checks)).json()["id"])
    assert job["status"] == "failed" and job["attempts"] == 1, job
    assert [c["passed"] for c in job["checks"]] == [False, False, True]
    assert len(fake_openai.received_with(message)) == 1


def test_different_checks_are_different_requests(client: Client, fake_openai: FakeOpenAI) -> None:
    message = unique("same prompt")
    one = client.wait(client.submit(chat(message)).json()["id"])
    two = client.wait(
        client.submit(chat(message, checks=[{"type": "contains", "value": "echo"}])).json()["id"]
    )
    assert one["status"] == two["status"] == "succeeded"
    assert two["cache_hit"] is False and fake_openai.count(message) == 2
    assert one["checks"] is None


def test_the_admin_job_page_shows_each_attempts_checks(client: Client, live: Stack) -> None:
    message = unique("[reply:wrong]")
    job = client.wait(
        client.submit(chat(message, checks=[{"type": "regex", "pattern": "^echo: "}])).json()["id"]
    )
    assert job["status"] == "succeeded", job
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        assert http.post("/admin/login", data={"token": ADMIN_TOKEN}).status_code == 303
        page = http.get(f"/admin/ui/jobs/{job['id']}")
    assert page.status_code == 200
    html = page.text
    assert html.count('<div class="check failed">') == 1
    assert html.count('<div class="check passed">') == 1
    assert "regex failed: the output does not match &#39;^echo: &#39;" in html


def test_checks_run_after_response_schema(client: Client) -> None:
    schema = {"type": "object", "required": ["a"]}
    check = {"type": "contains", "value": '"a"', "on_fail": "fail"}
    not_json = client.wait(
        client.submit(
            chat(
                unique("[reply:plain text]"), response_schema=schema, max_attempts=1, checks=[check]
            )
        ).json()["id"]
    )
    assert not_json["error"]["code"] == "invalid_output" and not_json["checks"] is None
    # A JSON answer passes the schema, then the check.
    fine = client.wait(
        client.submit(
            chat(unique('[reply:{"a": 1}]'), response_schema=schema, checks=[check])
        ).json()["id"]
    )
    assert fine["status"] == "succeeded", fine
    assert fine["result"]["parsed"] == {"a": 1} and fine["checks"][0]["passed"] is True
