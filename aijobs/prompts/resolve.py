"""A job that names a prompt: find the version its label (or number) points at, check
and render the variables, and build the plain request that runs. Everything after
this (fingerprint, budget, the worker) sees only the rendered request."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, text

from aijobs.checks.schemas import Check
from aijobs.errors import InvalidRequest, UnknownPrompt
from aijobs.jobs.schemas import JobRequest, Message, Params
from aijobs.prompts import labels, render

_CHECKS: TypeAdapter[list[Check]] = TypeAdapter(list[Check])

# One round trip for the usual case (a label naming one version, or a version number):
# the prompt, the label and the version it names.
_BY_LABEL = text(
    """
    SELECT p.id, l.label IS NOT NULL AS labelled, l.split, v.version, v.content, v.variables
    FROM prompts p
    LEFT JOIN prompt_labels l ON l.prompt_id = p.id AND l.label = :label
    LEFT JOIN prompt_versions v ON v.prompt_id = p.id AND v.version = l.version
    WHERE p.tenant_id = :tenant_id AND p.name = :name
    """
)
_BY_NUMBER = text(
    """
    SELECT p.id, v.version, v.content, v.variables FROM prompts p
    LEFT JOIN prompt_versions v ON v.prompt_id = p.id AND v.version = :version
    WHERE p.tenant_id = :tenant_id AND p.name = :name
    """
)
_SPLIT_VERSION = text(
    "SELECT version, content, variables FROM prompt_versions"
    " WHERE prompt_id = :prompt_id AND version = :version"
)


def _version(conn: Connection, tenant_id: uuid.UUID, request: JobRequest) -> Any:
    ref = request.prompt
    assert ref is not None
    where = {"tenant_id": tenant_id, "name": ref.name}
    if ref.version is not None:
        row = conn.execute(_BY_NUMBER, {**where, "version": ref.version}).first()
        if row is None:
            raise UnknownPrompt(f"no prompt named {ref.name!r}")
        if row.version is None:
            raise UnknownPrompt(f"prompt {ref.name!r} has no version {ref.version}")
        return row
    label = ref.target
    row = conn.execute(_BY_LABEL, {**where, "label": label}).first()
    if row is None:
        raise UnknownPrompt(f"no prompt named {ref.name!r}")
    if not row.labelled:
        raise UnknownPrompt(f"prompt {ref.name!r} has no label {label!r}")
    if row.split is None:
        return row
    number = labels.pick(
        row.split, tenant_id=tenant_id, name=ref.name, label=label, subject=request.subject
    )
    return conn.execute(_SPLIT_VERSION, {"prompt_id": row.id, "version": number}).one()


def resolve(
    conn: Connection, tenant_id: uuid.UUID, request: JobRequest
) -> tuple[JobRequest, dict[str, Any]]:
    """The request to run (rendered messages; the version's model, params,
    response_schema, fallbacks and checks unless the request gives its own), and the
    job's `prompt` ({"name", "version"})."""
    ref = request.prompt
    assert ref is not None
    row = _version(conn, tenant_id, request)
    content: dict[str, Any] = row.content
    render.check_variables(row.variables, ref.variables)
    rendered = render.render([m["content"] for m in content["messages"]], ref.variables)
    given = request.model_fields_set
    params = dict(content["params"])
    if "params" in given:
        params.update(request.params.model_dump(mode="json", exclude_unset=True))
    try:
        messages = [
            Message(role=m["role"], content=text_)
            for m, text_ in zip(content["messages"], rendered, strict=True)
        ]
        update: dict[str, Any] = {
            "prompt": None,
            "subject": None,
            "messages": messages,
            "params": Params.model_validate(params),
            "model": request.model or content["model"],
        }
    except ValueError as exc:  # a rendered message over the size of a message
        raise InvalidRequest(f"the rendered prompt is not a valid request: {exc}") from None
    for field in ("response_schema", "fallbacks"):
        if field not in given:
            update[field] = content[field]
    if "checks" not in given:
        update["checks"] = _CHECKS.validate_python(content["checks"])
    resolved = request.model_copy(update=update)
    return resolved, {"name": ref.name, "version": int(row.version)}
