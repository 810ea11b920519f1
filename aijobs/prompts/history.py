"""A prompt's versions day by day (UTC): each day's jobs, the share whose checks passed,
the mean of each numeric or boolean feedback name, cost and p50 latency, by the day the
jobs were created. What the admin page draws; `stats` has the totals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from aijobs.prompts.service import prompt_id

_DAY = "(j.created_at AT TIME ZONE 'UTC')::date"
_OF_PROMPT = """
    j.tenant_id = :tenant_id AND j.prompt ->> 'name' = :name AND j.prompt IS NOT NULL
    AND j.created_at >= :start AND j.created_at < :end
"""
_JOBS = text(
    f"""
    SELECT (j.prompt ->> 'version')::int AS version, {_DAY} AS day, count(*) AS jobs,
           count(*) FILTER (WHERE jsonb_array_length(coalesce(j.checks, '[]')) > 0) AS checked,
           count(*) FILTER (WHERE jsonb_array_length(coalesce(j.checks, '[]')) > 0
                              AND NOT jsonb_path_exists(j.checks, '$[*] ? (@.passed == false)'))
               AS checks_passed,
           coalesce(sum(j.cost_usd), 0) AS cost_usd,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY j.finished_at - j.created_at)
               FILTER (WHERE j.finished_at IS NOT NULL) AS p50
    FROM jobs j WHERE {_OF_PROMPT}
    GROUP BY 1, 2
    """
)
# Numbers and booleans (true as 1) only: a string has no mean.
_FEEDBACK = text(
    f"""
    SELECT (j.prompt ->> 'version')::int AS version, {_DAY} AS day, f.name,
           avg(CASE jsonb_typeof(f.value)
                   WHEN 'number' THEN f.value::numeric
                   ELSE f.value::boolean::int
               END) AS mean
    FROM jobs j JOIN feedback f ON f.job_id = j.id AND f.tenant_id = j.tenant_id
    WHERE {_OF_PROMPT} AND jsonb_typeof(f.value) IN ('number', 'boolean')
    GROUP BY 1, 2, 3
    """
)


@dataclass
class Day:
    day: date
    jobs: int = 0
    checks_passed: float | None = None  # share of the checked jobs; None: none checked
    feedback: dict[str, float] = field(default_factory=dict)  # name -> mean
    cost_usd: Decimal = Decimal(0)
    p50_ms: int | None = None


@dataclass
class Series:
    version: int
    days: list[Day]  # every day of the window, oldest first, empty ones too
    feedback_names: list[str]  # sorted


def daily(
    session: Session, tenant_id: uuid.UUID, name: str, *, start: date, end: date
) -> list[Series]:
    """Per version with jobs created in [start, end) (UTC days), newest version first."""
    conn = session.connection()
    prompt_id(conn, tenant_id, name)  # 404 for a missing (or another tenant's) prompt
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "name": name,
        "start": datetime.combine(start, time(), UTC),
        "end": datetime.combine(end, time(), UTC),
    }
    count = (end - start).days
    series: dict[int, Series] = {}

    def day_of(version: int, day: date) -> Day:
        if version not in series:
            days = [Day(start + timedelta(days=n)) for n in range(count)]
            series[version] = Series(version, days, [])
        return series[version].days[(day - start).days]

    for row in conn.execute(_JOBS, params):
        found = day_of(row.version, row.day)
        found.jobs = int(row.jobs)
        if row.checked:
            found.checks_passed = round(int(row.checks_passed) / int(row.checked), 4)
        found.cost_usd = Decimal(row.cost_usd)
        if row.p50 is not None:
            found.p50_ms = round(row.p50.total_seconds() * 1000)
    for row in conn.execute(_FEEDBACK, params):
        day_of(row.version, row.day).feedback[row.name] = round(float(row.mean), 6)
    for one in series.values():
        one.feedback_names = sorted({key for day in one.days for key in day.feedback})
    return [series[version] for version in sorted(series, reverse=True)]
