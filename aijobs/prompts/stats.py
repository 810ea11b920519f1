"""How each version of a prompt does, from its jobs: counts, outcomes by error code,
cost, latency, the share whose checks passed, and the feedback given on its jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

from aijobs.money import usd
from aijobs.prompts.service import prompt_id

# Latency: from submit to the end, what a client waits (ended jobs only). Jobs answered
# from the cache count, at their (near zero) latency and zero cost.
_BY_VERSION = text(
    """
    SELECT (prompt ->> 'version')::int AS version, count(*) AS jobs,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE cache_hit) AS cache_hits,
           count(*) FILTER (WHERE jsonb_array_length(coalesce(checks, '[]')) > 0) AS checked,
           count(*) FILTER (WHERE jsonb_array_length(coalesce(checks, '[]')) > 0
                              AND NOT jsonb_path_exists(checks, '$[*] ? (@.passed == false)'))
               AS checks_passed,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - created_at)
               FILTER (WHERE finished_at IS NOT NULL) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY finished_at - created_at)
               FILTER (WHERE finished_at IS NOT NULL) AS p95
    FROM jobs
    WHERE tenant_id = :tenant_id AND prompt ->> 'name' = :name AND prompt IS NOT NULL
      AND created_at >= :start AND created_at < :end
    GROUP BY 1 ORDER BY 1
    """
)
_FAILED_BY_CODE = text(
    """
    SELECT (prompt ->> 'version')::int AS version, error_code, count(*) AS n
    FROM jobs
    WHERE tenant_id = :tenant_id AND prompt ->> 'name' = :name AND prompt IS NOT NULL
      AND created_at >= :start AND created_at < :end AND status = 'failed'
    GROUP BY 1, 2
    """
)

# The feedback on those jobs, per version and name, in one statement: numbers and
# booleans (as 1/0) averaged together, strings counted by value (the 20 most given).
_FEEDBACK = text(
    """
    WITH given AS (
        SELECT (j.prompt ->> 'version')::int AS version, f.name,
               jsonb_typeof(f.value) = 'string' AS is_text,
               CASE WHEN jsonb_typeof(f.value) = 'string' THEN f.value #>> '{}' END AS text_value,
               CASE jsonb_typeof(f.value)
                   WHEN 'number' THEN f.value::numeric
                   WHEN 'boolean' THEN f.value::boolean::int
               END AS num
        FROM jobs j JOIN feedback f ON f.job_id = j.id AND f.tenant_id = j.tenant_id
        WHERE j.tenant_id = :tenant_id AND j.prompt ->> 'name' = :name AND j.prompt IS NOT NULL
          AND j.created_at >= :start AND j.created_at < :end
    ), grouped AS (
        SELECT version, name, is_text, text_value, count(*) AS n, avg(num) AS mean
        FROM given GROUP BY version, name, is_text, text_value
    )
    SELECT version, name, is_text, text_value, n, mean, total FROM (
        SELECT grouped.*,
               row_number() OVER (PARTITION BY version, name, is_text ORDER BY n DESC, text_value)
                   AS rank,
               sum(n) OVER (PARTITION BY version, name) AS total
        FROM grouped
    ) ranked
    WHERE rank <= :top
    ORDER BY version, name, is_text, rank
    """
)
TOP_STRINGS = 20


def _ms(interval: timedelta | None) -> int | None:
    return None if interval is None else round(interval.total_seconds() * 1000)


def stats(
    session: Session, tenant_id: uuid.UUID, name: str, *, start: date, end: date
) -> dict[str, Any]:
    """Per version with jobs in [start, end) (UTC days), in version order."""
    conn = session.connection()
    prompt_id(conn, tenant_id, name)  # 404 for a missing (or another tenant's) prompt
    params = {
        "tenant_id": tenant_id,
        "name": name,
        "start": datetime.combine(start, time(), UTC),
        "end": datetime.combine(end, time(), UTC),
    }
    feedback = _feedback(conn, params)
    failed: dict[int, dict[str, int]] = {}
    for row in conn.execute(_FAILED_BY_CODE, params):
        failed.setdefault(row.version, {})[row.error_code or "unknown"] = int(row.n)
    versions = [
        {
            "version": row.version,
            "jobs": int(row.jobs),
            "succeeded": int(row.succeeded),
            "failed": int(row.failed),
            "failed_by_code": failed.get(row.version, {}),
            "cache_hits": int(row.cache_hits),
            # The share of its jobs whose last output passed all its checks, among the
            # jobs where checks ran (None when none did).
            "checks_passed": (
                round(int(row.checks_passed) / int(row.checked), 4) if row.checked else None
            ),
            "feedback": feedback.get(row.version, {}),
            "cost_usd": usd(Decimal(row.cost_usd)),
            "latency_ms": {"p50": _ms(row.p50), "p95": _ms(row.p95)},
        }
        for row in conn.execute(_BY_VERSION, params)
    ]
    return {"name": name, "start": start.isoformat(), "end": end.isoformat(), "versions": versions}


def _feedback(conn: Connection, params: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """{version: {name: summary}}. A name's summary has `count` (all its feedback) and,
    as its values were given, `mean` (of the numbers and booleans, true as 1) and
    `values` ({string: count}, the TOP_STRINGS most given)."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    for row in conn.execute(_FEEDBACK, {**params, "top": TOP_STRINGS}):
        summary = found.setdefault(row.version, {}).setdefault(row.name, {"count": int(row.total)})
        if row.is_text:
            summary.setdefault("values", {})[row.text_value] = int(row.n)
        else:
            summary["mean"] = round(float(row.mean), 6)
    return found
