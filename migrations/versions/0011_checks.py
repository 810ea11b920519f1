"""checks: each attempt's check results and kind (call | judge), the job's checks for
its last output, and what a check retry adds to the next call (its messages and their
reservation)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=10)


def upgrade() -> None:
    op.add_column(
        "attempts", sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "attempts",
        sa.Column("kind", sa.String(length=8), server_default=sa.text("'call'"), nullable=False),
    )
    op.add_column(
        "jobs", sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "jobs",
        sa.Column("retry_messages", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "jobs",
        sa.Column("retry_reserve_usd", MONEY, server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("jobs", "retry_reserve_usd")
    op.drop_column("jobs", "retry_messages")
    op.drop_column("jobs", "checks")
    op.drop_column("attempts", "kind")
    op.drop_column("attempts", "checks")
