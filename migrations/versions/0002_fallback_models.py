"""fallback models: the model being tried and the calls made to it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("current_model", sa.String(length=200), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("model_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute("UPDATE jobs SET current_model = model, model_attempts = attempts")
    op.alter_column("jobs", "current_model", nullable=False)
    op.alter_column("jobs", "model_attempts", server_default=None)


def downgrade() -> None:
    op.drop_column("jobs", "model_attempts")
    op.drop_column("jobs", "current_model")
