"""The eval state machine, and its results' steps: every transition is named here, over
SQL guarded by the state it leaves, so each is safe to run twice. Drawn in
docs/state-machine.md.

    create    (none)    -> running     the eval, its batch of jobs and a result row per
                                       item x candidate, in one transaction
    complete  running   -> completed   every result resolved (scored >= total)
    cancel    running   -> cancelled   its batch's queued jobs (and queued judge jobs)
                                       cancelled in the same transaction

A result:

    pending  -> judging   start_judging: its judge jobs submitted (judge_job_ids set)
    pending  -> resolved  resolve: scored at once (no judge, or its job did not succeed),
                          or its job was cancelled (no verdict: passed NULL)
    judging  -> resolved  resolve: every judge job has ended

`resolve` adds the rows it changed to the eval's `scored` counter in the same
statement. Who runs `start_judging` and `resolve` also holds the eval's advisory lock
(`try_lock`), so two advances at once never both submit an item's judges."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

CHUNK = 5000

_CREATE = text(
    """
    INSERT INTO evals (id, tenant_id, dataset_id, batch_id, status, tier, candidates, scorers,
                       total)
    VALUES (:id, :tenant_id, :dataset_id, :batch_id, 'running', :tier, :candidates, :scorers,
            :total)
    """
).bindparams(bindparam("candidates", type_=JSONB), bindparam("scorers", type_=JSONB))
_INSERT_RESULTS = text(
    """
    INSERT INTO eval_results (eval_id, item_index, candidate, item_id, job_id)
    SELECT :eval_id, r.item_index, r.candidate, r.item_id, r.job_id
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS r(item_index int, candidate int, item_id uuid, job_id uuid)
    """
)
_LOCK_KEY = "aijobs-eval:"
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_RUNNING = text(
    """
    SELECT id FROM evals WHERE status = 'running'
    ORDER BY advanced_at NULLS FIRST LIMIT :limit
    """
)
_TOUCH = text("UPDATE evals SET advanced_at = now() WHERE id = :id AND status = 'running'")
_START_JUDGING = text(
    """
    UPDATE eval_results r
    SET judge_job_ids = ARRAY(SELECT CAST(k.id AS uuid)
                              FROM jsonb_array_elements_text(s.ids) WITH ORDINALITY AS k(id, n)
                              ORDER BY k.n),
        scores = s.scores
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS s(item_index int, candidate int, ids jsonb, scores jsonb)
    WHERE r.eval_id = :eval_id AND r.item_index = s.item_index AND r.candidate = s.candidate
      AND r.judge_job_ids IS NULL AND r.scored_at IS NULL
    """
)
_RESOLVE = text(
    """
    WITH resolved AS (
        UPDATE eval_results r SET scores = s.scores, passed = s.passed, scored_at = now()
        FROM jsonb_to_recordset(CAST(:rows AS jsonb))
             AS s(item_index int, candidate int, scores jsonb, passed boolean)
        WHERE r.eval_id = :eval_id AND r.item_index = s.item_index
          AND r.candidate = s.candidate AND r.scored_at IS NULL
        RETURNING 1
    )
    UPDATE evals SET scored = scored + (SELECT count(*) FROM resolved)
    WHERE id = :eval_id
    RETURNING (SELECT count(*) FROM resolved)
    """
)
_COMPLETE = text(
    """
    UPDATE evals SET status = 'completed', finished_at = now()
    WHERE id = :id AND status = 'running' AND scored >= total
    RETURNING id
    """
)
_CANCEL = text(
    """
    UPDATE evals SET status = 'cancelled', finished_at = now()
    WHERE id = :id AND status = 'running'
    RETURNING id
    """
)
_ROW = text(
    """
    SELECT e.*, d.name AS dataset FROM evals e JOIN datasets d ON d.id = e.dataset_id
    WHERE e.id = :id AND (CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id)
    """
)


def create(conn: Connection, params: Mapping[str, Any]) -> None:
    """(none) -> running (its results follow, in the same transaction)."""
    conn.execute(_CREATE, params)


def insert_results(conn: Connection, eval_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """The eval's result rows, pending: {item_index, candidate, item_id, job_id}."""
    for start in range(0, len(rows), CHUNK):
        chunk = json.dumps(rows[start : start + CHUNK])
        conn.execute(_INSERT_RESULTS, {"eval_id": eval_id, "rows": chunk})


def try_lock(conn: Connection, eval_id: uuid.UUID) -> bool:
    """The eval's lock for this transaction, if no one holds it (an advance that finds
    it taken leaves the eval to the one holding it)."""
    return bool(conn.execute(_TRY_LOCK, {"key": f"{_LOCK_KEY}{eval_id}"}).scalar())


def lock(conn: Connection, eval_id: uuid.UUID) -> None:
    """The eval's lock for this transaction, waiting for an advance in progress."""
    conn.execute(_LOCK, {"key": f"{_LOCK_KEY}{eval_id}"})


def running(conn: Connection, limit: int) -> list[uuid.UUID]:
    """Running evals, those moved on longest ago first (they take turns)."""
    return [row[0] for row in conn.execute(_RUNNING, {"limit": limit})]


def touch(conn: Connection, eval_id: uuid.UUID) -> None:
    conn.execute(_TOUCH, {"id": eval_id})


def start_judging(conn: Connection, eval_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> None:
    """pending -> judging: {item_index, candidate, ids (judge jobs), scores (so far)}."""
    if rows:
        conn.execute(_START_JUDGING, {"eval_id": eval_id, "rows": json.dumps(rows)})


def resolve(conn: Connection, eval_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> int:
    """pending | judging -> resolved: {item_index, candidate, scores, passed (None: no
    verdict)}; the eval's `scored` grows by the rows changed. Returns that count."""
    if not rows:
        return 0
    return int(conn.execute(_RESOLVE, {"eval_id": eval_id, "rows": json.dumps(rows)}).scalar_one())


def complete(conn: Connection, eval_id: uuid.UUID) -> bool:
    """running -> completed, once every result is resolved."""
    return conn.execute(_COMPLETE, {"id": eval_id}).first() is not None


def cancel(conn: Connection, eval_id: uuid.UUID) -> bool:
    """running -> cancelled (its jobs are cancelled by the caller, in this transaction)."""
    return conn.execute(_CANCEL, {"id": eval_id}).first() is not None


def row(conn: Connection, tenant_id: uuid.UUID | None, eval_id: uuid.UUID) -> RowMapping | None:
    """The eval with its dataset's name: a tenant's (another tenant's is None, like a
    missing one), or any tenant's with tenant_id None (the operator's pages)."""
    return conn.execute(_ROW, {"id": eval_id, "tenant_id": tenant_id}).mappings().first()
