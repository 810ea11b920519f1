"""cached and cache-write input tokens on each call (priced as the provider bills
them), a job's priority (interactive | batch), and the checks a cached answer passed

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Of a call's input_tokens, how many the provider read from its prompt cache and
    # how many it wrote to it (Anthropic): each at its own price.
    op.add_column(
        "attempts",
        sa.Column("cached_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "attempts",
        sa.Column("cache_write_tokens", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "jobs",
        sa.Column(
            "priority",
            sa.String(length=16),
            server_default=sa.text("'interactive'"),
            nullable=False,
        ),
    )
    op.add_column(
        "cache_entries",
        sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("cache_entries", "checks")
    op.drop_column("jobs", "priority")
    op.drop_column("attempts", "cache_write_tokens")
    op.drop_column("attempts", "cached_input_tokens")
