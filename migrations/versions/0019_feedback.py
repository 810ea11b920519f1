"""feedback: what users, reviewers and code say about a job's result (SPEC "Feedback")

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        # The client's "id" (idempotent replay), or one made at create: unique per tenant.
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column(
            "tenant_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "job_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        # A number, a boolean or a string, as sent.
        sa.Column("value", postgresql.JSONB(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False, server_default="api"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id"),
        sa.CheckConstraint("source IN ('user', 'reviewer', 'api')", name="feedback_source"),
    )
    op.create_index("ix_feedback_job", "feedback", ["job_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_job", table_name="feedback")
    op.drop_table("feedback")
