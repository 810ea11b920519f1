"""`aijobs batch` over HTTP with a tenant key, as a user runs it: submit a JSONL file
(progress bars on stderr, the batch on stdout), status, results to stdout in input
order, list, cancel; the key must be the named tenant's; a refused file sends nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Client
from tests.helpers import chat, unique
from tests.stack import AIJOBS, Stack


def run(live: Stack, client: Client, *argv: str) -> subprocess.CompletedProcess[str]:
    # No database or Redis settings: the commands need only the API and a tenant key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    env |= {"AIJOBS_API_URL": live.base_url, "AIJOBS_API_KEY": client.api_key}
    return subprocess.run(
        [*AIJOBS, "batch", *argv], env=env, capture_output=True, text=True, timeout=120
    )


def _file(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_submit_follows_the_batch_to_the_end_then_results_stream_in_input_order(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    ids = [f"row-{i:03d}" for i in range(40)]
    path = _file(
        tmp_path / "in.jsonl",
        [{"custom_id": cid, **chat(unique(cid), model="sim/echo")} for cid in ids],
    )
    done = run(live, client, "submit", str(path), "--tenant", client.tenant, "--poll", "0.2")
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch["status"] == "completed"
    assert batch["counts"]["total"] == batch["counts"]["succeeded"] == 40
    assert f"batch {batch['id']} accepted: 40 jobs" in done.stderr
    assert "upload" in done.stderr and "40/40" in done.stderr  # the two bars

    results = run(live, client, "results", batch["id"])
    assert results.returncode == 0, results.stderr
    lines = [json.loads(line) for line in results.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ids
    assert all(line["status"] == "succeeded" for line in lines)
    assert lines[3]["result"]["content"].startswith("row-003")

    status = run(live, client, "status", batch["id"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["succeeded"] == 40

    listing = run(live, client, "list")
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if batch["id"] in line]
    assert "completed" in row and "40/40" in row


def test_no_wait_prints_the_id_and_cancel_stops_the_queued_jobs(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    lines = [
        {"custom_id": f"s{i}", **chat(unique("[sleep:2] slow"), priority="batch")}
        for i in range(10)
    ]
    path = _file(tmp_path / "slow.jsonl", lines)
    submitted = run(live, client, "submit", str(path), "--no-wait", "--tier", "standard")
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    assert client.http.get(f"/v1/batches/{batch_id}").status_code == 200

    cancelled = run(live, client, "cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    batch = json.loads(cancelled.stdout)
    assert batch["status"] in ("cancelling", "cancelled")
    assert batch["counts"]["cancelled"] > 0


def test_a_key_of_another_tenant_sends_nothing(live: Stack, client: Client, tmp_path: Path) -> None:
    path = _file(tmp_path / "in.jsonl", [{"custom_id": "a", **chat("x", model="sim/echo")}])
    refused = run(live, client, "submit", str(path), "--tenant", "someone-else")
    assert refused.returncode == 2
    assert f"the API key is tenant {client.tenant!r}'s, not 'someone-else'" in refused.stderr
    assert client.http.get("/v1/batches").json()["data"] == []


def test_an_invalid_file_is_refused_whole_with_the_lines_at_fault(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"custom_id": "ok", **chat("fine", model="sim/echo")})
        + "\nnot json\n"
        + json.dumps({"custom_id": "ok", **chat("again", model="sim/echo")})
        + "\n"
    )
    refused = run(live, client, "submit", str(path))
    assert refused.returncode == 2
    assert "POST /v1/batches: invalid_request" in refused.stderr
    errors = json.loads(refused.stderr[refused.stderr.index("[{") :].splitlines()[0])
    assert [e["index"] for e in errors] == [1, 2]
    assert client.http.get("/v1/batches").json()["data"] == []

    missing = run(live, client, "status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2
    assert "not_found" in missing.stderr
