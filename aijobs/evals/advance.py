"""Moving running evals on: score the results whose jobs have ended, submit the judge
jobs a result needs, read the judges back, and complete the eval once every result is
resolved. Idempotent and safe to run at once from several places (the workers'
maintenance pass, a GET of the eval): the eval's advisory lock lets one advance it at a
time, and every write is a guarded transition (aijobs/evals/transitions.py).

Bounded: a call looks at SCORE_BATCH results and submits the judges of at most
JUDGE_BATCH of them; the next call goes on."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, RowMapping, text
from sqlalchemy.orm import Session

from aijobs.jobs import submission

from . import scorers as scoring
from . import transitions
from .schemas import SCORERS

log = logging.getLogger("aijobs.evals")

SCORE_BATCH = 1000
JUDGE_BATCH = 100
EVALS_PER_PASS = 10
ENDED = ("succeeded", "failed", "cancelled")

_EVAL = text("SELECT tenant_id, scorers FROM evals WHERE id = :id AND status = 'running'")
# Pending results whose job has ended, in item order (the unscored index, then the job).
_PENDING = text(
    """
    SELECT r.item_index, r.candidate, j.status, j.result ->> 'content' AS output, i.expected
    FROM eval_results r
    JOIN jobs j ON j.id = r.job_id
    JOIN dataset_items i ON i.id = r.item_id
    WHERE r.eval_id = :eval_id AND r.scored_at IS NULL AND r.judge_job_ids IS NULL
      AND j.status = ANY(:statuses)
    ORDER BY r.item_index, r.candidate
    LIMIT :limit
    """
)
# Judging results whose judge jobs have all ended, each judge's outcome in scorer order.
_JUDGED = text(
    """
    SELECT r.item_index, r.candidate, r.scores,
           jsonb_agg(jsonb_build_object('status', j.status, 'result', j.result)
                     ORDER BY k.n) AS judges
    FROM eval_results r
    CROSS JOIN LATERAL unnest(r.judge_job_ids) WITH ORDINALITY AS k(id, n)
    JOIN jobs j ON j.id = k.id
    WHERE r.eval_id = :eval_id AND r.scored_at IS NULL AND r.judge_job_ids IS NOT NULL
    GROUP BY r.eval_id, r.item_index, r.candidate
    HAVING bool_and(j.status IN ('succeeded', 'failed', 'cancelled'))
       AND (:resolve_cancelled OR bool_and(j.status <> 'cancelled'))
    ORDER BY r.item_index, r.candidate
    LIMIT :limit
    """
)


def _verdict(scores: dict[str, scoring.Score]) -> tuple[dict[str, float], bool]:
    return {key: s.score for key, s in scores.items()}, all(s.passed for s in scores.values())


@dataclass
class _Pass:
    """One advance of one eval: what it resolves, starts judging and must publish."""

    eval_id: uuid.UUID
    tenant_id: uuid.UUID
    scorers: list[Any]
    conn: Connection
    submit_judges: bool
    resolve_cancelled: bool
    resolved: list[dict[str, Any]] = field(default_factory=list)
    judging: list[dict[str, Any]] = field(default_factory=list)
    publish: list[uuid.UUID] = field(default_factory=list)
    _session: Session | None = None

    def resolve(self, row: RowMapping, scores: dict[str, float], passed: bool | None) -> None:
        self.resolved.append(
            {
                "item_index": row["item_index"],
                "candidate": row["candidate"],
                "scores": scores,
                "passed": passed,
            }
        )

    def _submit(self, request: Any) -> uuid.UUID:
        """An ordinary job of the tenant, in this transaction (cache, dedup: a hit is
        succeeded at once, an identical judge in flight is followed)."""
        if self._session is None:
            # Joins the caller's transaction; its commit and close leave it alone.
            self._session = Session(bind=self.conn, join_transaction_mode="rollback_only")
        submitted = submission.submit(self._session, self.tenant_id, request)
        job_id = uuid.UUID(str(submitted.row["id"]))
        if submitted.publish:
            self.publish.append(job_id)
        return job_id

    def close(self) -> None:
        if self._session is not None:
            self._session.close()  # rollback_only: the caller's transaction goes on

    def pending(self, row: RowMapping) -> None:
        status = row["status"]
        if status == "cancelled":
            if self.resolve_cancelled:
                self.resolve(row, {}, None)
            return
        if status != "succeeded":
            self.resolve(row, *_verdict(scoring.all_failed(self.scorers)))
            return
        output = row["output"] or ""
        local = scoring.score_local(self.scorers, output, row["expected"])
        judges = scoring.judges(self.scorers)
        if not judges:
            self.resolve(row, *_verdict(local))
            return
        if not self.submit_judges or len(self.judging) >= JUDGE_BATCH:
            return
        requests = [(key, scoring.judge_request(check, output)) for key, check in judges]
        if any(request is None for _, request in requests):
            # An output longer than a message may be cannot be judged: its judges score 0.
            for key, _ in requests:
                local[key] = scoring.Score(0.0, False)
            self.resolve(row, *_verdict(local))
            return
        metadata = {
            "eval_id": str(self.eval_id),
            "eval_item": str(row["item_index"]),
            "eval_candidate": str(row["candidate"]),
        }
        ids = [
            str(self._submit(request.model_copy(update={"metadata": metadata})))
            for _, request in requests
            if request is not None
        ]
        self.judging.append(
            {
                "item_index": row["item_index"],
                "candidate": row["candidate"],
                "ids": ids,
                "scores": {key: s.score for key, s in local.items()},
            }
        )

    def judged(self, row: RowMapping) -> None:
        outcomes = row["judges"]
        if any(o["status"] == "cancelled" for o in outcomes):
            if self.resolve_cancelled:
                self.resolve(row, {}, None)
            return
        scores = dict(row["scores"] or {})
        passed = all(score >= 1.0 for score in scores.values())
        for (key, check), outcome in zip(scoring.judges(self.scorers), outcomes, strict=True):
            judged = scoring.judge_score(check, outcome["status"], outcome["result"])
            scores[key] = judged.score
            passed = passed and judged.passed
        self.resolve(row, scores, passed)


@dataclass(frozen=True)
class Step:
    publish: list[uuid.UUID]  # judge jobs to publish once the transaction commits
    resolved: int  # results resolved by this step


def advance(
    conn: Connection,
    eval_id: uuid.UUID,
    *,
    submit_judges: bool = True,
    resolve_cancelled: bool = True,
) -> Step:
    """One bounded step of a running eval, in the caller's transaction. An eval someone
    else is advancing, or one that is not running, is left as it is. A cancel's last
    step submits no judge and leaves the results of cancelled jobs unresolved."""
    if not transitions.try_lock(conn, eval_id):
        return Step([], 0)
    found = conn.execute(_EVAL, {"id": eval_id}).mappings().first()
    if found is None:
        return Step([], 0)
    transitions.touch(conn, eval_id)
    step = _Pass(
        eval_id,
        found["tenant_id"],
        SCORERS.validate_python(found["scorers"]),
        conn,
        submit_judges,
        resolve_cancelled,
    )
    # Only the results this step can resolve or start judging: a window full of
    # results it must skip would stall it.
    statuses = ["failed"]
    if submit_judges or not scoring.judges(step.scorers):
        statuses.append("succeeded")
    if resolve_cancelled:
        statuses.append("cancelled")
    params = {"eval_id": eval_id, "limit": SCORE_BATCH}
    judged = {**params, "resolve_cancelled": resolve_cancelled}
    if scoring.judges(step.scorers):
        for row in conn.execute(_JUDGED, judged).mappings().all():
            step.judged(row)
    for row in conn.execute(_PENDING, {**params, "statuses": statuses}).mappings().all():
        step.pending(row)
    step.close()
    transitions.start_judging(conn, eval_id, step.judging)
    resolved = transitions.resolve(conn, eval_id, step.resolved)
    transitions.complete(conn, eval_id)
    return Step(step.publish, resolved)


def sweep(conn: Connection) -> list[uuid.UUID]:
    """The maintenance pass's share: a bounded step of up to EVALS_PER_PASS running
    evals (they take turns), each in a savepoint so one that fails leaves the sweep and
    the others alone. Returns the judge jobs to publish after the commit."""
    publish: list[uuid.UUID] = []
    for eval_id in transitions.running(conn, EVALS_PER_PASS):
        try:
            with conn.begin_nested():
                publish += advance(conn, eval_id).publish
        except Exception:
            log.exception("advancing eval %s failed; the next pass tries again", eval_id)
    return publish
