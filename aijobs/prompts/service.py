"""Prompts of one tenant: create a version (numbered in Postgres, so concurrent creates
get distinct numbers with no gaps), read them, move labels. Services flush; the edge
commits. Another tenant's prompt is looked up exactly like a missing one."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from aijobs.billing.pricing import price_for
from aijobs.checks.schemas import judge_models
from aijobs.errors import InvalidRequest, NotFound, UnknownPrompt
from aijobs.prompts import render
from aijobs.prompts.schemas import MAX_VERSION_BYTES, LabelTarget, VersionCreate
from aijobs.settings import get_settings

# One writer of a tenant's prompts at a time (until commit): the per-tenant byte total
# is then exact. Creating versions is rare; reads and job submits never take it.
_LOCK_TENANT = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_TENANT_BYTES = text(
    """
    SELECT coalesce(sum(v.size_bytes), 0) FROM prompt_versions v
    JOIN prompts p ON p.id = v.prompt_id WHERE p.tenant_id = :tenant_id
    """
)
_LATEST = text(
    """
    SELECT p.name, v.version, v.content, v.variables, v.content_hash, v.created_at
    FROM prompts p JOIN prompt_versions v ON v.prompt_id = p.id
      AND v.version = p.latest_version
    WHERE p.tenant_id = :tenant_id AND p.name = :name
    """
)
# The prompt row numbers its versions: the upsert takes its row lock, so concurrent
# creates queue on it and each gets the next number; a rolled-back create gives its
# number back with the rest of its transaction.
_NEXT_NUMBER = text(
    """
    INSERT INTO prompts (tenant_id, name, latest_version) VALUES (:tenant_id, :name, 1)
    ON CONFLICT (tenant_id, name) DO UPDATE SET latest_version = prompts.latest_version + 1
        WHERE prompts.latest_version < :max_versions
    RETURNING id, latest_version
    """
)
_INSERT_VERSION = text(
    """
    INSERT INTO prompt_versions (prompt_id, version, content, variables, content_hash,
                                 size_bytes)
    VALUES (:prompt_id, :version, :content, :variables, :content_hash, :size_bytes)
    RETURNING created_at
    """
).bindparams(bindparam("content", type_=JSONB), bindparam("variables", type_=JSONB))
_PROMPT = text(
    "SELECT id, name, latest_version FROM prompts WHERE tenant_id = :tenant_id AND name = :name"
)
_VERSIONS = text(
    """
    SELECT version, content, variables, created_at FROM prompt_versions
    WHERE prompt_id = :prompt_id ORDER BY version
    """
)
_VERSION = text(
    """
    SELECT v.version, v.content, v.variables, v.created_at FROM prompt_versions v
    JOIN prompts p ON p.id = v.prompt_id
    WHERE p.tenant_id = :tenant_id AND p.name = :name AND v.version = :version
    """
)
_LABELS = text(
    "SELECT prompt_id, label, version, split FROM prompt_labels WHERE prompt_id = ANY(:ids)"
    " ORDER BY label"
)
_LIST = text(
    """
    SELECT id, name, latest_version FROM prompts
    WHERE tenant_id = :tenant_id AND (CAST(:after AS text) IS NULL OR name > :after)
    ORDER BY name LIMIT :limit
    """
)
_SET_LABEL = text(
    """
    INSERT INTO prompt_labels (prompt_id, label, version, split, updated_at)
    VALUES (:prompt_id, :label, :version, :split, now())
    ON CONFLICT (prompt_id, label) DO UPDATE
        SET version = EXCLUDED.version, split = EXCLUDED.split, updated_at = now()
    """
).bindparams(bindparam("split", type_=JSONB(none_as_null=True)))
_EXISTING = text(
    "SELECT version FROM prompt_versions WHERE prompt_id = :prompt_id AND version = ANY(:versions)"
)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def version_view(
    name: str, version: int, content: dict[str, Any], variables: list[str], created: datetime
) -> dict[str, Any]:
    """The version object of SPEC."""
    return {
        "name": name,
        "version": version,
        "variables": variables,
        **content,
        "created_at": created.isoformat(),
    }


def label_view(version: int | None, split: dict[str, int] | None) -> int | dict[str, Any]:
    """A plain label is its version number; a split shows as the body that set it."""
    if split is not None:
        return {"split": split}
    assert version is not None
    return version


def check_models(body: VersionCreate) -> None:
    """Every model the version may call has a price and can chat (unknown_model)."""
    for model in [body.model, *body.fallbacks, *judge_models(body.checks)]:
        price = price_for(model)
        if price.mode != "chat":
            raise InvalidRequest(f"model {model!r} is a {price.mode} model; prompts are chat")
    if body.model in body.fallbacks:
        raise InvalidRequest("fallbacks must not repeat the model")


def create_version(
    session: Session,
    tenant_id: uuid.UUID,
    name: str,
    body: VersionCreate,
    *,
    only_if_changed: bool = False,
) -> tuple[dict[str, Any], bool]:
    """The new version, and True; or, with only_if_changed and content equal to the
    latest version's, that version and False (nothing written)."""
    check_models(body)
    content = body.content()
    encoded = _canonical(content)
    if len(encoded) > MAX_VERSION_BYTES:
        raise InvalidRequest(
            f"a prompt version holds at most {MAX_VERSION_BYTES} bytes of content;"
            f" this one has {len(encoded)}"
        )
    digest = hashlib.sha256(encoded).hexdigest()
    variables = render.variables(message["content"] for message in content["messages"])
    settings = get_settings()
    conn = session.connection()
    conn.execute(_LOCK_TENANT, {"key": f"prompts:{tenant_id}"})
    if only_if_changed:
        latest = conn.execute(_LATEST, {"tenant_id": tenant_id, "name": name}).mappings().first()
        if latest is not None and latest["content_hash"] == digest:
            return _view_of(latest), False
    stored = int(conn.execute(_TENANT_BYTES, {"tenant_id": tenant_id}).scalar_one())
    if stored + len(encoded) > settings.prompt_max_bytes_per_tenant:
        raise InvalidRequest(
            f"this tenant's prompt versions would exceed {settings.prompt_max_bytes_per_tenant}"
            " bytes (AIJOBS_PROMPT_MAX_BYTES_PER_TENANT)"
        )
    numbered = conn.execute(
        _NEXT_NUMBER,
        {"tenant_id": tenant_id, "name": name, "max_versions": settings.prompt_max_versions},
    ).first()
    if numbered is None:
        raise InvalidRequest(
            f"prompt {name!r} has reached {settings.prompt_max_versions} versions"
            " (AIJOBS_PROMPT_MAX_VERSIONS)"
        )
    created = conn.execute(
        _INSERT_VERSION,
        {
            "prompt_id": numbered.id,
            "version": numbered.latest_version,
            "content": content,
            "variables": variables,
            "content_hash": digest,
            "size_bytes": len(encoded),
        },
    ).scalar_one()
    return version_view(name, numbered.latest_version, content, variables, created), True


def _view_of(row: RowMapping) -> dict[str, Any]:
    return version_view(
        row["name"], row["version"], row["content"], row["variables"], row["created_at"]
    )


def _prompt(conn: Connection, tenant_id: uuid.UUID, name: str) -> RowMapping:
    row = conn.execute(_PROMPT, {"tenant_id": tenant_id, "name": name}).mappings().first()
    if row is None:
        raise NotFound(f"no prompt named {name!r}")
    return row


def prompt_id(conn: Connection, tenant_id: uuid.UUID, name: str) -> int:
    """The prompt's id; NotFound for a missing prompt and for another tenant's alike."""
    return int(_prompt(conn, tenant_id, name)["id"])


def labels_of(conn: Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The labels of each prompt (by id), as the API shows them."""
    found: dict[int, dict[str, Any]] = {}
    for row in conn.execute(_LABELS, {"ids": ids}).mappings():
        found.setdefault(row["prompt_id"], {})[row["label"]] = label_view(
            row["version"], row["split"]
        )
    return found


def get_prompt(session: Session, tenant_id: uuid.UUID, name: str) -> dict[str, Any]:
    conn = session.connection()
    prompt = _prompt(conn, tenant_id, name)
    versions = [
        version_view(name, row.version, row.content, row.variables, row.created_at)
        for row in conn.execute(_VERSIONS, {"prompt_id": prompt["id"]})
    ]
    labels = labels_of(conn, [prompt["id"]]).get(prompt["id"], {})
    return {"name": name, "labels": labels, "versions": versions}


def get_version(session: Session, tenant_id: uuid.UUID, name: str, version: int) -> dict[str, Any]:
    row = (
        session.connection()
        .execute(_VERSION, {"tenant_id": tenant_id, "name": name, "version": version})
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"prompt {name!r} has no version {version}")
    return version_view(name, row["version"], row["content"], row["variables"], row["created_at"])


def list_prompts(
    session: Session, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """By name; the cursor is the last name of the page before (names sort uniquely)."""
    conn = session.connection()
    rows = list(
        conn.execute(
            _LIST, {"tenant_id": tenant_id, "after": cursor, "limit": limit + 1}
        ).mappings()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    labels = labels_of(conn, [row["id"] for row in rows])
    data = [
        {
            "name": row["name"],
            "latest_version": row["latest_version"],
            "labels": labels.get(row["id"], {}),
        }
        for row in rows
    ]
    return data, (rows[-1]["name"] if more and rows else None)


def set_label(
    session: Session, tenant_id: uuid.UUID, name: str, label: str, target: LabelTarget
) -> dict[str, Any]:
    """Point a label at a version or a split (moving it back is a rollback)."""
    conn = session.connection()
    prompt = _prompt(conn, tenant_id, name)
    wanted = target.versions()
    existing = {
        int(version)
        for version in conn.execute(
            _EXISTING, {"prompt_id": prompt["id"], "versions": wanted}
        ).scalars()
    }
    missing = [version for version in wanted if version not in existing]
    if missing:
        raise UnknownPrompt(
            f"prompt {name!r} has no version {', '.join(str(v) for v in missing)}",
            extra={"versions": missing},
        )
    split = target.stored_split()
    conn.execute(
        _SET_LABEL,
        {"prompt_id": prompt["id"], "label": label, "version": target.version, "split": split},
    )
    shown: dict[str, Any] = {"version": target.version} if split is None else {"split": split}
    return {"name": name, "label": label, **shown}
