"""`aijobs datasets` and `aijobs eval` over HTTP with a tenant key, as a user runs them,
against the real API and worker (the fake provider answers): a dataset from a JSONL
file, an eval run to its end (a progress bar on stderr, the comparison on stdout), show
(and --json), list, cancel; a bad candidate or scorer exits 2 and sends nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.admin.test_admin_evals import items, make_prompt
from tests.conftest import Client
from tests.prompts.test_versions import unique_name
from tests.stack import AIJOBS, Stack


def run(live: Stack, client: Client, *argv: str) -> subprocess.CompletedProcess[str]:
    # No database or Redis settings: the commands need only the API and a tenant key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    env |= {"AIJOBS_API_URL": live.base_url, "AIJOBS_API_KEY": client.api_key}
    return subprocess.run([*AIJOBS, *argv], env=env, capture_output=True, text=True, timeout=120)


def dataset(live: Stack, client: Client, tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    """A dataset made with `aijobs datasets create` and `add`; its name."""
    name = unique_name("ds")
    created = run(live, client, "datasets", "create", name, "--description", "from the CLI")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == name
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    added = run(live, client, "datasets", "add", name, str(path))
    assert added.returncode == 0, added.stderr
    assert [json.loads(line)["line"] for line in added.stdout.splitlines()] == [1, 2, 3, 4]
    return name


def _rows(stdout: str) -> dict[str, list[str]]:
    """The comparison's candidate rows by their index, split on runs of spaces."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell for cell in line.split("  ") if cell.strip()]
        if cells and cells[0].strip() in ("0", "1"):
            rows[cells[0].strip()] = [cell.strip() for cell in cells]
    return rows


def test_run_follows_the_eval_then_prints_the_comparison(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    prompt = make_prompt(client)
    named = dataset(live, client, tmp_path, list(items("cli").values()))
    done = run(
        live,
        client,
        "eval",
        "run",
        "--dataset",
        named,
        "--candidate",
        f"{prompt}@production",
        "--candidate",
        f"{prompt}@2:openai/gpt-4o-mini",
        "--scorer",
        "equals_expected",
        "--scorer",
        '{"type": "max_chars", "value": 1000}',
        "--poll",
        "0.2",
    )
    assert done.returncode == 0, done.stderr
    assert "accepted: 8 jobs" in done.stderr and "8/8" in done.stderr  # the bar
    eval_id = done.stdout.split()[1]
    found = client.http.get(f"/v1/evals/{eval_id}").json()
    assert found["status"] == "completed"

    assert f"eval {eval_id}  dataset {named}  completed  8/8 jobs" in done.stdout
    header = next(line for line in done.stdout.splitlines() if line.startswith("#"))
    assert header.split()[:4] == ["#", "candidate", "model", "jobs"]
    assert "pass rate" in header and "cost_usd" in header and "p95 ms" in header
    rows = _rows(done.stdout)
    assert rows["0"][1] == f"{prompt}@1 (production)"
    assert rows["1"][1].startswith(f"{prompt}@2")
    assert rows["1"][2] == "openai/gpt-4o-mini"
    assert rows["0"][3:6] == ["4", "4", "50.0%"]  # jobs, succeeded, pass rate
    assert rows["1"][3:6] == ["4", "4", "25.0%"]
    assert found["candidates"][0]["cost_usd"] in rows["0"]
    after = done.stdout[
        done.stdout.index("Regressions (2): items candidate 0 passes and those listed fail") :
    ]
    listed = [line.split() for line in after.splitlines()[1:3]]
    assert {line[1].rstrip(":") for line in listed} == {r["item_id"] for r in found["regressions"]}
    assert all(line[2:] == ["candidate", "1"] for line in listed)
    assert "Improvements (1): items candidate 0 fails and those listed pass" in done.stdout

    shown = run(live, client, "eval", "show", eval_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == done.stdout
    as_json = run(live, client, "eval", "show", eval_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == found

    listing = run(live, client, "eval", "list")
    assert listing.returncode == 0, listing.stderr
    (row,) = [line for line in listing.stdout.splitlines() if eval_id in line]
    assert named in row and "completed" in row and "8/8" in row

    gated = run(
        live,
        client,
        "eval",
        "run",
        "--dataset",
        named,
        "--candidate",
        f"{prompt}@1",
        "--candidate",
        f"{prompt}@2",
        "--scorer",
        "equals_expected",
        "--fail-on-regression",
        "--poll",
        "0.2",
    )
    assert gated.returncode == 1, gated.stderr  # the same regressions, now failing the run
    assert "Regressions (2)" in gated.stdout


def test_no_wait_prints_the_id_and_cancel_stops_the_eval(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    prompt = make_prompt(client)
    # Slow enough that the eval is still running when `cancel` (a new process) gets there.
    slow = [{"variables": {"text": f"[sleep:8] slow {i}"}, "expected": "x"} for i in range(4)]
    named = dataset(live, client, tmp_path, slow)
    started = run(
        live,
        client,
        "eval",
        "run",
        "--dataset",
        named,
        "--candidate",
        f"{prompt}@1",
        "--scorer",
        "equals_expected",
        "--no-wait",
    )
    assert started.returncode == 0, started.stderr
    eval_id = started.stdout.strip()
    assert client.http.get(f"/v1/evals/{eval_id}").status_code == 200

    cancelled = run(live, client, "eval", "cancel", eval_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"eval {eval_id}  dataset {named}  cancelled" in cancelled.stdout


def test_a_bad_candidate_or_scorer_exits_2_and_sends_nothing(live: Stack, client: Client) -> None:
    for flag, value, said in (
        ("--candidate", "summarise", "argument --candidate: 'summarise' is not NAME@VERSION"),
        ("--candidate", "summarise@", "argument --candidate: 'summarise@' is not NAME@VERSION"),
        ("--scorer", "{not json", "argument --scorer: '{not json' is not valid JSON"),
    ):
        argv = {"--candidate": "p@1", "--scorer": "equals_expected", flag: value}
        refused = run(
            live,
            client,
            "eval",
            "run",
            "--dataset",
            "d",
            *(part for pair in argv.items() for part in pair),
        )
        assert refused.returncode == 2
        assert said in refused.stderr
    assert client.http.get("/v1/evals").json()["data"] == []

    # The API's refusal (no such dataset) is one line too.
    missing = run(
        live,
        client,
        "eval",
        "run",
        "--dataset",
        unique_name("none"),
        "--candidate",
        "p@1",
        "--scorer",
        "equals_expected",
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("aijobs: POST /v1/evals:")
    assert len(missing.stderr.strip().splitlines()) == 1
