"""Batches: many jobs submitted as one, followed and read as one (SPEC "Batches")."""
