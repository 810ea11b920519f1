"""`aijobs batch`: submit a JSONL file as one batch and follow it, read a batch, stream
its results, list, cancel. Like `aijobs prompts`, the commands talk HTTP to the API
with a tenant key (AIJOBS_API_URL, AIJOBS_API_KEY, or --api-url/--api-key): the batch
belongs to the key's tenant; `--tenant T` makes sure that is T before anything is sent.

The file is streamed to the API in chunks as it is read (never held whole), with a
progress bar for the upload and then one for the jobs ending (on stderr: stdout keeps
what a script reads)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from cli.http import CliError, add_flags, client, http_errors, ok, problem

CHUNK = 256 * 1024
LONG = httpx.Timeout(30, read=600, write=600)
ENDED = ("completed", "cancelled")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    batch = sub.add_parser("batch", help="batches of jobs (over the HTTP API)")
    commands = batch.add_subparsers(dest="batch_command", required=True)

    submit = commands.add_parser(
        "submit", help="upload a JSONL file (one job with its custom_id a line) as one batch"
    )
    submit.add_argument("file", type=Path, metavar="FILE.jsonl")
    submit.add_argument("--tenant", default=None, help="refuse unless the key is this tenant's")
    submit.add_argument("--tier", choices=("standard", "batch"), default=None)
    submit.add_argument("--webhook-url", default=None, help="batch.completed is sent here")
    submit.add_argument("--idempotency-key", default=None, help="submitting again is safe")
    submit.add_argument(
        "--no-wait", action="store_true", help="print the batch id once accepted, and return"
    )
    submit.add_argument("--poll", type=float, default=1.0, help="seconds between progress reads")
    add_flags(submit)
    submit.set_defaults(func=http_errors(cmd_submit))

    for name, func, text in (
        ("status", cmd_status, "a batch: status, counts, cost (JSON)"),
        ("results", cmd_results, "a batch's results as NDJSON, in input order, to stdout"),
        ("cancel", cmd_cancel, "cancel a batch's queued jobs (running ones finish)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("batch_id", metavar="ID")
        add_flags(command)
        command.set_defaults(func=http_errors(func))

    listing = commands.add_parser("list", help="the tenant's batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    add_flags(listing)
    listing.set_defaults(func=http_errors(cmd_list))


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _check_tenant(http: httpx.Client, tenant: str | None) -> None:
    """The key must be T's (a name or an id): a batch under the wrong key would run
    on another tenant's budget."""
    if tenant is None:
        return
    owner = ok(http.get("/v1/tenant"))
    if tenant not in (owner["name"], owner["id"]):
        raise CliError(
            f"the API key is tenant {owner['name']!r}'s, not {tenant!r}; nothing was sent"
        )


def _chunks(path: Path, advance: Any) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            advance(len(chunk))
            yield chunk


def _upload(http: httpx.Client, args: argparse.Namespace, size: int) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    params = {"tier": args.tier, "webhook_url": args.webhook_url}
    headers = {"Content-Type": "application/x-ndjson", "Content-Length": str(size)}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    columns = (TextColumn("upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=_console()) as progress:
        task = progress.add_task("upload", total=size)
        response = http.post(
            "/v1/batches",
            params={k: v for k, v in params.items() if v is not None},
            headers=headers,
            content=_chunks(args.file, lambda n: progress.advance(task, n)),
        )
    if response.status_code != 202:
        raise problem(response)
    batch: dict[str, Any] = response.json()
    return batch


def _ended(counts: dict[str, int]) -> int:
    return counts["succeeded"] + counts["failed"] + counts["cancelled"]


def _follow(http: httpx.Client, batch: dict[str, Any], poll_s: float) -> dict[str, Any]:
    """Poll the batch until it ends, with a bar of the jobs that ended."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (
        TextColumn("jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=_console()) as progress:
        task = progress.add_task("jobs", total=batch["counts"]["total"], detail="")
        while True:
            counts = batch["counts"]
            detail = (
                f"{counts['failed']} failed, {counts['cancelled']} cancelled, ${batch['cost_usd']}"
            )
            progress.update(task, completed=_ended(counts), detail=detail)
            if batch["status"] in ENDED:
                return batch
            time.sleep(poll_s)
            batch = ok(http.get(f"/v1/batches/{batch['id']}"))


def cmd_submit(args: argparse.Namespace) -> int:
    """Exit 0 once the batch completed (its jobs may have failed: see its counts), 1 if
    it was cancelled; with --no-wait, 0 once it is accepted."""
    try:
        size = args.file.stat().st_size
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}") from None
    # Sending 100 MiB, and the answer to it (the batch is written before it comes), can
    # take minutes on a loaded machine; connecting cannot.
    with client(args, timeout=LONG) as http:
        _check_tenant(http, args.tenant)
        batch = _upload(http, args, size)
        if args.no_wait:
            print(batch["id"])
            return 0
        print(f"batch {batch['id']} accepted: {batch['counts']['total']} jobs", file=sys.stderr)
        try:
            batch = _follow(http, batch, args.poll)
        except KeyboardInterrupt:
            print(
                f"stopped following; the batch goes on: aijobs batch status {batch['id']}",
                file=sys.stderr,
            )
            return 130
    print(json.dumps(batch, indent=2))
    return 0 if batch["status"] == "completed" else 1


def cmd_status(args: argparse.Namespace) -> int:
    with client(args) as http:
        print(json.dumps(ok(http.get(f"/v1/batches/{args.batch_id}")), indent=2))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    """The API's NDJSON as it arrives: constant memory, whatever the batch's size."""
    with (
        client(args, timeout=LONG) as http,
        http.stream("GET", f"/v1/batches/{args.batch_id}/results") as response,
    ):
        if response.status_code >= 400:
            response.read()
            raise problem(response)
        out = sys.stdout.buffer
        for chunk in response.iter_bytes():
            out.write(chunk)
        out.flush()
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client(args) as http:
        print(json.dumps(ok(http.post(f"/v1/batches/{args.batch_id}/cancel")), indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(f"{'id':<36}  {'status':<10} {'ended/total':>13} {'failed':>7} {'cost_usd':>12}  created")
    shown = 0
    cursor = None
    with client(args) as http:
        while shown < args.limit:
            params: dict[str, Any] = {"limit": min(args.limit - shown, 100)}
            if cursor:
                params["cursor"] = cursor
            page = ok(http.get("/v1/batches", params=params))
            for batch in page["data"]:
                counts = batch["counts"]
                done = f"{_ended(counts)}/{counts['total']}"
                print(
                    f"{batch['id']:<36}  {batch['status']:<10} {done:>13} {counts['failed']:>7}"
                    f" {batch['cost_usd']:>12}  {batch['created_at']}"
                )
                shown += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
    return 0
