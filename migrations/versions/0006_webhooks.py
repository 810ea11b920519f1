"""webhooks: deliveries created by a trigger when a job ends, their attempt log, and
the previous webhook secret of a tenant (rotation)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMINAL = "('succeeded', 'failed', 'cancelled')"

# Every way a job ends (the worker's settle, a follower taking its leader's outcome, a
# cancel, an admin path, a cache hit inserted already succeeded) goes through these
# triggers, so each end of a job with a webhook_url makes exactly one delivery. The
# BEFORE trigger marks the job's webhook pending; the AFTER one inserts the delivery
# (after the row exists, for the foreign key).
_MARK = """
CREATE FUNCTION jobs_webhook_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.webhook_status := 'pending';
    NEW.webhook_attempts := 0;
    RETURN NEW;
END
$$
"""
_ENQUEUE = """
CREATE FUNCTION jobs_webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (job_id, tenant_id, seq, event, url, status, tries,
                                    attempts, next_attempt_at, created_at)
    VALUES (NEW.id, NEW.tenant_id,
            (SELECT coalesce(max(seq), 0) + 1 FROM webhook_deliveries WHERE job_id = NEW.id),
            'job.' || NEW.status, NEW.webhook_url, 'pending', 0, 0, now(), now());
    RETURN NULL;
END
$$
"""
_ON_INSERT = f"NEW.webhook_url IS NOT NULL AND NEW.status IN {TERMINAL}"
_ON_UPDATE = f"{_ON_INSERT} AND OLD.status IS DISTINCT FROM NEW.status"
_TRIGGERS = (
    ("jobs_webhook_mark_insert", "BEFORE INSERT", _ON_INSERT, "jobs_webhook_mark"),
    ("jobs_webhook_mark_update", "BEFORE UPDATE OF status", _ON_UPDATE, "jobs_webhook_mark"),
    ("jobs_webhook_enqueue_insert", "AFTER INSERT", _ON_INSERT, "jobs_webhook_enqueue"),
    ("jobs_webhook_enqueue_update", "AFTER UPDATE OF status", _ON_UPDATE, "jobs_webhook_enqueue"),
)


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("previous_webhook_secret", sa.String(length=100), nullable=True)
    )
    op.add_column(
        "tenants",
        sa.Column("previous_webhook_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("jobs", sa.Column("webhook_status", sa.String(length=16), nullable=True))
    op.add_column(
        "jobs", sa.Column("webhook_attempts", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_webhook_deliveries_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_webhook_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_webhook_deliveries_job_id")),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_sending_lease",
        "webhook_deliveries",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_webhook_attempts_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint(
            "delivery_id", "attempt_no", name=op.f("uq_webhook_attempts_delivery_id")
        ),
    )
    op.create_index(
        op.f("ix_webhook_attempts_job_id"), "webhook_attempts", ["job_id"], unique=False
    )
    op.execute(_MARK)
    op.execute(_ENQUEUE)
    for name, when, condition, function in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} {when} ON jobs FOR EACH ROW WHEN ({condition})"
            f" EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    for name, _, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON jobs")
    op.execute("DROP FUNCTION jobs_webhook_enqueue()")
    op.execute("DROP FUNCTION jobs_webhook_mark()")
    op.drop_index(op.f("ix_webhook_attempts_job_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(
        "ix_webhook_deliveries_sending_lease",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("webhook_deliveries")
    op.drop_column("jobs", "webhook_attempts")
    op.drop_column("jobs", "webhook_status")
    op.drop_column("tenants", "previous_webhook_secret_expires_at")
    op.drop_column("tenants", "previous_webhook_secret")
