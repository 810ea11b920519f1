"""`aijobs dev`: migrate + API + worker in one command, on the embedded servers unless
the URLs are set, and the note it leaves for the other commands.

While dev runs, `.aijobs/dev.json` (under AIJOBS_DATA_DIR) names its servers; any
other `aijobs` command run beside it with no URLs configured uses them, so the
README's commands work with nothing exported. The note goes when dev stops."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aijobs.settings import Settings, get_settings
from cli import embedded
from cli.processes import cmd_migrate

NOTE = "dev.json"
ME = [sys.executable, "-m", "cli"]


def wait_ready(url: str, child: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until `url` answers 200; fails if `child` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"process exited during start-up: {child.args!r}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def _note_path(settings: Settings) -> Path:
    return settings.data_dir / NOTE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def use_running_dev() -> None:
    """Before any other command: the URLs of a running `aijobs dev`, for the settings
    that are not configured (the environment and `.env` win)."""
    settings = get_settings()
    if settings.database_url and settings.redis_url:
        return
    try:
        note = json.loads(_note_path(settings).read_text())
    except (OSError, ValueError):
        return
    if not isinstance(note, dict) or not _alive(int(note.get("pid", 0))):
        return
    if not settings.database_url:
        os.environ["AIJOBS_DATABASE_URL"] = str(note["database_url"])
    if not settings.redis_url:
        os.environ["AIJOBS_REDIS_URL"] = str(note["redis_url"])
    get_settings.cache_clear()


def _banner(base: str, settings: Settings, api_key: str, webhook_secret: str) -> str:
    curl = (
        f"curl -s -X POST {base}/v1/jobs -H 'Authorization: Bearer {api_key}'"
        " -H 'Content-Type: application/json'"
        ' -d \'{"model":"sim/echo","messages":[{"role":"user","content":"hi"}]}\''
    )
    return "\n".join(
        [
            "",
            f"aijobs dev is up: API {base} (docs {base}/docs), 1 worker.",
            f"  database: {settings.database_url}",
            f"  redis:    {settings.redis_url}",
            "  other aijobs commands run in this directory use these servers.",
            f"  demo API key (tenant demo, shown once): {api_key}",
            f"  demo webhook secret: {webhook_secret}",
            "  try the simulator (sim/echo, no provider key needed):",
            f"    {curl}",
            "",
        ]
    )


def cmd_dev(args: argparse.Namespace) -> int:
    """migrate + api + worker in one command, on the embedded servers unless the URLs are set."""
    settings = get_settings()
    servers = None
    if not settings.database_url or not settings.redis_url:
        servers = embedded.start(settings.data_dir)
        if not settings.database_url:
            os.environ["AIJOBS_DATABASE_URL"] = servers.database_url
        if not settings.redis_url:
            os.environ["AIJOBS_REDIS_URL"] = servers.redis_url
        get_settings.cache_clear()
    settings = get_settings()
    note = _note_path(settings)
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        cmd_migrate(args)
        from aijobs.db import session_scope
        from aijobs.tenants.service import create_key

        with session_scope() as session:
            demo = create_key(session, "demo")
        os.environ.setdefault("AIJOBS_LOG_FORMAT", "text")
        status_port = settings.worker_metrics_port or embedded.free_port()
        api = subprocess.Popen([*ME, "api", "--host", args.host, "--port", str(args.port)])
        children.append(api)
        worker = subprocess.Popen(
            [*ME, "worker", "--concurrency", str(args.concurrency)],
            env={**os.environ, "AIJOBS_WORKER_METRICS_PORT": str(status_port)},
        )
        children.append(worker)
        base = f"http://{args.host}:{args.port}"
        wait_ready(base + "/readyz", api)
        wait_ready(f"http://127.0.0.1:{status_port}/readyz", worker)
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "api_url": base,
                    "database_url": settings.database_url,
                    "redis_url": settings.redis_url,
                }
            )
        )
        # Last, once both are up, so the key is not lost among start-up lines.
        print(_banner(base, settings, demo.api_key, demo.webhook_secret), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(OSError):
            note.unlink()
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if servers is not None:
            servers.stop()
