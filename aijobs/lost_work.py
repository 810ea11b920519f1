"""The one rule for finding work the broker lost: rows Postgres says have waited for a
message longer than `stale_s`. Two ways out, the oldest first:

- as many as the broker is missing (waiting rows minus the messages it holds, up to
  `batch`): a FLUSHDB or a restart that lost many messages is mended in one sweep;
- and, whatever the queue length, up to `trickle` per sweep: a queue can be long and
  still miss a message (one taken by a worker that stopped before claiming it), so a
  long backlog never hides a lost job, at a bounded rate of duplicates.

A duplicate message is harmless: the claim lets only one run. A row sent again is
marked (`enqueued_at`), so it goes out again only after another `stale_s`. Used for
jobs and for webhook deliveries."""

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

    def lost(
        self, conn: Connection, *, queue_length: int, stale_s: float, batch: int, trickle: int
    ) -> list[Any]:
        """Mark and return the rows to publish again."""
        waiting = int(conn.execute(self.count, {"stale_s": stale_s}).scalar() or 0)
        limit = min(max(waiting - queue_length, trickle, 0), waiting, batch)
        if limit <= 0:
            return []
        return [row[0] for row in conn.execute(self.mark, {"stale_s": stale_s, "limit": limit})]
