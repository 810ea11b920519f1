"""What the commands that talk HTTP to the API share (`aijobs prompts`, `aijobs batch`):
the tenant key and API URL (AIJOBS_API_URL, AIJOBS_API_KEY, or --api-url/--api-key),
problem+json answers shown as one line, connection problems as one line too."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import httpx

from aijobs.settings import get_settings


class CliError(RuntimeError):
    """A problem the user can fix: shown as one line, exit status 2."""


def add_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--api-url", default=None, help="default: AIJOBS_API_URL")
    command.add_argument("--api-key", default=None, help="default: AIJOBS_API_KEY")


def http_errors(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Connection problems as one line (exit 2), not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the aijobs API: {exc}") from None

    return run


def client(args: argparse.Namespace, timeout: float | httpx.Timeout = 30) -> httpx.Client:
    settings = get_settings()
    key = args.api_key or settings.api_key
    if not key:
        raise CliError("set AIJOBS_API_KEY (a tenant key) or pass --api-key")
    return httpx.Client(
        base_url=(args.api_url or settings.api_url).rstrip("/"),
        headers={"Authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def problem(response: httpx.Response) -> CliError:
    """An error answer as one line: the request, the code, the detail (and `errors`)."""
    try:
        body = response.json()
        detail = f"{body.get('code')}: {body.get('detail')}"
        if body.get("errors"):
            detail += " " + json.dumps(body["errors"])
    except ValueError:
        detail = response.text[:500]
    return CliError(f"{response.request.method} {response.request.url.path}: {detail}")


def ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise problem(response)
    return response.json()
