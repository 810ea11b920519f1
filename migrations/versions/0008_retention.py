"""retention: a job whose request and result were removed after the retention period
is marked purged; a partial index lets the sweeper find the next ones to purge without
walking the jobs already purged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Ended and not purged yet: the purge reads this index oldest first and stops at the
# retention cutoff, so each sweep touches only the rows it purges. Purged rows leave it.
PURGE_DUE = sa.text("NOT purged AND finished_at IS NOT NULL")


def upgrade() -> None:
    # A constant default: Postgres 11+ adds the column without rewriting the table.
    op.add_column(
        "jobs", sa.Column("purged", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index("ix_jobs_purge_due", "jobs", ["finished_at"], postgresql_where=PURGE_DUE)


def downgrade() -> None:
    op.drop_index("ix_jobs_purge_due", table_name="jobs", postgresql_where=PURGE_DUE)
    op.drop_column("jobs", "purged")
