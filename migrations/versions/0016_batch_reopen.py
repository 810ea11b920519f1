"""batch_settle reopens an ended batch when an admin re-runs one of its jobs, and a
second end makes a second webhook delivery (the next seq, not seq 1 again)

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0012, plus the reopen: a batch that ended (completed or cancelled) with a job
# queued or running again (only an admin re-run brings an ended job back) goes back to
# running (a completed one) or cancelling (a cancelled one), finished_at cleared; when
# that job ends, the batch ends again as it did before, its counters kept by the
# trigger, and makes one more delivery (seq one past the last: the earlier ones and
# their webhook-ids stay as they were) carrying the batch as it is then.
# The state machine: aijobs/batches/transitions.py.
_SETTLE = """
CREATE OR REPLACE FUNCTION batch_settle(batch uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('aijobs.cancel_batch', true), '') = batch::text THEN
        UPDATE batches SET status = 'cancelling'
        WHERE id = batch AND status IN ('queued', 'running');
    ELSE
        UPDATE batches SET status = 'running'
        WHERE id = batch AND status = 'queued' AND queued < total;
        UPDATE batches
        SET status = CASE WHEN status = 'cancelled' THEN 'cancelling' ELSE 'running' END,
            finished_at = NULL
        WHERE id = batch AND status IN ('completed', 'cancelled') AND queued + running > 0;
    END IF;
    WITH ended AS (
        UPDATE batches
        SET status = CASE WHEN status = 'cancelling' THEN 'cancelled' ELSE 'completed' END,
            finished_at = now()
        WHERE id = batch AND status IN ('queued', 'running', 'cancelling')
          AND queued + running = 0
        RETURNING id, tenant_id, status, webhook_url
    )
    INSERT INTO webhook_deliveries (batch_id, tenant_id, seq, event, url, status, tries,
                                    attempts, next_attempt_at, created_at)
    SELECT id, tenant_id,
           1 + coalesce((SELECT max(seq) FROM webhook_deliveries WHERE batch_id = ended.id), 0),
           'batch.' || status, webhook_url, 'pending', 0, 0, now(), now()
    FROM ended WHERE webhook_url IS NOT NULL;
END
$$
"""
# 0012's function, unchanged.
_SETTLE_0012 = """
CREATE OR REPLACE FUNCTION batch_settle(batch uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('aijobs.cancel_batch', true), '') = batch::text THEN
        UPDATE batches SET status = 'cancelling'
        WHERE id = batch AND status IN ('queued', 'running');
    ELSE
        UPDATE batches SET status = 'running'
        WHERE id = batch AND status = 'queued' AND queued < total;
    END IF;
    WITH ended AS (
        UPDATE batches
        SET status = CASE WHEN status = 'cancelling' THEN 'cancelled' ELSE 'completed' END,
            finished_at = now()
        WHERE id = batch AND status IN ('queued', 'running', 'cancelling')
          AND queued + running = 0
        RETURNING id, tenant_id, status, webhook_url
    )
    INSERT INTO webhook_deliveries (batch_id, tenant_id, seq, event, url, status, tries,
                                    attempts, next_attempt_at, created_at)
    SELECT id, tenant_id, 1, 'batch.' || status, webhook_url, 'pending', 0, 0, now(), now()
    FROM ended WHERE webhook_url IS NOT NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(_SETTLE)


def downgrade() -> None:
    op.execute(_SETTLE_0012)
