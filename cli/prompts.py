"""`aijobs prompts`: prompts as code. The commands talk HTTP to the API with a tenant
key (AIJOBS_API_URL, AIJOBS_API_KEY, or --api-url/--api-key), so prompts kept in a
repository can ship from CI like any other client of aijobs, with no database access.

A prompt file (YAML or JSON, one prompt each) holds `name` and the version fields:
messages, model, params, response_schema, fallbacks, checks, note."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from cli.http import CliError as PromptsError
from cli.http import add_flags as http_flags
from cli.http import client as _client
from cli.http import http_errors as _http_errors
from cli.http import ok as _ok

VERSION_FIELDS = ("messages", "model", "params", "response_schema", "fallbacks", "checks", "note")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prompts = sub.add_parser("prompts", help="versioned prompt templates (over the HTTP API)")
    commands = prompts.add_subparsers(dest="prompts_command", required=True)

    push = commands.add_parser(
        "push", help="create a version from each file whose content changed; move a label"
    )
    push.add_argument("files", nargs="+", type=Path, metavar="FILE")
    push.add_argument("--label", default=None, help="point this label at the pushed version")
    http_flags(push)
    push.set_defaults(func=_http_errors(cmd_push))

    listing = commands.add_parser("list", help="the tenant's prompts, latest versions, labels")
    http_flags(listing)
    listing.set_defaults(func=_http_errors(cmd_list))

    show = commands.add_parser("show", help="a prompt's labels and versions (JSON)")
    show.add_argument("name")
    http_flags(show)
    show.set_defaults(func=_http_errors(cmd_show))

    diff = commands.add_parser("diff", help="a unified diff of two versions")
    diff.add_argument("name")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    http_flags(diff)
    diff.set_defaults(func=_http_errors(cmd_diff))


def load(path: Path) -> tuple[str, dict[str, Any]]:
    """The prompt's name and its version body. YAML reads JSON too."""
    import yaml  # type: ignore[import-untyped]

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptsError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise PromptsError(f"{path}: expected a mapping with a `name` and the version fields")
    unknown = sorted(set(data) - {"name", *VERSION_FIELDS})
    if unknown:
        raise PromptsError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return data["name"], {key: value for key, value in data.items() if key != "name"}


def cmd_push(args: argparse.Namespace) -> int:
    loaded = [load(path) for path in args.files]  # every file parses before any is sent
    with _client(args) as client:
        for name, body in loaded:
            response = client.post(
                f"/v1/prompts/{name}/versions", params={"only_if_changed": "true"}, json=body
            )
            version = _ok(response)
            line: dict[str, Any] = {
                "name": name,
                "version": version["version"],
                "created": response.status_code == 201,
            }
            if args.label:
                _ok(
                    client.put(
                        f"/v1/prompts/{name}/labels/{args.label}",
                        json={"version": version["version"]},
                    )
                )
                line["label"] = args.label
            print(json.dumps(line))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = _ok(client.get("/v1/prompts", params=params))
            for prompt in page["data"]:
                labels = " ".join(f"{k}={json.dumps(v)}" for k, v in prompt["labels"].items())
                print(f"{prompt['name']}\tv{prompt['latest_version']}\t{labels}".rstrip())
            cursor = page["next_cursor"]
            if not cursor:
                return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(_ok(client.get(f"/v1/prompts/{args.name}")), indent=2))
    return 0


def _lines(version: dict[str, Any]) -> list[str]:
    import yaml

    content = {key: version[key] for key in VERSION_FIELDS}
    text: str = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)
    return text.splitlines(keepends=True)


def cmd_diff(args: argparse.Namespace) -> int:
    with _client(args) as client:
        old, new = (
            _ok(client.get(f"/v1/prompts/{args.name}/versions/{number}"))
            for number in (args.v1, args.v2)
        )
    sys.stdout.writelines(
        difflib.unified_diff(
            _lines(old), _lines(new), f"{args.name} v{args.v1}", f"{args.name} v{args.v2}"
        )
    )
    return 0
