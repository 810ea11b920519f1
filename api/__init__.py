"""The HTTP edge: it validates, authenticates, persists and enqueues; it never calls a provider."""
