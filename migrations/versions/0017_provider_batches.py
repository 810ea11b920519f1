"""provider batches (the providers' batch tier): a row per OpenAI Batch / Anthropic
Message Batch, each call of one recorded as an attempt that names it, and the tier of a
job's next call

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_batches",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("provider_batch_id", sa.String(length=200), nullable=True),
        sa.Column("input_file_id", sa.String(length=200), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("polls", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("submit_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "next_poll_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_batches")),
        sa.UniqueConstraint(
            "provider", "provider_batch_id", name=op.f("uq_provider_batches_provider")
        ),
    )
    op.create_index(
        "ix_provider_batches_live",
        "provider_batches",
        ["next_poll_at"],
        postgresql_where=sa.text("state <> 'ended'"),
    )
    op.add_column("attempts", sa.Column("provider_batch_id", sa.UUID(), nullable=True))
    op.create_index(
        "ix_attempts_provider_batch",
        "attempts",
        ["provider_batch_id"],
        postgresql_where=sa.text("provider_batch_id IS NOT NULL"),
    )
    # standard | batch: the tier of the job's next call. A batch-tier job is queued for
    # the provider-batch dispatcher (its claim makes the rest of its calls standard).
    op.add_column(
        "jobs",
        sa.Column(
            "tier", sa.String(length=16), server_default=sa.text("'standard'"), nullable=False
        ),
    )
    op.create_index(
        "ix_jobs_batch_tier_queued",
        "jobs",
        ["current_model", "created_at"],
        postgresql_where=sa.text("tier = 'batch' AND status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_tier_queued", table_name="jobs")
    op.drop_column("jobs", "tier")
    op.drop_index("ix_attempts_provider_batch", table_name="attempts")
    op.drop_column("attempts", "provider_batch_id")
    op.drop_index("ix_provider_batches_live", table_name="provider_batches")
    op.drop_table("provider_batches")
