"""The cost ledger read back: spend, tokens and calls by day or model (from the attempt
rows: every provider call), cache hits and what they saved (from the jobs)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from aijobs.money import usd

# By prompt: "name@version" of the job's prompt ("" for jobs that named none).
_PROMPT_KEY = "coalesce({j}prompt ->> 'name' || '@' || ({j}prompt ->> 'version'), '')"
GROUPS = {
    "day": "(started_at AT TIME ZONE 'utc')::date",
    "model": "model",
    "prompt": "(SELECT {} FROM jobs j WHERE j.id = attempts.job_id)".format(
        _PROMPT_KEY.format(j="j.")
    ),
}
SAVING_GROUPS = {
    "day": "(created_at AT TIME ZONE 'utc')::date",
    "model": "current_model",
    "prompt": _PROMPT_KEY.format(j=""),
}


@dataclass
class Line:
    cost_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    cache_hits: int = 0
    saved_usd: Decimal = Decimal(0)
    # Of input_tokens, those the provider read from its prompt cache (at its price).
    cached_input_tokens: int = 0

    def add(self, other: Line) -> None:
        self.cost_usd += other.cost_usd
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.calls += other.calls
        self.cache_hits += other.cache_hits
        self.saved_usd += other.saved_usd
        self.cached_input_tokens += other.cached_input_tokens

    def as_json(self) -> dict[str, Any]:
        return {
            "cost_usd": usd(self.cost_usd),
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "saved_usd": usd(self.saved_usd),
        }


@dataclass
class Report:
    lines: dict[str, Line] = field(default_factory=dict)

    @property
    def total(self) -> Line:
        total = Line()
        for line in self.lines.values():
            total.add(line)
        return total


def _scope(tenant_id: uuid.UUID | None) -> str:
    return "tenant_id = :tenant_id AND" if tenant_id is not None else ""


def report(
    conn: Connection, tenant_id: uuid.UUID | None, *, start: date, end: date, group_by: str
) -> Report:
    """[start, end) in UTC days; one tenant, or all of them (tenant_id None)."""
    params = {
        "tenant_id": tenant_id,
        "start": datetime.combine(start, time(), UTC),
        "end": datetime.combine(end, time(), UTC),
    }
    calls = conn.execute(
        text(
            f"""
            SELECT {GROUPS[group_by]} AS k, sum(cost_usd), sum(input_tokens),
                   sum(output_tokens), count(*), sum(cached_input_tokens)
            FROM attempts
            WHERE {_scope(tenant_id)} started_at >= :start AND started_at < :end
            GROUP BY 1
            """
        ),
        params,
    )
    result = Report()
    for key, cost, tokens_in, tokens_out, count, cached in calls:
        result.lines[str(key)] = Line(
            Decimal(cost),
            int(tokens_in),
            int(tokens_out),
            int(count),
            cached_input_tokens=int(cached),
        )
    hits = conn.execute(
        text(
            f"""
            SELECT {SAVING_GROUPS[group_by]} AS k, count(*), sum(saved_usd)
            FROM jobs
            WHERE {_scope(tenant_id)} cache_hit AND created_at >= :start AND created_at < :end
            GROUP BY 1
            """
        ),
        params,
    )
    for key, count, saved in hits:
        line = result.lines.setdefault(str(key), Line())
        line.cache_hits += int(count)
        line.saved_usd += Decimal(saved)
    result.lines = dict(sorted(result.lines.items()))
    return result
