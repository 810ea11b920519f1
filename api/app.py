"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.body_limit import BodyLimitMiddleware
from api.routes import admin_webhooks, health, jobs, webhook_deliveries


def create_app() -> FastAPI:
    app = FastAPI(
        title="aijobs",
        version="0.1.0",
        description=(
            "AI jobs off the critical path: submit, poll or long-poll, cancel; signed webhooks."
        ),
    )
    app.add_middleware(BodyLimitMiddleware)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(webhook_deliveries.router)
    app.include_router(admin_webhooks.router)
    return app


app = create_app()
