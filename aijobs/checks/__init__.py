"""Checks: guardrails a job's output (or input) must pass."""
