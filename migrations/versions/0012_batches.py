"""batches: a batch row with live counters, jobs.batch_id / custom_id / batch_index,
a statement trigger keeping the counters and ending the batch, batch webhook deliveries

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One statement-level trigger for every UPDATE of jobs: the rows it changed, grouped
# by batch (new rows counted in, old rows counted out: linear, no join of the
# transition tables, which have no index), move the batch's counters once per
# statement (a bulk cancel of 50,000 jobs is one counter update, a settle one more).
# The counter update locks the batch row,
# so the settles of one batch's jobs serialise on it; the statement after it reads the
# committed counters and ends the batch (`queued + running = 0`) at most once: only a
# batch still queued, running or cancelling ends, and its one webhook delivery is made
# in the same statement. The batch state machine: aijobs/batches/transitions.py.
_COUNT = """
CREATE FUNCTION jobs_batch_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved_batch uuid;
BEGIN
    FOR moved_batch IN
        WITH delta AS (
            SELECT batch_id, (status = 'queued')::int AS q, (status = 'running')::int AS r,
                   (status = 'succeeded')::int AS s, (status = 'failed')::int AS f,
                   (status = 'cancelled')::int AS c, cost_usd AS cost
            FROM new_jobs WHERE batch_id IS NOT NULL
            UNION ALL
            SELECT batch_id, -(status = 'queued')::int, -(status = 'running')::int,
                   -(status = 'succeeded')::int, -(status = 'failed')::int,
                   -(status = 'cancelled')::int, -cost_usd
            FROM old_jobs WHERE batch_id IS NOT NULL
        ), moved AS (
            SELECT batch_id, sum(q) AS q, sum(r) AS r, sum(s) AS s, sum(f) AS f,
                   sum(c) AS c, sum(cost) AS cost
            FROM delta GROUP BY batch_id
            HAVING sum(q) <> 0 OR sum(r) <> 0 OR sum(s) <> 0 OR sum(f) <> 0 OR sum(c) <> 0
                OR sum(cost) <> 0
        )
        UPDATE batches b SET queued = b.queued + m.q, running = b.running + m.r,
               succeeded = b.succeeded + m.s, failed = b.failed + m.f,
               cancelled = b.cancelled + m.c, cost_usd = b.cost_usd + m.cost
        FROM moved m WHERE b.id = m.batch_id
        RETURNING b.id
    LOOP
        PERFORM batch_settle(moved_batch);
    END LOOP;
    RETURN NULL;
END
$$
"""
# queued -> running when a job has left queued; queued | running | cancelling ->
# completed | cancelled when none is queued or running, with its webhook delivery.
# A batch being cancelled in this transaction (the setting aijobs.cancel_batch, set by
# aijobs/batches/transitions.py cancel before it cancels the queued jobs) becomes
# cancelling instead: the cancel takes its jobs' row locks before the batch's, in the
# order every claim and settle takes them, so the two never deadlock.
_SETTLE = """
CREATE FUNCTION batch_settle(batch uuid) RETURNS void LANGUAGE plpgsql AS $$
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
    op.create_table(
        "batches",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=20, scale=10), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("body_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_batches_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name=op.f("uq_batches_tenant_id")),
    )
    op.create_index(
        "ix_batches_tenant_created",
        "batches",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
        unique=False,
    )
    op.add_column("jobs", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.add_column("jobs", sa.Column("custom_id", sa.String(length=200), nullable=True))
    op.add_column("jobs", sa.Column("batch_index", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_jobs_batch_id_batches"),
        "jobs",
        "batches",
        ["batch_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(
        "ix_jobs_batch_index",
        "jobs",
        ["batch_id", "batch_index"],
        unique=True,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    # A batch webhook delivery belongs to the batch, not to a job.
    op.alter_column("webhook_deliveries", "job_id", existing_type=sa.UUID(), nullable=True)
    op.add_column("webhook_deliveries", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_webhook_deliveries_batch_id_batches"),
        "webhook_deliveries",
        "batches",
        ["batch_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(
        op.f("uq_webhook_deliveries_batch_id"), "webhook_deliveries", ["batch_id", "seq"]
    )
    op.alter_column("webhook_attempts", "job_id", existing_type=sa.UUID(), nullable=True)
    op.execute(_SETTLE)
    op.execute(_COUNT)
    op.execute(
        "CREATE TRIGGER jobs_batch_count AFTER UPDATE ON jobs"
        " REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs"
        " FOR EACH STATEMENT EXECUTE FUNCTION jobs_batch_count()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_batch_count ON jobs")
    op.execute("DROP FUNCTION jobs_batch_count()")
    op.execute("DROP FUNCTION batch_settle(uuid)")
    op.execute("DELETE FROM webhook_attempts WHERE job_id IS NULL")
    op.alter_column("webhook_attempts", "job_id", existing_type=sa.UUID(), nullable=False)
    op.execute("DELETE FROM webhook_deliveries WHERE job_id IS NULL")
    op.drop_constraint(op.f("uq_webhook_deliveries_batch_id"), "webhook_deliveries", type_="unique")
    op.drop_constraint(
        op.f("fk_webhook_deliveries_batch_id_batches"), "webhook_deliveries", type_="foreignkey"
    )
    op.drop_column("webhook_deliveries", "batch_id")
    op.alter_column("webhook_deliveries", "job_id", existing_type=sa.UUID(), nullable=False)
    op.drop_index("ix_jobs_batch_index", table_name="jobs")
    op.drop_constraint(op.f("fk_jobs_batch_id_batches"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "batch_index")
    op.drop_column("jobs", "custom_id")
    op.drop_column("jobs", "batch_id")
    op.drop_index("ix_batches_tenant_created", table_name="batches")
    op.drop_table("batches")
