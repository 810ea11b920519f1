"""Bare baseline API: one FastAPI route doing one INSERT and one Celery publish, nothing else."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from fastapi import FastAPI, Response
from sqlalchemy import create_engine, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import bindparam

from bench.common import API_QUEUE, BASELINE_TABLES, database_url, redis_url, sqlalchemy_url

# Same pool shape as aijobs.db, so the comparison is about the code path, not the pool.
engine = create_engine(sqlalchemy_url(database_url()), pool_size=10, max_overflow=30)
with engine.begin() as setup:
    setup.exec_driver_sql(BASELINE_TABLES)

celery = Celery("bench-baseline-api")
celery.conf.update(
    broker_url=redis_url(),
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    broker_pool_limit=50,
)

INSERT = text("INSERT INTO bench_jobs (id, body) VALUES (:id, :body)").bindparams(
    bindparam("body", type_=JSONB)
)

app = FastAPI(title="bench baseline")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/jobs", status_code=202)
def submit(body: dict[str, Any], response: Response) -> dict[str, Any]:
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(INSERT, {"id": job_id, "body": body})
    celery.send_task("bench.noop", args=[str(job_id)], queue=API_QUEUE, retry=False)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return {"id": str(job_id), "status": "queued"}
