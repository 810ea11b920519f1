"""dedup: the exact cache, in-flight coalescing of identical jobs, Idempotency-Key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=10)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("leader_id", sa.UUID(), nullable=True))
    op.add_column("jobs", sa.Column("followers", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("saved_usd", MONEY, nullable=False, server_default="0"))
    op.create_foreign_key(
        op.f("fk_jobs_leader_id_jobs"), "jobs", "jobs", ["leader_id"], ["id"], ondelete="SET NULL"
    )
    # One in-flight leader per (tenant, fingerprint): identical requests arriving
    # while it runs become its followers, across every API process.
    op.create_index(
        "uq_jobs_inflight_leader",
        "jobs",
        ["tenant_id", "fingerprint"],
        unique=True,
        postgresql_where=sa.text("leader_id IS NULL AND status IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_jobs_waiting_followers",
        "jobs",
        ["leader_id"],
        postgresql_where=sa.text("leader_id IS NOT NULL AND status = 'queued'"),
    )
    op.create_table(
        "cache_entries",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_cache_entries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "fingerprint", name=op.f("pk_cache_entries")),
    )
    op.create_index("ix_cache_entries_expires_at", "cache_entries", ["expires_at"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_idempotency_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_keys")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("ix_cache_entries_expires_at", table_name="cache_entries")
    op.drop_table("cache_entries")
    op.drop_index("ix_jobs_waiting_followers", table_name="jobs")
    op.drop_index("uq_jobs_inflight_leader", table_name="jobs")
    op.drop_constraint(op.f("fk_jobs_leader_id_jobs"), "jobs", type_="foreignkey")
    op.drop_column("jobs", "saved_usd")
    op.drop_column("jobs", "followers")
    op.drop_column("jobs", "leader_id")
    op.drop_column("jobs", "fingerprint")
