"""Datasets and evaluation runs: items kept per tenant, candidates (prompt versions) run
over them as ordinary jobs, each output scored, and the comparison reported."""
