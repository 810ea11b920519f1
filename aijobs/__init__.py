"""aijobs domain package: what the HTTP API and the Celery worker share.

Models, settings, pricing, the job service and the SQL state machine live here;
nothing in this package imports FastAPI or Celery.
"""
