"""Reading a batch's lines into rows to insert: every line validated exactly like a
POST /v1/jobs body (schema, check_submittable, prompts resolved), custom_ids unique.
All or nothing: the errors of the first MAX_ERRORS bad lines, by index, or the rows.

Only the rows are kept: NDJSON is validated chunk by chunk as the body arrives (the
raw body is never held whole), a JSON body is parsed once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from aijobs.billing import budget
from aijobs.checks.schemas import judge_models
from aijobs.errors import AppError, InvalidRequest, Unsupported
from aijobs.jobs.fingerprint import fingerprint
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.submission import check_submittable
from aijobs.prompts.resolve import resolve as resolve_prompt

from .schemas import MAX_ERRORS, MAX_JOBS, BatchOptions, LineError, parse_line


@dataclass
class Lines:
    """The rows of a valid batch (JSON-ready, in input order), or its errors."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0


def json_lines(body: bytes | bytearray) -> tuple[BatchOptions, list[Any]]:
    """A JSON body: its options and its list of jobs."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("jobs"), list):
        raise InvalidRequest('the body must be an object with a "jobs" list')
    jobs = document.pop("jobs")
    try:
        options = BatchOptions.model_validate(document)
    except ValueError as exc:
        raise InvalidRequest(f"invalid batch options: {exc}") from exc
    return options, jobs


def ndjson_values(raw_lines: Iterable[bytes]) -> Iterator[Any]:
    """NDJSON lines parsed one at a time (blank lines skipped); a line that is not JSON
    is yielded as a LineError for its index."""
    for raw in raw_lines:
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except ValueError as exc:
            yield LineError(None, f"not JSON: {exc}")


# The providers with a batch API (OpenAI Batch, Anthropic Message Batches).
BATCH_TIER_PROVIDERS = ("openai", "anthropic")


class TierUnsupported(Unsupported):
    """A line the batch tier cannot serve: the whole batch is refused 422 unsupported."""


def check_batch_tier(request: JobRequest) -> None:
    """What the batch tier serves: a model whose provider has a batch API (sim/* has
    none), and no judge check (a judge is a second call, made at once on the standard
    tier by the worker that holds the output; a provider batch has no such worker)."""
    provider = request.model.partition("/")[0]
    if provider not in BATCH_TIER_PROVIDERS:
        raise TierUnsupported(
            f'{request.model}: tier "batch" needs a provider batch API'
            f" ({', '.join(BATCH_TIER_PROVIDERS)}); use tier standard",
            extra={"field": "tier", "model": request.model},
        )
    if request.stream:
        raise TierUnsupported(
            'stream is not served on tier "batch" (a provider batch answers all at once)',
            extra={"field": "stream"},
        )
    if judge_models(request.checks):
        raise TierUnsupported(
            'judge checks are not served on tier "batch"; use tier standard',
            extra={"field": "tier"},
        )


def _row(
    conn: Connection, tenant_id: uuid.UUID, request: JobRequest, tier: str = "standard"
) -> dict[str, Any]:
    prompt = None
    if request.prompt is not None:
        request, prompt = resolve_prompt(conn, tenant_id, request)
    check_submittable(request, refuse_unconfigured=True)
    reserve = budget.reservations(request)
    if tier == "batch":
        check_batch_tier(request)
        # The first call goes in a provider batch, at the batch price (any later call is
        # standard: the other keys).
        model = request.model
        reserve[f"batch:{model}"] = str(budget.max_call_cost(request, model, tier="batch"))
    return {
        "id": str(uuid.uuid4()),
        "model": request.model,
        "task": request.task,
        "request": request.model_dump(mode="json", exclude_none=True),
        "metadata": request.metadata,
        "webhook_url": request.webhook_url,
        "max_attempts": request.max_attempts,
        "timeout_s": str(Decimal(str(request.timeout_s))),
        "fingerprint": fingerprint(tenant_id, request) if request.cache else None,
        "reserve_usd": reserve,
        "prompt": prompt,
        "priority": request.priority or "batch",
    }


class Intake:
    """Validates lines as they come (feed them in order, then `finish`): rows only
    while every line so far is valid; after the first error, lines are only looked at
    for more errors (kept up to MAX_ERRORS, all counted)."""

    def __init__(self, tenant_id: uuid.UUID, tier: str = "standard") -> None:
        self.tenant_id = tenant_id
        self.tier = tier
        self.lines = Lines()
        self._seen: set[str] = set()

    def feed(self, conn: Connection, values: Iterable[Any]) -> None:
        out = self.lines
        for value in values:
            index = out.count
            out.count += 1
            if out.count > MAX_JOBS:
                raise InvalidRequest(f"a batch holds at most {MAX_JOBS} jobs")
            custom_id = None
            try:
                if isinstance(value, LineError):
                    raise value
                custom_id, request = parse_line(value)
                if custom_id in self._seen:
                    raise LineError(custom_id, f"custom_id {custom_id!r} is repeated")
                self._seen.add(custom_id)
                row = _row(conn, self.tenant_id, request, self.tier)
            except TierUnsupported as exc:
                exc.extra = {**exc.extra, "index": index, "custom_id": custom_id}
                raise
            except LineError as exc:
                _add_error(out, index, exc.custom_id, exc.detail)
                continue
            except AppError as exc:
                _add_error(out, index, custom_id, f"{exc.code}: {exc.detail}")
                continue
            if not out.errors:
                row["custom_id"] = custom_id
                row["batch_index"] = index
                out.rows.append(row)

    def feed_ndjson(self, conn: Connection, raw_lines: Iterable[bytes]) -> None:
        self.feed(conn, ndjson_values(raw_lines))

    def finish(self) -> Lines:
        if self.lines.count == 0:
            raise InvalidRequest("a batch needs at least one job")
        if self.lines.errors:
            self.lines.rows.clear()
        return self.lines


def _add_error(out: Lines, index: int, custom_id: str | None, detail: str) -> None:
    if len(out.errors) < MAX_ERRORS:
        out.errors.append({"index": index, "custom_id": custom_id, "detail": detail})
