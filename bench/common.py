"""Shared bench plumbing: settings from the environment, a fresh database, child processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1/aijobs_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
API_QUEUE = "bench_api_baseline"
WORKER_QUEUE = "bench_worker_baseline"
BASELINE_TABLES = """
CREATE TABLE IF NOT EXISTS bench_jobs (
    id uuid PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_rows (
    id uuid PRIMARY KEY, done boolean NOT NULL DEFAULT false,
    started_at timestamptz, updated_at timestamptz
);
"""


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)


def libpq_url(url: str) -> str:
    """psycopg wants postgresql://, SQLAlchemy URLs may carry +psycopg."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_url(url).split("://", 1)[1]


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIJOBS_DATABASE_URL": database_url(),
            "AIJOBS_REDIS_URL": redis_url(),
            "AIJOBS_SIM_LATENCY_S": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AIJOBS_BROKER_URL", None)
    env.update(extra or {})
    return env


def fresh_database() -> None:
    """Drop and create the bench database, then create the baseline tables."""
    url = libpq_url(database_url())
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing odd database name {name!r}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BASELINE_TABLES)


def sql(statement: str) -> None:
    with psycopg.connect(libpq_url(database_url()), autocommit=True) as conn:
        conn.execute(statement)


def scalar(statement: str) -> int:
    with psycopg.connect(libpq_url(database_url()), autocommit=True) as conn:
        row = conn.execute(statement).fetchone()
    return int(row[0]) if row else 0


def scalar_float(statement: str) -> float:
    with psycopg.connect(libpq_url(database_url()), autocommit=True) as conn:
        row = conn.execute(statement).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def flush_redis() -> None:
    client = redis.Redis.from_url(redis_url())
    client.flushdb()
    client.close()


@dataclass
class Children:
    """Child processes of one bench run; stop() ends every one of them."""

    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aijobs-bench-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
