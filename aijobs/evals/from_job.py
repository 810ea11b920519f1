"""An item made from a job of the tenant (POST /v1/datasets/{name}/items {"from_job"}).

A prompt job stores the messages it rendered, not its variables: they are read back by
matching the version's template against the rendered messages (each placeholder a
group, on RE2, so the match is linear in time whatever the text), and kept only when
rendering them again gives the job's messages exactly. A job whose variables cannot be
read back that way (a value holding the text between two placeholders may split in
more than one way; the first that renders the same is kept), or a job that named no
prompt, makes an item of its messages."""

from __future__ import annotations

import uuid
from typing import Any

import re2
from sqlalchemy import Connection, text

from aijobs.errors import InvalidRequest, NotFound
from aijobs.prompts import render

_JOB = text(
    """
    SELECT id, task, request, result, prompt, purged FROM jobs
    WHERE id = :id AND tenant_id = :tenant_id
    """
)
_TEMPLATE = text(
    """
    SELECT v.content FROM prompt_versions v JOIN prompts p ON p.id = v.prompt_id
    WHERE p.tenant_id = :tenant_id AND p.name = :name AND v.version = :version
    """
)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.dot_nl = True
_OPTIONS.max_mem = 64 << 20


def item_from_job(conn: Connection, tenant_id: uuid.UUID, job_id: str) -> dict[str, Any]:
    """The item's fields from the job: variables or messages, the job's result text as
    `expected` (None when it has no result), and its id as the source."""
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"no job {job_id}") from None
    job = conn.execute(_JOB, {"id": parsed, "tenant_id": tenant_id}).mappings().first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job["purged"]:
        raise InvalidRequest(f"job {job_id} was purged (retention): its request is gone")
    if job["task"] != "chat":
        raise InvalidRequest(f"job {job_id} is an {job['task']} job; an item needs messages")
    messages = [
        {"role": m["role"], "content": m["content"]} for m in job["request"].get("messages", [])
    ]
    result = job["result"]
    fields: dict[str, Any] = {
        "variables": None,
        "messages": messages,
        "expected": result.get("content") if isinstance(result, dict) else None,
        "metadata": {},
        "source_job_id": parsed,
    }
    prompt = job["prompt"]
    if prompt is not None:
        params = {"tenant_id": tenant_id, "name": prompt["name"], "version": prompt["version"]}
        content = conn.execute(_TEMPLATE, params).scalar()
        variables = read_variables(content["messages"], messages) if content else None
        if variables is not None:
            fields["variables"], fields["messages"] = variables, None
    return fields


def _pattern(template: str, known: dict[str, str]) -> tuple[Any, list[str]] | None:
    """The template as an RE2 pattern: a value read from an earlier message as its
    literal text, a group for each other placeholder occurrence."""
    names: list[str] = []
    parts: list[str] = []
    last = 0
    for match in render.PLACEHOLDER.finditer(template):
        parts.append(re2.escape(template[last : match.start()]))
        name = match.group(1)
        if name in known:
            parts.append(re2.escape(known[name]))
        else:
            parts.append("(.*?)")
            names.append(name)
        last = match.end()
    parts.append(re2.escape(template[last:]))
    try:
        return re2.compile("".join(parts), _OPTIONS), names
    except re2.error:
        return None


def read_variables(
    templates: list[dict[str, Any]], rendered: list[dict[str, Any]]
) -> dict[str, str] | None:
    """The values that render `templates` into `rendered` exactly, or None. Messages
    are read in order, each value as the first (shortest) reading that fits."""
    if len(templates) != len(rendered):
        return None
    values: dict[str, str] = {}
    for template, message in zip(templates, rendered, strict=True):
        if template["role"] != message["role"]:
            return None
        compiled = _pattern(template["content"], values)
        if compiled is None:
            return None
        pattern, names = compiled
        match = pattern.fullmatch(message["content"])
        if match is None:
            return None
        for name, value in zip(names, match.groups(), strict=True):
            if values.setdefault(name, value) != value:
                return None
    texts = [t["content"] for t in templates]
    try:
        again = render.render(texts, values)
    except InvalidRequest:
        return None
    if again != [m["content"] for m in rendered]:
        return None
    return values
