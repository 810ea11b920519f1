"""`aijobs stats` shows the queue by tenant: a line per busy tenant and priority with its
jobs queued and running and the oldest queued job's age; idle tenants are left out."""

from __future__ import annotations

import re
import subprocess

from sqlalchemy import create_engine

from tests.admin import queue_jobs
from tests.conftest import Services
from tests.helpers import unique
from tests.stack import AIJOBS, child_env


def test_stats_has_the_queue_by_tenant(services: Services) -> None:
    engine = create_engine(services.database_url)
    busy, idle = unique("stats-busy"), unique("stats-idle")
    with engine.begin() as conn:
        tenant = queue_jobs.tenant(conn, busy, weight=2)
        quiet = queue_jobs.tenant(conn, idle)
        queue_jobs.jobs(conn, tenant, "queued", count=4, age_s=300)
        queue_jobs.jobs(conn, tenant, "running", count=2)
        queue_jobs.jobs(conn, tenant, "running", "batch")
        queue_jobs.jobs(conn, quiet, "succeeded")
    try:
        result = subprocess.run(
            [*AIJOBS, "stats"],
            env=child_env(services.database_url, services.redis_url),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        with engine.begin() as conn:
            queue_jobs.forget(conn, [tenant, quiet])
        engine.dispose()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "queue by tenant" in out
    section = out[out.index("queue by tenant") :]
    interactive = re.search(
        rf"^\s+{re.escape(busy)}\s+interactive\s+4\s+2\s+(\S+) s$", section, re.M
    )
    assert interactive is not None, out
    assert 300 <= float(interactive.group(1)) < 400
    assert re.search(rf"^\s+{re.escape(busy)}\s+batch\s+0\s+1\s*$", section, re.M), out
    assert idle not in out
