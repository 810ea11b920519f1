"""Prompts: per-tenant templates with immutable numbered versions and movable labels."""
