"""The Celery edge: the app, its tasks, the maintenance loop, and the AI providers."""
