"""Scheduling: the order and pace in which calls start (provider quotas)."""
