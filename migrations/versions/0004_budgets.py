"""budgets: per-tenant counters (spent and reserved per UTC day and month), each
call's reservation, and the per-model reservation of a job

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=10)


def upgrade() -> None:
    op.create_table(
        "budget_counters",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("day_spent", MONEY, nullable=False),
        sa.Column("day_reserved", MONEY, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("month_spent", MONEY, nullable=False),
        sa.Column("month_reserved", MONEY, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_budget_counters_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_budget_counters")),
    )
    op.execute(
        """
        INSERT INTO budget_counters
        SELECT id, (now() AT TIME ZONE 'utc')::date, 0, 0,
               date_trunc('month', now() AT TIME ZONE 'utc')::date, 0, 0
        FROM tenants
        """
    )
    op.add_column(
        "jobs",
        sa.Column(
            "reserve_usd",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
    )
    op.alter_column("jobs", "reserve_usd", server_default=None)
    op.add_column("attempts", sa.Column("reserved_usd", MONEY, nullable=False, server_default="0"))
    op.add_column(
        "attempts",
        sa.Column("budget_held", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "attempts",
        sa.Column("cost_estimated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    for column in ("reserved_usd", "budget_held", "cost_estimated"):
        op.alter_column("attempts", column, server_default=None)
    op.create_index("ix_attempts_tenant_started", "attempts", ["tenant_id", "started_at"])
    op.create_index(
        "ix_attempts_in_flight",
        "attempts",
        ["started_at"],
        postgresql_where=sa.text("outcome = 'started'"),
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_in_flight", table_name="attempts")
    op.drop_index("ix_attempts_tenant_started", table_name="attempts")
    op.drop_column("attempts", "cost_estimated")
    op.drop_column("attempts", "budget_held")
    op.drop_column("attempts", "reserved_usd")
    op.drop_column("jobs", "reserve_usd")
    op.drop_table("budget_counters")
