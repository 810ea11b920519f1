"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from aijobs.metrics import QueueCollector, QuotaCollector, register_collectors
from api import admin_session, problems
from api.body_limit import BodyLimitMiddleware
from api.request_id import RequestIdMiddleware
from api.routes import (
    admin_batches,
    admin_evals,
    admin_jobs,
    admin_page,
    admin_prompts,
    admin_queue,
    admin_tenants,
    admin_webhooks,
    batches,
    datasets,
    evals,
    events,
    feedback,
    health,
    jobs,
    openai_compat,
    prompts,
    responses,
    tenant,
    usage,
    webhook_deliveries,
)


def _register_collectors() -> None:
    from prometheus_client import REGISTRY

    if not getattr(REGISTRY, "_aijobs_queue", False):
        REGISTRY.register(QueueCollector())
        REGISTRY._aijobs_queue = True  # type: ignore[attr-defined]
    register_collectors(QuotaCollector())


def create_app() -> FastAPI:
    _register_collectors()
    app = FastAPI(
        title="aijobs",
        version="0.1.0",
        description=(
            "AI jobs off the critical path: submit, poll or long-poll, cancel; signed webhooks."
        ),
    )
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(feedback.router)
    # Errors in OpenAI's shape on these routes only (their route class renders them).
    app.include_router(openai_compat.router)
    app.include_router(responses.router)
    app.include_router(batches.router)
    app.include_router(datasets.router)
    app.include_router(evals.router)
    app.include_router(usage.router)
    app.include_router(tenant.router)
    app.include_router(prompts.router)
    app.include_router(admin_jobs.router)
    app.include_router(admin_tenants.router)
    app.include_router(webhook_deliveries.router)
    app.include_router(admin_webhooks.router)
    app.include_router(admin_page.router)
    app.include_router(admin_prompts.pages)
    app.include_router(admin_batches.api)
    app.include_router(admin_batches.pages)
    app.include_router(admin_evals.api)
    app.include_router(admin_evals.pages)
    app.include_router(admin_queue.router)
    app.add_exception_handler(admin_session.LoginRequired, admin_session.to_login)
    return app


app = create_app()
