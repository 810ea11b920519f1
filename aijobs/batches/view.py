"""The batch object of SPEC.md, as clients see it, from a batches row."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aijobs.money import usd


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def view(row: Mapping[Any, Any], webhook: Mapping[Any, Any] | None = None) -> dict[str, Any]:
    """`webhook`: the batch's delivery row (status, attempts), if one was made."""
    hook = None
    if row["webhook_url"] is not None:
        # pending until the batch ends and its delivery succeeds or gives up.
        hook = {
            "url": row["webhook_url"],
            "status": webhook["status"] if webhook is not None else "pending",
            "attempts": webhook["attempts"] if webhook is not None else 0,
        }
        if hook["status"] == "sending":
            hook["status"] = "pending"
    return {
        "id": str(row["id"]),
        "object": "batch",
        "status": row["status"],
        "counts": {
            "total": row["total"],
            "queued": row["queued"],
            "running": row["running"],
            "succeeded": row["succeeded"],
            "failed": row["failed"],
            "cancelled": row["cancelled"],
        },
        "cost_usd": usd(row["cost_usd"]),
        "tier": row["tier"],
        "metadata": row["metadata"],
        "created_at": _iso(row["created_at"]),
        "finished_at": _iso(row["finished_at"]),
        "webhook": hook,
    }
