"""Benchmarks: our API and worker side by side with bare FastAPI/Celery baselines."""
