"""`aijobs prompts` over HTTP with a tenant key, as CI would run it: push makes a
version only when the file changed and moves a label; list, show and diff read back."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Client
from tests.prompts.test_versions import unique_name
from tests.stack import AIJOBS, Stack


def run(live: Stack, client: Client, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # No database or Redis settings: the commands need only the API and a tenant key.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIJOBS_")}
    env |= {"AIJOBS_API_URL": live.base_url, "AIJOBS_API_KEY": client.api_key}
    return subprocess.run(
        [*AIJOBS, "prompts", *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def pushed(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


YAML = """\
name: {name}
model: openai/gpt-4o-mini
params:
  temperature: 0.2
messages:
  - role: system
    content: You summarise.
  - role: user
    content: "Summarise: {{{{text}}}}"
checks:
  - type: max_chars
    value: 400
note: {note}
"""


def test_push_creates_a_version_only_when_the_file_changed(
    live: Stack, client: Client, tmp_path: Path
) -> None:
    name = unique_name("cli")
    path = tmp_path / "summarise.yaml"
    path.write_text(YAML.format(name=name, note="first"))
    assert pushed(run(live, client, tmp_path, "push", str(path))) == [
        {"name": name, "version": 1, "created": True}
    ]
    assert pushed(run(live, client, tmp_path, "push", str(path))) == [
        {"name": name, "version": 1, "created": False}
    ]
    assert len(client.http.get(f"/v1/prompts/{name}").json()["versions"]) == 1

    path.write_text(YAML.format(name=name, note="second"))
    assert pushed(run(live, client, tmp_path, "push", str(path), "--label", "production")) == [
        {"name": name, "version": 2, "created": True, "label": "production"}
    ]
    # The same content again with another label: no new version, the label moves.
    assert pushed(run(live, client, tmp_path, "push", str(path), "--label", "staging")) == [
        {"name": name, "version": 2, "created": False, "label": "staging"}
    ]
    shown = client.http.get(f"/v1/prompts/{name}").json()
    assert shown["labels"] == {"production": 2, "staging": 2}
    assert shown["versions"][1]["checks"][0]["type"] == "max_chars"

    # JSON files too; pushing old content again makes a new version (compared with the
    # latest only: to roll back, move the label instead).
    json_path = tmp_path / "first.json"
    first = {
        k: v
        for k, v in shown["versions"][0].items()
        if k not in ("version", "variables", "created_at")
    }
    json_path.write_text(json.dumps(first))
    assert pushed(run(live, client, tmp_path, "push", str(json_path), "--label", "production")) == [
        {"name": name, "version": 3, "created": True, "label": "production"}
    ]

    listing = run(live, client, tmp_path, "list")
    assert listing.returncode == 0 and f"{name}\tv3\t" in listing.stdout
    show = run(live, client, tmp_path, "show", name)
    assert json.loads(show.stdout)["labels"]["production"] == 3
    diff = run(live, client, tmp_path, "diff", name, "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert "-note: first\n" in diff.stdout and "+note: second\n" in diff.stdout


def test_push_reports_what_the_api_refused(live: Stack, client: Client, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        YAML.format(name=unique_name("cli"), note="x").replace("gpt-4o-mini", "no-such")
    )
    result = run(live, client, tmp_path, "push", str(path))
    assert result.returncode == 2 and "unknown_model" in result.stderr
    missing = tmp_path / "nameless.yaml"
    missing.write_text("model: openai/gpt-4o-mini\n")
    result = run(live, client, tmp_path, "push", str(missing))
    assert result.returncode == 2 and "name" in result.stderr
