"""Datasets of one tenant: create, read, list; add an item (given, or made from a job),
list items by position. Services flush; the edge commits. Another tenant's dataset is
looked up exactly like a missing one."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from aijobs import cursor as cursor_of
from aijobs.errors import Conflict, InvalidRequest, NotFound

from .from_job import item_from_job
from .schemas import (
    MAX_DATASETS_PER_TENANT,
    MAX_ITEM_BYTES,
    MAX_ITEMS_PER_DATASET,
    DatasetCreate,
    ItemCreate,
    ItemFromJob,
    canonical_size,
)

_COUNT = text("SELECT count(*) FROM datasets WHERE tenant_id = :tenant_id")
_CREATE = text(
    """
    INSERT INTO datasets (id, tenant_id, name, description)
    VALUES (:id, :tenant_id, :name, :description)
    ON CONFLICT (tenant_id, name) DO NOTHING
    RETURNING id, name, description, item_count, created_at
    """
)
_BY_NAME = text(
    """
    SELECT id, name, description, item_count, created_at FROM datasets
    WHERE tenant_id = :tenant_id AND name = :name
    """
)
_LIST = text(
    """
    SELECT id, name, description, item_count, created_at FROM datasets
    WHERE tenant_id = :tenant_id AND (CAST(:after AS text) IS NULL OR name > :after)
    ORDER BY name LIMIT :limit
    """
)
# The next position, under the cap, in one guarded statement: concurrent adds queue on
# the dataset's row and each gets its own position; at the cap nothing changes.
_TAKE_POSITION = text(
    """
    UPDATE datasets SET item_count = item_count + 1
    WHERE id = :id AND item_count < :max
    RETURNING item_count - 1
    """
)
_INSERT_ITEM = text(
    """
    INSERT INTO dataset_items (id, dataset_id, position, variables, messages, expected,
                               metadata, source_job_id)
    VALUES (:id, :dataset_id, :position, :variables, :messages, :expected, :metadata,
            :source_job_id)
    RETURNING id, position, variables, messages, expected, metadata, source_job_id, created_at
    """
).bindparams(
    bindparam("variables", type_=JSONB(none_as_null=True)),
    bindparam("messages", type_=JSONB(none_as_null=True)),
    bindparam("expected", type_=JSONB(none_as_null=True)),
    bindparam("metadata", type_=JSONB),
)
_ITEMS = text(
    """
    SELECT id, position, variables, messages, expected, metadata, source_job_id, created_at
    FROM dataset_items WHERE dataset_id = :dataset_id AND position >= :start
    ORDER BY position LIMIT :limit
    """
)


def dataset_view(row: RowMapping) -> dict[str, Any]:
    return {
        "object": "dataset",
        "name": row["name"],
        "description": row["description"],
        "items": row["item_count"],
        "created_at": row["created_at"].isoformat(),
    }


def item_view(dataset: str, row: RowMapping) -> dict[str, Any]:
    source = row["source_job_id"]
    return {
        "id": str(row["id"]),
        "object": "dataset.item",
        "dataset": dataset,
        "position": row["position"],
        "variables": row["variables"],
        "messages": row["messages"],
        "expected": row["expected"],
        "metadata": row["metadata"],
        "source_job_id": str(source) if source is not None else None,
        "created_at": row["created_at"].isoformat(),
    }


def create(conn: Connection, tenant_id: uuid.UUID, body: DatasetCreate) -> dict[str, Any]:
    """A new, empty dataset; the same name again is 409."""
    if int(conn.execute(_COUNT, {"tenant_id": tenant_id}).scalar_one()) >= MAX_DATASETS_PER_TENANT:
        raise InvalidRequest(f"a tenant holds at most {MAX_DATASETS_PER_TENANT} datasets")
    params = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "name": body.name,
        "description": body.description,
    }
    row = conn.execute(_CREATE, params).mappings().first()
    if row is None:
        raise Conflict(f"a dataset named {body.name!r} exists already")
    return dataset_view(row)


def find(conn: Connection, tenant_id: uuid.UUID, name: str) -> RowMapping:
    """The tenant's dataset by name (NotFound for a missing one and another tenant's)."""
    row = conn.execute(_BY_NAME, {"tenant_id": tenant_id, "name": name}).mappings().first()
    if row is None:
        raise NotFound(f"no dataset named {name!r}")
    return row


def get(conn: Connection, tenant_id: uuid.UUID, name: str) -> dict[str, Any]:
    return dataset_view(find(conn, tenant_id, name))


def list_datasets(
    conn: Connection, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """By name; the cursor is the last name of the page before (names sort uniquely)."""
    params = {"tenant_id": tenant_id, "after": cursor, "limit": limit + 1}
    rows = list(conn.execute(_LIST, params).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    return [dataset_view(row) for row in rows], (rows[-1]["name"] if more and rows else None)


def add_item(
    conn: Connection, tenant_id: uuid.UUID, name: str, body: ItemCreate | ItemFromJob
) -> dict[str, Any]:
    """One item at the dataset's next position (a job of another tenant, or a missing
    one, is 404; everything is checked before anything is written)."""
    dataset = find(conn, tenant_id, name)
    if isinstance(body, ItemFromJob):
        fields = item_from_job(conn, tenant_id, body.from_job)
        if body.expected is not None:
            fields["expected"] = body.expected
        size = canonical_size({k: fields[k] for k in ("variables", "messages", "expected")})
        if size > MAX_ITEM_BYTES:
            raise InvalidRequest(
                f"an item holds at most {MAX_ITEM_BYTES} bytes of JSON; this job's: {size}"
            )
    else:
        fields = {
            "variables": body.variables,
            "messages": (
                [m.model_dump(mode="json") for m in body.messages]
                if body.messages is not None
                else None
            ),
            "expected": body.expected,
            "metadata": body.metadata,
            "source_job_id": None,
        }
    position = conn.execute(
        _TAKE_POSITION, {"id": dataset["id"], "max": MAX_ITEMS_PER_DATASET}
    ).scalar()
    if position is None:
        raise InvalidRequest(f"a dataset holds at most {MAX_ITEMS_PER_DATASET} items")
    try:
        row = (
            conn.execute(
                _INSERT_ITEM,
                {"id": uuid.uuid4(), "dataset_id": dataset["id"], "position": position, **fields},
            )
            .mappings()
            .one()
        )
    except IntegrityError as exc:  # the item's shape is checked before; kept as a 422
        raise InvalidRequest("the item could not be stored") from exc
    return item_view(name, row)


def list_items(
    conn: Connection, tenant_id: uuid.UUID, name: str, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """In the order they were added, paged by position."""
    dataset = find(conn, tenant_id, name)
    start = cursor_of.read_position(cursor, "p", most=MAX_ITEMS_PER_DATASET) if cursor else 0
    params = {"dataset_id": dataset["id"], "start": start, "limit": limit + 1}
    rows = list(conn.execute(_ITEMS, params).mappings())
    next_cursor = cursor_of.position("p", rows[limit]["position"]) if len(rows) > limit else None
    return [item_view(name, row) for row in rows[:limit]], next_cursor
