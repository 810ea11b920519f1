"""Feedback on a tenant's jobs: record one (idempotent by its id), list a job's. Services
flush; the edge commits. Another tenant's job is looked up exactly like a missing one.

A replay never writes: the insert is `ON CONFLICT DO NOTHING`, and whoever finds the id
taken reads the stored row instead, so concurrent replays all answer it (never a 500)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from aijobs.errors import Conflict, InvalidRequest, NotFound
from aijobs.feedback.schemas import FeedbackCreate

# A job holds at most this much feedback (a cap on what one key can make the table
# hold per job); the list route returns it all at once.
MAX_PER_JOB = 1000

_COLUMNS = "id, job_id, name, value, comment, source, created_at"
_JOB = text("SELECT id FROM jobs WHERE id = :job_id AND tenant_id = :tenant_id")
_FIND = text(f"SELECT {_COLUMNS} FROM feedback WHERE tenant_id = :tenant_id AND id = :id")
# Writers of one job's feedback take turns until commit, so the cap is exact; reads
# and every other job's feedback never wait on it.
_LOCK_JOB = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_COUNT = text("SELECT count(*) FROM feedback WHERE job_id = :job_id")
_INSERT = text(
    f"""
    INSERT INTO feedback (tenant_id, id, job_id, name, value, comment, source)
    VALUES (:tenant_id, :id, :job_id, :name, :value, :comment, :source)
    ON CONFLICT (tenant_id, id) DO NOTHING
    RETURNING {_COLUMNS}
    """
).bindparams(bindparam("value", type_=JSONB))
_LIST = text(
    f"""
    SELECT {_COLUMNS} FROM feedback WHERE tenant_id = :tenant_id AND job_id = :job_id
    ORDER BY created_at, id
    """
)


@dataclass(frozen=True)
class Recorded:
    feedback: dict[str, Any]
    created: bool  # False: a replay of an id already stored, answered as stored


def view(row: RowMapping) -> dict[str, Any]:
    """The feedback object, JSON-ready."""
    return {
        "id": row["id"],
        "job_id": str(row["job_id"]),
        "name": row["name"],
        "value": row["value"],
        "comment": row["comment"],
        "source": row["source"],
        "created_at": row["created_at"].isoformat(),
    }


def _job(conn: Connection, tenant_id: uuid.UUID, job_id: str) -> uuid.UUID:
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        parsed = None
    if (
        parsed is None
        or conn.execute(_JOB, {"job_id": parsed, "tenant_id": tenant_id}).first() is None
    ):
        raise NotFound(f"no job {job_id}")
    return parsed


def _replayed(row: RowMapping, job_id: uuid.UUID) -> Recorded:
    """The stored feedback of a repeated id: as it is, whatever the new body says. An id
    is the tenant's, not the job's: reusing it on another job is a client bug."""
    if row["job_id"] != job_id:
        raise Conflict(f"feedback {row['id']!r} was given on another job; use a new id")
    return Recorded(view(row), created=False)


def create(session: Session, tenant_id: uuid.UUID, job_id: str, body: FeedbackCreate) -> Recorded:
    conn = session.connection()
    job = _job(conn, tenant_id, job_id)
    # Taken before the replay check: a replay racing its first request then finds it
    # stored rather than counting against the cap.
    conn.execute(_LOCK_JOB, {"key": f"feedback:{job}"})
    if body.id is not None:
        found = conn.execute(_FIND, {"tenant_id": tenant_id, "id": body.id}).mappings().first()
        if found is not None:
            return _replayed(found, job)
    if conn.execute(_COUNT, {"job_id": job}).scalar_one() >= MAX_PER_JOB:
        raise InvalidRequest(f"job {job_id} already holds {MAX_PER_JOB} feedback, the most kept")
    feedback_id = body.id if body.id is not None else f"fb_{uuid.uuid4().hex}"
    inserted = (
        conn.execute(
            _INSERT,
            {
                "tenant_id": tenant_id,
                "id": feedback_id,
                "job_id": job,
                "name": body.name,
                "value": body.value,
                "comment": body.comment,
                "source": body.source,
            },
        )
        .mappings()
        .first()
    )
    if inserted is not None:
        return Recorded(view(inserted), created=True)
    # The id was taken meanwhile on another job (the lock is per job): that request has
    # committed, and this statement sees its row.
    stored = conn.execute(_FIND, {"tenant_id": tenant_id, "id": feedback_id}).mappings().one()
    return _replayed(stored, job)


def list_for_job(session: Session, tenant_id: uuid.UUID, job_id: str) -> list[dict[str, Any]]:
    """All of a job's feedback (at most MAX_PER_JOB), oldest first."""
    conn = session.connection()
    job = _job(conn, tenant_id, job_id)
    rows = conn.execute(_LIST, {"tenant_id": tenant_id, "job_id": job}).mappings()
    return [view(row) for row in rows]
