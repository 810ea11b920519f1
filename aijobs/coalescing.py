"""Followers of an in-flight leader: finish them with the leader's outcome, or hand
the lead to one of them when the leader is cancelled. Used by the worker right after
a leader ends, by cancel, and by the sweeper as a safety net."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

# A follower of a leader that succeeded is a cache hit (cost 0, the call's price saved);
# of one that failed, it fails with the same error.
_FINISH_FOLLOWERS = text(
    """
    UPDATE jobs f SET status = l.status, started_at = coalesce(f.started_at, now()),
           finished_at = now(), result = l.result, error_code = l.error_code,
           error_message = l.error_message, error_retryable = l.error_retryable,
           current_model = l.current_model, cache_hit = (l.status = 'succeeded'),
           saved_usd = CASE WHEN l.status = 'succeeded' THEN coalesce(
               (SELECT c.cost_usd FROM cache_entries c
                WHERE c.tenant_id = l.tenant_id AND c.fingerprint = l.fingerprint), 0)
               ELSE 0 END
    FROM jobs l
    WHERE l.id = :leader AND f.leader_id = l.id AND f.status = 'queued'
      AND l.status IN ('succeeded', 'failed')
    RETURNING f.id
    """
)
# A new leader for the same request may exist already (it arrived after the cancel).
_LIVE_LEADER = text(
    """
    SELECT n.id FROM jobs n JOIN jobs l ON l.id = :leader
    WHERE n.tenant_id = l.tenant_id AND n.fingerprint = l.fingerprint
      AND n.leader_id IS NULL AND n.status IN ('queued', 'running')
    FOR UPDATE OF n
    """
)
_ADOPT = text(
    """
    WITH moved AS (
        UPDATE jobs SET leader_id = :heir WHERE leader_id = :leader AND status = 'queued'
        RETURNING id
    )
    UPDATE jobs SET followers = followers + (SELECT count(*) FROM moved) WHERE id = :heir
    """
)
_HEIR = text(
    """
    SELECT id FROM jobs WHERE leader_id = :leader AND status = 'queued'
    ORDER BY created_at, id LIMIT 1 FOR UPDATE
    """
)
_PROMOTE = text(
    """
    UPDATE jobs SET leader_id = NULL, enqueued_at = now(),
           followers = (SELECT count(*) FROM jobs
                        WHERE leader_id = :leader AND status = 'queued' AND id <> :heir)
    WHERE id = :heir
    """
)
_REATTACH = text(
    "UPDATE jobs SET leader_id = :heir WHERE leader_id = :leader AND status = 'queued'"
)
_ORPHANED = text(
    """
    SELECT DISTINCT f.leader_id FROM jobs f JOIN jobs l ON l.id = f.leader_id
    WHERE f.leader_id IS NOT NULL AND f.status = 'queued'
      AND l.status IN ('succeeded', 'failed', 'cancelled')
    LIMIT :batch
    """
)


def finish_followers(conn: Connection, leader_id: uuid.UUID) -> list[uuid.UUID]:
    return [row[0] for row in conn.execute(_FINISH_FOLLOWERS, {"leader": leader_id})]


def promote_heir(conn: Connection, leader_id: uuid.UUID) -> uuid.UUID | None:
    """The leader was cancelled: its oldest follower leads now (to be published), the
    others follow it. Run in the transaction that cancelled the leader."""
    live = conn.execute(_LIVE_LEADER, {"leader": leader_id}).scalar()
    if live is not None:
        conn.execute(_ADOPT, {"leader": leader_id, "heir": live})
        return None
    heir = conn.execute(_HEIR, {"leader": leader_id}).scalar()
    if heir is None:
        return None
    conn.execute(_PROMOTE, {"leader": leader_id, "heir": heir})
    conn.execute(_REATTACH, {"leader": leader_id, "heir": heir})
    return uuid.UUID(str(heir))


def settle_orphans(conn: Connection, batch: int = 100) -> list[uuid.UUID]:
    """Followers whose leader ended without passing its outcome on (its worker died
    between the two): finish them, or promote an heir. Returns heirs to publish."""
    heirs: list[uuid.UUID] = []
    for (leader_id,) in conn.execute(_ORPHANED, {"batch": batch}).all():
        finish_followers(conn, leader_id)
        heir = promote_heir(conn, leader_id)
        if heir is not None:
            heirs.append(heir)
    return heirs
