"""attempts in flight indexed by (job_id, attempt_no): the settle finds its attempt in
one descent however many calls are in flight (the index on started_at made the
planner walk every in-flight entry, dead ones included, on each settle)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = sa.text("outcome = 'started'")


def upgrade() -> None:
    op.drop_index("ix_attempts_in_flight", table_name="attempts")
    op.create_index(
        "ix_attempts_in_flight", "attempts", ["job_id", "attempt_no"], postgresql_where=IN_FLIGHT
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_in_flight", table_name="attempts")
    op.create_index("ix_attempts_in_flight", "attempts", ["started_at"], postgresql_where=IN_FLIGHT)
