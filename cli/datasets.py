"""`aijobs datasets`: create a dataset and add items to it from a JSONL file (one item a
line: {"variables"?, "messages"?, "expected"?, "metadata"?} or {"from_job", "expected"?}),
over HTTP with a tenant key like `aijobs eval`. Every line parses before any is sent."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.http import CliError, add_flags, client, http_errors, ok


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    datasets = sub.add_parser("datasets", help="datasets of items to evaluate on (HTTP)")
    commands = datasets.add_subparsers(dest="datasets_command", required=True)

    create = commands.add_parser("create", help="a new, empty dataset")
    create.add_argument("name")
    create.add_argument("--description", default=None)
    add_flags(create)
    create.set_defaults(func=http_errors(cmd_create))

    add = commands.add_parser("add", help="add the items of a JSONL file (one a line)")
    add.add_argument("name")
    add.add_argument("file", type=Path, metavar="FILE.jsonl")
    add_flags(add)
    add.set_defaults(func=http_errors(cmd_add))


def load(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The file's items with their line numbers; blank lines are skipped, anything else
    must be a JSON object."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CliError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise CliError(f"{path}:{number}: expected a JSON object")
        items.append((number, item))
    if not items:
        raise CliError(f"{path}: no items")
    return items


def cmd_create(args: argparse.Namespace) -> int:
    body = {"name": args.name}
    if args.description is not None:
        body["description"] = args.description
    with client(args) as http:
        print(json.dumps(ok(http.post("/v1/datasets", json=body)), indent=2))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    """One line of JSON per item added: its line and id. A refused item stops the
    command (exit 2), naming its line; the lines before it stay added."""
    items = load(args.file)
    with client(args) as http:
        for added, (number, item) in enumerate(items):
            try:
                created = ok(http.post(f"/v1/datasets/{args.name}/items", json=item))
            except CliError as exc:
                raise CliError(f"{args.file}:{number}: {exc} ({added} item(s) added)") from None
            print(json.dumps({"line": number, "id": created.get("id")}))
    return 0
