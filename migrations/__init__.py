"""Alembic environment and versions (`aijobs migrate` runs them)."""
