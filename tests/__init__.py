"""aijobs tests: real Postgres and Redis, real API and worker processes, a fake provider."""
