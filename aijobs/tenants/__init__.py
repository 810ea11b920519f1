"""Tenants: their API keys (hashed), limits, webhook secrets, and the admin audit log."""
