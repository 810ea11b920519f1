"""The eval object (GET /v1/evals/{id}): progress, per candidate its jobs, pass rate,
mean scores, cost (judge jobs included) and latency, a page of items with each
candidate's result, and the items that regressed (or improved) against candidate 0.
Read live from the results and their jobs; nothing here writes.

`report` and `list_evals` are also what the operator's pages and the CLI call: their
signatures stay as they are."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, text
from sqlalchemy.orm import Session

from aijobs import cursor as cursor_of
from aijobs.errors import InvalidRequest, NotFound
from aijobs.money import usd

from . import transitions
from .schemas import SCORERS, scorer_key

OUTPUT_CHARS = 2000  # of each result's output in the report (the job has it all)
ITEMS_LIMIT = 50
ITEMS_MAX = 500
LISTED_MAX = 1000  # regressions and improvements listed (their totals are counted)

_BY_CANDIDATE = text(
    """
    SELECT r.candidate, count(*) AS jobs,
           count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE j.status = 'failed') AS failed,
           count(*) FILTER (WHERE j.cache_hit) AS cache_hits,
           count(*) FILTER (WHERE r.passed) AS passed,
           count(*) FILTER (WHERE r.passed IS NOT NULL) AS verdicts,
           coalesce(sum(j.cost_usd), 0) AS cost
    FROM eval_results r JOIN jobs j ON j.id = r.job_id
    WHERE r.eval_id = :eval_id
    GROUP BY r.candidate
    """
)
_JUDGE_COST = text(
    """
    SELECT r.candidate, coalesce(sum(j.cost_usd), 0) AS cost, count(*) AS judge_jobs
    FROM eval_results r
    CROSS JOIN LATERAL unnest(r.judge_job_ids) AS k(id)
    JOIN jobs j ON j.id = k.id
    WHERE r.eval_id = :eval_id AND r.judge_job_ids IS NOT NULL
    GROUP BY r.candidate
    """
)
_SCORES = text(
    """
    SELECT r.candidate, s.key, avg(CAST(s.value AS float8)) AS mean
    FROM eval_results r CROSS JOIN LATERAL jsonb_each_text(r.scores) AS s(key, value)
    WHERE r.eval_id = :eval_id AND r.passed IS NOT NULL
    GROUP BY r.candidate, s.key
    """
)
# The provider's time for each job's own calls (not judges'); cache hits and followers
# made none and are left out.
_LATENCY = text(
    """
    SELECT r.candidate,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY c.ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY c.ms) AS p95
    FROM eval_results r
    JOIN LATERAL (SELECT sum(a.latency_ms) AS ms FROM attempts a
                  WHERE a.job_id = r.job_id AND a.kind = 'call') c ON c.ms IS NOT NULL
    WHERE r.eval_id = :eval_id
    GROUP BY r.candidate
    """
)
# Items where candidate 0 and another candidate disagree: `base` is candidate 0's verdict.
_VERSUS = text(
    """
    SELECT b.item_index, b.item_id,
           array_agg(o.candidate ORDER BY o.candidate) AS candidates,
           count(*) OVER () AS total
    FROM eval_results b
    JOIN eval_results o ON o.eval_id = b.eval_id AND o.item_index = b.item_index
     AND o.candidate > 0 AND o.passed = NOT :base
    WHERE b.eval_id = :eval_id AND b.candidate = 0 AND b.passed = :base
    GROUP BY b.item_index, b.item_id
    ORDER BY b.item_index
    LIMIT :limit
    """
)
_ITEMS = text(
    """
    SELECT r.item_index, r.item_id, r.candidate, r.job_id, r.judge_job_ids, r.scores,
           r.passed, r.scored_at, j.status, left(j.result ->> 'content', :chars) AS output,
           i.expected
    FROM eval_results r
    JOIN jobs j ON j.id = r.job_id
    JOIN dataset_items i ON i.id = r.item_id
    WHERE r.eval_id = :eval_id AND r.item_index >= :start AND r.item_index < :end
    ORDER BY r.item_index, r.candidate
    """
)
_LIST = text(
    """
    SELECT e.*, d.name AS dataset FROM evals e JOIN datasets d ON d.id = e.dataset_id
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id)
      AND (CAST(:created AS timestamptz) IS NULL
           OR (e.created_at, e.id) < (CAST(:created AS timestamptz), CAST(:last AS uuid)))
    ORDER BY e.created_at DESC, e.id DESC
    LIMIT :limit
    """
)


def _conn(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_id(eval_id: str | uuid.UUID) -> uuid.UUID:
    if isinstance(eval_id, uuid.UUID):
        return eval_id
    try:
        return uuid.UUID(eval_id)
    except ValueError:
        raise NotFound(f"no eval {eval_id}") from None


def find(conn: Connection, tenant_id: uuid.UUID | None, eval_id: str | uuid.UUID) -> RowMapping:
    """The eval (NotFound for a missing one, and for another tenant's alike)."""
    row = transitions.row(conn, tenant_id, _parse_id(eval_id))
    if row is None:
        raise NotFound(f"no eval {eval_id}")
    return row


def _pinned(candidate: dict[str, Any]) -> dict[str, Any]:
    """A candidate as pinned at create, its keys in the documented order (JSONB keeps
    its own)."""
    stored = candidate["prompt"]
    prompt = {"name": stored["name"], "version": stored["version"]}
    if "label" in stored:
        prompt["label"] = stored["label"]
    return {"index": candidate["index"], "prompt": prompt, "model": candidate["model"]}


def _ordered(scores: dict[str, Any] | None, keys: list[str]) -> dict[str, Any] | None:
    if scores is None:
        return None
    return {key: scores[key] for key in keys if key in scores}


def summary(row: RowMapping) -> dict[str, Any]:
    """The eval without its figures: what a list shows."""
    return {
        "id": str(row["id"]),
        "object": "eval",
        "dataset": row["dataset"],
        "status": row["status"],
        "tier": row["tier"],
        "batch_id": str(row["batch_id"]) if row["batch_id"] is not None else None,
        "progress": {"total": row["total"], "done": row["scored"]},
        "candidates": [_pinned(c) for c in row["candidates"]],
        "created_at": _iso(row["created_at"]),
        "finished_at": _iso(row["finished_at"]),
    }


def _candidates(conn: Connection, row: RowMapping) -> tuple[list[dict[str, Any]], Decimal]:
    params = {"eval_id": row["id"]}
    counts = {r["candidate"]: r for r in conn.execute(_BY_CANDIDATE, params).mappings()}
    judges = {r["candidate"]: r for r in conn.execute(_JUDGE_COST, params).mappings()}
    latency = {r["candidate"]: r for r in conn.execute(_LATENCY, params).mappings()}
    means: dict[int, dict[str, float]] = {}
    for r in conn.execute(_SCORES, params).mappings():
        means.setdefault(r["candidate"], {})[r["key"]] = round(float(r["mean"]), 4)
    keys = [scorer_key(i, s) for i, s in enumerate(SCORERS.validate_python(row["scorers"]))]
    out = []
    total = Decimal(0)
    for pinned in map(_pinned, row["candidates"]):
        index = pinned["index"]
        count = counts.get(index)
        judge = judges.get(index)
        lat = latency.get(index)
        cost = Decimal(count["cost"] if count else 0) + Decimal(judge["cost"] if judge else 0)
        total += cost
        verdicts = int(count["verdicts"]) if count else 0
        out.append(
            {
                **pinned,
                "jobs": int(count["jobs"]) if count else 0,
                "succeeded": int(count["succeeded"]) if count else 0,
                "failed": int(count["failed"]) if count else 0,
                "cache_hits": int(count["cache_hits"]) if count else 0,
                "judge_jobs": int(judge["judge_jobs"]) if judge else 0,
                "pass_rate": round(int(count["passed"]) / verdicts, 4)
                if count and verdicts
                else None,
                "scores": {key: means[index][key] for key in keys if key in means.get(index, {})},
                "cost_usd": usd(cost),
                "latency_ms": {
                    "p50": round(lat["p50"]) if lat else None,
                    "p95": round(lat["p95"]) if lat else None,
                },
            }
        )
    return out, total


def _versus(conn: Connection, eval_id: uuid.UUID, base: bool) -> tuple[list[dict[str, Any]], int]:
    rows = list(
        conn.execute(_VERSUS, {"eval_id": eval_id, "base": base, "limit": LISTED_MAX}).mappings()
    )
    listed = [{"item_id": str(r["item_id"]), "candidates": list(r["candidates"])} for r in rows]
    return listed, int(rows[0]["total"]) if rows else 0


def _start(cursor: str | None) -> int:
    return cursor_of.read_position(cursor, "i", "items_cursor") if cursor else 0


def _items(
    conn: Connection, row: RowMapping, keys: list[str], start: int, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    params = {"eval_id": row["id"], "start": start, "end": start + limit, "chars": OUTPUT_CHARS}
    items: dict[int, dict[str, Any]] = {}
    for r in conn.execute(_ITEMS, params).mappings():
        item = items.setdefault(
            r["item_index"],
            {"item_id": str(r["item_id"]), "expected": r["expected"], "results": []},
        )
        scored = r["scored_at"] is not None
        judges = r["judge_job_ids"]
        item["results"].append(
            {
                "candidate": r["candidate"],
                "job_id": str(r["job_id"]),
                "status": r["status"],
                "output": r["output"],
                "passed": r["passed"],
                "scores": _ordered(r["scores"], keys) if scored else None,
                "judge_job_ids": [str(j) for j in judges] if judges else [],
            }
        )
    count = row["total"] // max(len(row["candidates"]), 1)
    next_cursor = cursor_of.position("i", start + limit) if start + limit < count else None
    return [items[index] for index in sorted(items)], next_cursor


def report(
    db: Session | Connection,
    tenant_id: uuid.UUID | None,
    eval_id: str | uuid.UUID,
    *,
    items_limit: int = ITEMS_LIMIT,
    items_cursor: str | None = None,
) -> dict[str, Any]:
    """The eval object: a tenant's eval (another tenant's is NotFound, like a missing
    one), or any tenant's with tenant_id None (the operator's pages). `items` is one
    page (items_limit, 1..ITEMS_MAX) from items_cursor; `items_next_cursor` the next."""
    if not 1 <= items_limit <= ITEMS_MAX:
        raise InvalidRequest(f"items_limit must be 1 to {ITEMS_MAX}")
    conn = _conn(db)
    row = find(conn, tenant_id, eval_id)
    candidates, cost = _candidates(conn, row)
    keys = [scorer_key(i, s) for i, s in enumerate(SCORERS.validate_python(row["scorers"]))]
    items, next_cursor = _items(conn, row, keys, _start(items_cursor), items_limit)
    regressions, regressed = _versus(conn, row["id"], True)
    improvements, improved = _versus(conn, row["id"], False)
    scorers = [
        {"key": scorer_key(i, s), "type": s.type, **s.model_dump(mode="json")}
        for i, s in enumerate(SCORERS.validate_python(row["scorers"]))
    ]
    return {
        **summary(row),
        "scorers": scorers,
        "candidates": candidates,
        "cost_usd": usd(cost),
        "regressions": regressions,
        "regressions_total": regressed,
        "improvements": improvements,
        "improvements_total": improved,
        "items": items,
        "items_next_cursor": next_cursor,
    }


def list_evals(
    db: Session | Connection,
    tenant_id: uuid.UUID | None,
    *,
    limit: int = 20,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, paged on (created_at, id): a tenant's evals, or every tenant's with
    tenant_id None (the operator's pages; each then carries `tenant_id`)."""
    created, last = cursor_of.read_keyset(cursor) if cursor else (None, None)
    params = {"tenant_id": tenant_id, "created": created, "last": last, "limit": limit + 1}
    rows = list(_conn(db).execute(_LIST, params).mappings())
    data = []
    for row in rows[:limit]:
        shown = summary(row)
        if tenant_id is None:
            shown["tenant_id"] = str(row["tenant_id"])
        data.append(shown)
    return data, (
        cursor_of.keyset(rows[limit - 1]["created_at"], rows[limit - 1]["id"])
        if len(rows) > limit
        else None
    )
