"""Webhooks: the delivery state machine (deliveries.py), Standard Webhooks signing, the
SSRF guard, and the service the API calls."""
