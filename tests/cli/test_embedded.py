"""The embedded servers stop when asked, even with clients still connected."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import redis

from cli import embedded


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_redis_and_postgres_with_clients_connected(tmp_path: Path) -> None:
    servers = embedded.start(tmp_path / "data")
    redis_port = int(servers.redis_url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(servers.redis_url)
    assert client.ping()
    with psycopg.connect(servers.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    try:
        servers.stop()
        assert not _listening(redis_port), "redis-server still running after stop()"
    finally:
        client.close()
