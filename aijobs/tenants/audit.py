"""The admin audit log: every admin action, what it touched, when and from where."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aijobs.models import AdminAudit


def record(session: Session, action: str, actor: str, **detail: Any) -> None:
    session.add(AdminAudit(action=action, actor=actor[:200], detail=detail))


def recent(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.scalars(select(AdminAudit).order_by(AdminAudit.id.desc()).limit(limit))
    return [
        {
            "id": row.id,
            "at": row.at.isoformat(),
            "action": row.action,
            "actor": row.actor,
            "detail": row.detail,
        }
        for row in rows
    ]
