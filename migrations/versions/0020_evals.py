"""datasets and evaluation runs (SPEC "Datasets and evaluation runs"): datasets, their
items, evals (candidates pinned at create) and one result row per item x candidate

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant() -> sa.Column[Any]:
    return sa.Column(
        "tenant_id",
        postgresql.UUID(as_uuid=True),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
    )


def _created() -> sa.Column[Any]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        # Kept by the item insert itself (a guarded UPDATE), so the cap on items per
        # dataset holds under concurrent adds, and the next item's position comes with it.
        sa.Column("item_count", sa.Integer(), nullable=False, server_default="0"),
        _created(),
        sa.UniqueConstraint("tenant_id", "name", name="uq_datasets_tenant_name"),
    )
    op.create_table(
        "dataset_items",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "dataset_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # 0, 1, 2, ... in the order items were added: pages and evals read them so.
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("variables", postgresql.JSONB(), nullable=True),
        sa.Column("messages", postgresql.JSONB(), nullable=True),
        # Any JSON value (a string most often); NULL when the item has none.
        sa.Column("expected", postgresql.JSONB(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False, server_default="{}"),
        # The job the item was made from (POST .../items {"from_job"}), if any.
        sa.Column("source_job_id", postgresql.UUID(as_uuid=True), nullable=True),
        _created(),
        sa.CheckConstraint(
            "(variables IS NULL) <> (messages IS NULL)", name="dataset_items_one_input"
        ),
        sa.UniqueConstraint("dataset_id", "position", name="uq_dataset_items_position"),
    )
    op.create_table(
        "evals",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        _tenant(),
        sa.Column(
            "dataset_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # The batch its item x candidate jobs were submitted as (aijobs/batches).
        sa.Column(
            "batch_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("batches.id", ondelete="SET NULL"),
            nullable=True,
        ),
        # running | completed | cancelled (aijobs/evals/transitions.py)
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        # [{"index", "prompt": {"name", "version", "label"?}, "model"}]: pinned at create.
        sa.Column("candidates", postgresql.JSONB(), nullable=False),
        sa.Column("scorers", postgresql.JSONB(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        # Results resolved (scored, or ended without a verdict): kept by the statement
        # that resolves them, so reading progress never counts the results.
        sa.Column("scored", sa.Integer(), nullable=False, server_default="0"),
        # When the maintenance pass last moved it on: running evals take turns.
        sa.Column("advanced_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running', 'completed', 'cancelled')", name="evals_status"),
        sa.CheckConstraint("tier IN ('standard', 'batch')", name="evals_tier"),
    )
    op.create_index(
        "ix_evals_tenant_created",
        "evals",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_evals_running",
        "evals",
        [sa.text("advanced_at NULLS FIRST")],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "eval_results",
        sa.Column(
            "eval_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("evals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # The item's place in the eval (its dataset order at create) and the candidate's.
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("candidate", sa.SmallInteger(), nullable=False),
        sa.Column("item_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        # The judge scorers' jobs, in scorer order, once submitted (NULL before).
        sa.Column("judge_job_ids", postgresql.ARRAY(postgresql.UUID(as_uuid=True)), nullable=True),
        # {scorer key: 0..1}; while judges run, the deterministic scorers' scores so far.
        sa.Column("scores", postgresql.JSONB(), nullable=True),
        # NULL until scored, and for a result whose job was cancelled (no verdict).
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("eval_id", "item_index", "candidate"),
    )
    # What the advance looks at: the results of an eval not scored yet.
    op.create_index(
        "ix_eval_results_unscored",
        "eval_results",
        ["eval_id", "item_index", "candidate"],
        postgresql_where=sa.text("scored_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_eval_results_unscored", table_name="eval_results")
    op.drop_table("eval_results")
    op.drop_index("ix_evals_running", table_name="evals")
    op.drop_index("ix_evals_tenant_created", table_name="evals")
    op.drop_table("evals")
    op.drop_table("dataset_items")
    op.drop_table("datasets")
