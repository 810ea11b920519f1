"""A Response's reads: the chat job behind it, its stored request, and the prompt-cache
tokens of its calls (which the job object does not show). Services flush; the edge
commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aijobs.errors import NotFound
from aijobs.jobs import responses_shapes
from aijobs.jobs import service as job_service
from aijobs.jobs.transitions import TERMINAL
from aijobs.jobs.view import view
from aijobs.models import Attempt


@dataclass(frozen=True)
class Loaded:
    job: dict[str, Any]  # the job object
    request: dict[str, Any]  # as stored ({} once purged)
    cached_tokens: int
    cache_write_tokens: int

    def response(self, background: bool | None = None) -> dict[str, Any]:
        return responses_shapes.response_object(
            self.job, self.request, background, self.cached_tokens, self.cache_write_tokens
        )


def cache_tokens(session: Session, job_id: uuid.UUID | str) -> tuple[int, int]:
    """Of the job's input tokens, those its calls read from and wrote to the provider's
    prompt cache."""
    row = session.execute(
        select(
            func.coalesce(func.sum(Attempt.cached_input_tokens), 0),
            func.coalesce(func.sum(Attempt.cache_write_tokens), 0),
        ).where(Attempt.job_id == uuid.UUID(str(job_id)))
    ).one()
    return int(row[0]), int(row[1])


def load(session: Session, tenant_id: uuid.UUID, job_id: str) -> Loaded:
    """The tenant's chat job as a Response's makings; another tenant's job, a missing
    one and an embed job are all 404."""
    row = job_service.get_row(session, tenant_id, job_id)
    if row["task"] != "chat":
        raise NotFound(f"no response {responses_shapes.response_id(job_id)}")
    # A Response shows its usage once it has ended.
    cached, written = cache_tokens(session, row["id"]) if row["status"] in TERMINAL else (0, 0)
    return Loaded(view(row), row["request"] or {}, cached, written)
