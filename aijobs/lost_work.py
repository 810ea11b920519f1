"""The one rule for finding work the broker lost: rows Postgres says are waiting
longer than `stale_s`, compared with the messages the broker holds. Only as many as
are missing go out again, the oldest first, so a backlog that is merely long is
never duplicated. Used for jobs and for webhook deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, TextClause, text


@dataclass(frozen=True)
class Waiting:
    """Rows of `table` that wait for a message: `where` may use :stale_s."""

    count: TextClause
    mark: TextClause

    @classmethod
    def of(cls, table: str, where: str) -> Waiting:
        return cls(
            count=text(f"SELECT count(*) FROM {table} WHERE {where}"),
            mark=text(
                f"""
                UPDATE {table} SET enqueued_at = now()
                WHERE id IN (SELECT id FROM {table} WHERE {where}
                             ORDER BY enqueued_at LIMIT :limit FOR UPDATE SKIP LOCKED)
                RETURNING id
                """
            ),
        )

    def missing(
        self, conn: Connection, *, queue_length: int, stale_s: float, batch: int
    ) -> list[Any]:
        waiting = int(conn.execute(self.count, {"stale_s": stale_s}).scalar() or 0)
        missing = min(waiting - queue_length, batch)
        if missing <= 0:
            return []
        return [row[0] for row in conn.execute(self.mark, {"stale_s": stale_s, "limit": missing})]
