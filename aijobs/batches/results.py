"""A batch's results as NDJSON, one line per job in input order, read from a server-side
cursor PAGE rows at a time: memory stays constant for 50,000 lines."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from sqlalchemy import text

from aijobs.db import get_engine
from aijobs.money import usd

PAGE = 1000

_RESULTS = text(
    """
    SELECT custom_id, id, status, result, error_code, error_message, error_retryable,
           input_tokens, output_tokens, cost_usd
    FROM jobs WHERE batch_id = :id ORDER BY batch_index
    """
)


def lines(batch_id: uuid.UUID) -> Iterator[bytes]:
    """`{"custom_id", "job_id", "status", "result", "error", "usage", "cost_usd"}` per
    job, each a line (the batch's tenant was checked by the caller)."""
    with get_engine().connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=PAGE).execute(
            _RESULTS, {"id": batch_id}
        )
        for page in rows.partitions():
            chunk = []
            for row in page:
                error = None
                if row.error_code is not None:
                    error = {
                        "code": row.error_code,
                        "message": row.error_message or "",
                        "retryable": bool(row.error_retryable),
                    }
                line = {
                    "custom_id": row.custom_id,
                    "job_id": str(row.id),
                    "status": row.status,
                    "result": row.result,
                    "error": error,
                    "usage": {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens},
                    "cost_usd": usd(row.cost_usd),
                }
                chunk.append(json.dumps(line, separators=(",", ":")))
            yield ("\n".join(chunk) + "\n").encode()
