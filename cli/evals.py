"""`aijobs eval`: run a dataset through up to five candidates (a prompt version or label,
optionally on another model) and compare them; show, list and cancel evals. Like
`aijobs batch`, the commands talk HTTP to the API with a tenant key (AIJOBS_API_URL,
AIJOBS_API_KEY, or --api-url/--api-key).

`run` follows the eval with a progress bar on stderr, then prints the comparison to
stdout: one row per candidate (pass rate, mean scores, cost, latency), then the
regressions (items candidate 0 passes and another fails)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

import httpx

from cli.http import add_flags, client, http_errors, ok, problem

ENDED = ("completed", "cancelled")
# Prompt names and labels (docs/api.md, "Prompts"): neither holds "@" nor ":".
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_CANDIDATE = re.compile(rf"(?P<name>{_NAME})@(?P<ref>{_NAME})(?::(?P<model>.+))?")
CANDIDATE_FORM = "NAME@VERSION or NAME@LABEL, optionally :MODEL (summarise@3:openai/gpt-4o-mini)"


def candidate(spec: str) -> dict[str, Any]:
    """`summarise@3`, `summarise@production`, `summarise@3:openai/gpt-4o-mini` as the
    candidate of POST /v1/evals."""
    found = _CANDIDATE.fullmatch(spec.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{spec!r} is not {CANDIDATE_FORM}")
    ref = found["ref"]
    prompt: dict[str, Any] = {"name": found["name"]}
    if ref.isdecimal():
        prompt["version"] = int(ref)
    else:
        prompt["label"] = ref
    body: dict[str, Any] = {"prompt": prompt}
    if found["model"]:
        body["model"] = found["model"]
    return body


def scorer(spec: str) -> dict[str, Any]:
    """A bare type (`equals_expected`) or a check as a JSON object."""
    text = spec.strip()
    if not text.startswith("{"):
        if not re.fullmatch(r"[a-z_]+", text):
            raise argparse.ArgumentTypeError(f"{spec!r} is neither a scorer type nor JSON")
        return {"type": text}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{spec!r} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{spec!r} is not a JSON object")
    return value


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evals = sub.add_parser("eval", help="evaluation runs: compare prompts on a dataset (HTTP)")
    commands = evals.add_subparsers(dest="eval_command", required=True)

    run = commands.add_parser("run", help="run a dataset through the candidates and compare")
    run.add_argument("--dataset", required=True)
    run.add_argument(
        "--candidate",
        dest="candidates",
        action="append",
        required=True,
        type=candidate,
        metavar="NAME@REF[:MODEL]",
        help="a prompt version or label (1 to 5; the first is the baseline)",
    )
    run.add_argument(
        "--scorer",
        dest="scorers",
        action="append",
        required=True,
        type=scorer,
        metavar="TYPE|JSON",
        help='equals_expected, json_matches_expected, or a check: \'{"type": "regex", ...}\'',
    )
    run.add_argument("--tier", choices=("standard", "batch"), default=None)
    run.add_argument("--no-wait", action="store_true", help="print the eval id, and return")
    run.add_argument("--poll", type=float, default=1.0, help="seconds between progress reads")
    run.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 if there is any regression"
    )
    add_flags(run)
    run.set_defaults(func=http_errors(cmd_run))

    show = commands.add_parser("show", help="an eval's comparison (or --json: the eval object)")
    show.add_argument("eval_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the eval object as the API gives it")
    add_flags(show)
    show.set_defaults(func=http_errors(cmd_show))

    cancel = commands.add_parser("cancel", help="cancel an eval's jobs not yet started")
    cancel.add_argument("eval_id", metavar="ID")
    add_flags(cancel)
    cancel.set_defaults(func=http_errors(cmd_cancel))

    listing = commands.add_parser("list", help="the tenant's evals, newest first")
    listing.add_argument("--limit", type=int, default=20)
    add_flags(listing)
    listing.set_defaults(func=http_errors(cmd_list))


# --- the comparison ---------------------------------------------------------------------


def prompt_ref(candidate: dict[str, Any]) -> str:
    """`summarise@3 (production)`: the version a candidate ran, and the label it came by."""
    prompt = candidate["prompt"]
    text = f"{prompt['name']}@{prompt['version']}"
    return text + (f" ({prompt['label']})" if prompt.get("label") else "")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        shown = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(shown).rstrip()

    return [line(header), *(line(row) for row in rows)]


def comparison(found: dict[str, Any]) -> list[str]:
    """The eval as the terminal shows it: a heading, a row per candidate, the regressions."""
    candidates = found["candidates"]
    scorers = [scorer["key"] for scorer in found["scorers"]]
    header = ["#", "candidate", "model", "jobs", "succeeded", "pass rate"]
    header += [*scorers, "cost_usd", "p50 ms", "p95 ms"]
    rows = []
    for c in candidates:
        latency = c["latency_ms"]
        rows.append(
            [
                str(c["index"]),
                prompt_ref(c),
                c["model"],
                str(c["jobs"]),
                str(c["succeeded"]),
                _rate(c["pass_rate"]),
                *(_number(c["scores"].get(name)) for name in scorers),
                str(c["cost_usd"]),
                *("-" if latency[k] is None else str(latency[k]) for k in ("p50", "p95")),
            ]
        )
    progress = found["progress"]
    lines = [
        f"eval {found['id']}  dataset {found['dataset']}  {found['status']}"
        f"  {progress['done']}/{progress['total']} jobs",
        "",
        *_table(header, rows, right={0, *range(3, len(header))}),
        "",
    ]
    for kind, what in (("regressions", "passes"), ("improvements", "fails")):
        lines += _versus(found, kind, what)
    return lines


def _versus(found: dict[str, Any], kind: str, what: str) -> list[str]:
    """The items candidate 0 passes and another fails (or the other way round)."""
    listed, total = found[kind], found[f"{kind}_total"]
    other = "fails" if what == "passes" else "passes"
    if not total:
        return [f"{kind.capitalize()}: none."]
    heading = f"{kind.capitalize()} ({total}): items candidate 0 {what} and those listed {other}"
    lines = [heading]
    for item in listed:
        lines.append(
            f"  item {item['item_id']}: candidate {', '.join(map(str, item['candidates']))}"
        )
    if total > len(listed):
        lines.append(f"  ... and {total - len(listed)} more (aijobs eval show --json)")
    return lines


# --- the commands -----------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _follow(http: httpx.Client, found: dict[str, Any], poll_s: float) -> dict[str, Any]:
    """Poll the eval until it ends, with a bar of its jobs that ended."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (
        TextColumn("eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=_console()) as progress:
        task = progress.add_task("eval", total=found["progress"]["total"], status="")
        while True:
            done = found["progress"]
            progress.update(
                task, total=done["total"], completed=done["done"], status=found["status"]
            )
            if found["status"] in ENDED:
                return found
            time.sleep(poll_s)
            found = ok(http.get(f"/v1/evals/{found['id']}"))


def cmd_run(args: argparse.Namespace) -> int:
    """Exit 0 once the eval completed (1 if it was cancelled, or with --fail-on-regression
    if anything regressed); with --no-wait, 0 once it is accepted."""
    body: dict[str, Any] = {
        "dataset": args.dataset,
        "candidates": args.candidates,
        "scorers": args.scorers,
    }
    if args.tier:
        body["tier"] = args.tier
    with client(args) as http:
        response = http.post("/v1/evals", json=body)
        if response.status_code != 202:
            raise problem(response)
        found: dict[str, Any] = response.json()
        if args.no_wait:
            print(found["id"])
            return 0
        total = found["progress"]["total"]
        print(f"eval {found['id']} accepted: {total} jobs", file=sys.stderr)
        try:
            found = _follow(http, found, args.poll)
        except KeyboardInterrupt:
            print(
                f"stopped following; the eval goes on: aijobs eval show {found['id']}",
                file=sys.stderr,
            )
            return 130
    print("\n".join(comparison(found)))
    if found["status"] != "completed":
        return 1
    return 1 if args.fail_on_regression and found.get("regressions") else 0


def cmd_show(args: argparse.Namespace) -> int:
    with client(args) as http:
        found = ok(http.get(f"/v1/evals/{args.eval_id}"))
    print(json.dumps(found, indent=2) if args.json else "\n".join(comparison(found)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client(args) as http:
        found = ok(http.post(f"/v1/evals/{args.eval_id}/cancel"))
    print("\n".join(comparison(found)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows: list[list[str]] = []
    cursor = None
    with client(args) as http:
        while len(rows) < args.limit:
            params: dict[str, Any] = {"limit": min(args.limit - len(rows), 100)}
            if cursor:
                params["cursor"] = cursor
            page = ok(http.get("/v1/evals", params=params))
            for found in page["data"]:
                progress = found["progress"]
                rows.append(
                    [
                        found["id"],
                        found["dataset"],
                        found["status"],
                        f"{progress['done']}/{progress['total']}",
                        str(len(found.get("candidates") or [])),
                        found["created_at"],
                    ]
                )
            cursor = page.get("next_cursor")
            if not cursor:
                break
    header = ["id", "dataset", "status", "done/total", "candidates", "created"]
    print("\n".join(_table(header, rows[: args.limit], right={3, 4})))
    return 0
