"""tenants.weight and tenants.max_inflight: a tenant's share of the workers and its cap
on calls in flight (the fair queue, aijobs/scheduling/fair_queue.py)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("weight", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("tenants", sa.Column("max_inflight", sa.Integer(), nullable=True))
    op.create_check_constraint("tenants_weight_range", "tenants", "weight BETWEEN 1 AND 1000")
    op.create_check_constraint(
        "tenants_max_inflight_range", "tenants", "max_inflight BETWEEN 1 AND 100000"
    )


def downgrade() -> None:
    op.drop_constraint("tenants_max_inflight_range", "tenants")
    op.drop_constraint("tenants_weight_range", "tenants")
    op.drop_column("tenants", "max_inflight")
    op.drop_column("tenants", "weight")
