"""a job's judge pending: the output and earlier check results kept while a judge
check's call waits for budget (queued), so the judge runs later without calling the
job's model again

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("judge_pending", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("jobs", "judge_pending")
