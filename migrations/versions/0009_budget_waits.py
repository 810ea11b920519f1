"""budget waits: jobs waiting for other calls' reservations to settle (queued, with
next_attempt_at at the far-future BUDGET_WAIT of aijobs/jobs/transitions.py), indexed by
tenant for the wake after each settle and the sweeper's check

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same text as transitions.BUDGET_WAIT, so the planner matches the partial index.
WAITING = sa.text("status = 'queued' AND next_attempt_at = '9999-12-31 00:00:00+00'::timestamptz")


def upgrade() -> None:
    op.create_index(
        "ix_jobs_budget_wait", "jobs", ["tenant_id", "created_at"], postgresql_where=WAITING
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_budget_wait", table_name="jobs")
