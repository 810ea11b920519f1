"""A job's events: written by the worker (and by whatever ends a job), read by the API."""
