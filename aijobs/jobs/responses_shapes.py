"""OpenAI's Responses API shapes for aijobs chat jobs: a POST /v1/responses body as the
job it runs as, and a job as OpenAI's Response object. Pure functions; the HTTP edge is
api/routes/responses.py, the streamed events aijobs/jobs/responses_events.py.

A Response is read back from its job alone (any API process, any time later), so every
field it shows comes from what a job keeps: its view and its stored request. The one
exception is `background`, which a job does not keep: the answer to the POST echoes it,
a read shows null."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aijobs.errors import InvalidRequest, NotFound, Unsupported
from aijobs.jobs import openai_shapes
from aijobs.jobs.schemas import JobRequest

_FIELDS = (
    "model",
    "input",
    "instructions",
    "background",
    "stream",
    "stream_options",
    "text",
    "max_output_tokens",
    "temperature",
    "top_p",
    # Accepted and ignored: they change nothing in the answer.
    "prompt_cache_retention",
)
# OpenAI fields a job cannot honour: accepted only with their default (or null).
# `store: false` asks that the response not be kept; a job always is (until retention).
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "store": (True,),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "parallel_tool_calls": (True, False),
    "previous_response_id": (),
    "conversation": (),
    "prompt": (),
    "reasoning": (),
    "include": ([],),
    "truncation": ("disabled",),
    "max_tool_calls": (),
    "top_logprobs": (0,),
    "context_management": (),
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text")
# The name aijobs gives a JSON Schema when it sends one to a provider; a job keeps the
# schema, not the name the request gave it.
SCHEMA_NAME = "response"
_STATUSES = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
_RESPONSE_PREFIX = "resp_"
_MESSAGE_PREFIX = "msg_"


@dataclass(frozen=True)
class Asked:
    """A POST /v1/responses body: the job it runs as, and how to answer."""

    job: JobRequest
    background: bool
    stream: bool


def response_id(job_id: str) -> str:
    return _RESPONSE_PREFIX + uuid.UUID(job_id).hex


def message_id(job_id: str) -> str:
    """The id of the Response's one output message (the same in every read)."""
    return _MESSAGE_PREFIX + uuid.UUID(job_id).hex


def job_id_of(response: str) -> str:
    """The job behind a Response id; an id not of the form resp_<32 hex> is a 404."""
    hex_part = response.removeprefix(_RESPONSE_PREFIX)
    if hex_part == response or len(hex_part) != 32:
        raise NotFound(f"no response {response}")
    try:
        return str(uuid.UUID(hex=hex_part))
    except ValueError as exc:
        raise NotFound(f"no response {response}") from exc


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be a boolean", extra={"field": name})
    return bool(value)


def _content(content: Any, where: str) -> str:
    """An input message's content: a string, or text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list of content parts")
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise Unsupported(
                f"{where}.content[{i}]: content parts of type {kind!r} are not supported "
                "(input_text only)"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.content[{i}].text must be a string")
        texts.append(text)
    return "\n".join(texts)


def _input_messages(given: Any) -> list[dict[str, str]]:
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise InvalidRequest(
            "input must be a string or a non-empty list of messages", extra={"field": "input"}
        )
    messages = []
    for i, item in enumerate(given):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object")
        if item.get("type", "message") != "message":
            raise Unsupported(f"{where}: items of type {item.get('type')!r} are not supported")
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequest(f"{where}.role must be one of {', '.join(_ROLES)}")
        for name in item:
            if name not in ("type", "role", "content", "id", "status"):
                raise InvalidRequest(f"{where}: unknown field {name!r}")
        messages.append({"role": _ROLES[role], "content": _content(item.get("content"), where)})
    return messages


def _schema(text: Any) -> dict[str, Any] | None:
    """text.format as a response_schema: json_schema → its schema, json_object → any
    object, text (or none) → None."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequest("text must be an object", extra={"field": "text"})
    for name, value in text.items():
        if name == "verbosity" and value is not None:
            raise Unsupported("text.verbosity is not supported", extra={"field": "text"})
        if name not in ("format", "verbosity"):
            raise InvalidRequest(f"text: unknown field {name!r}", extra={"field": "text"})
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("text.format.schema must be an object", extra={"field": "text"})
        return schema
    raise InvalidRequest(
        "text.format.type must be text, json_object or json_schema", extra={"field": "text"}
    )


def _check_stream_options(body: dict[str, Any], stream: bool) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if not stream:
        raise InvalidRequest(
            "stream_options is only allowed with stream: true", extra={"field": "stream_options"}
        )
    if not isinstance(options, dict) or set(options) - {"include_obfuscation"}:
        raise InvalidRequest(
            "stream_options takes include_obfuscation only", extra={"field": "stream_options"}
        )


def response_request(body: dict[str, Any]) -> Asked:
    """A Responses body as the aijobs chat job it runs as: `instructions` first as a
    system message, then `input`; `text.format` as the response_schema; `stream: true`
    makes the job's call stream (its events carry the text as it comes)."""
    openai_shapes.check_fields(body, _FIELDS, _DEFAULTS)
    background, stream = _flag(body, "background"), _flag(body, "stream")
    _check_stream_options(body, stream)
    messages = _input_messages(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise Unsupported(
                "instructions must be a string (a list of items is not supported)",
                extra={"field": "instructions"},
            )
        messages.insert(0, {"role": "system", "content": instructions})
    params = {
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_tokens": body.get("max_output_tokens"),
    }
    job = {
        "model": body.get("model"),
        "task": "chat",
        "messages": messages,
        "params": {k: v for k, v in params.items() if v is not None},
        "response_schema": _schema(body.get("text")),
        "stream": stream or None,
        **openai_shapes.aijobs_options(body),
    }
    request = openai_shapes.validated({k: v for k, v in job.items() if v is not None})
    return Asked(request, background, stream)


def stored(request: JobRequest) -> dict[str, Any]:
    """The request as a job keeps it (what a later read builds the Response from)."""
    return request.model_dump(mode="json", exclude_none=True)


def _instructions(request: dict[str, Any]) -> str | None:
    """The job's leading system message: where `instructions` went."""
    messages = request.get("messages") or []
    if messages and messages[0].get("role") == "system":
        return str(messages[0].get("content", ""))
    return None


def _text_config(request: dict[str, Any]) -> dict[str, Any]:
    schema = request.get("response_schema")
    if schema is None:
        return {"format": {"type": "text"}}
    return {"format": {"type": "json_schema", "name": SCHEMA_NAME, "schema": schema}}


def _timestamp(value: str | None) -> int | None:
    return int(datetime.fromisoformat(value).timestamp()) if value else None


def start(job: dict[str, Any], request: dict[str, Any], background: bool | None) -> dict[str, Any]:
    """The Response as it starts (queued, no output): from what a job never changes
    (id, created_at, model, metadata, the request), so it reads the same at any time."""
    params = request.get("params") or {}
    return {
        "id": response_id(job["id"]),
        "object": "response",
        "created_at": openai_shapes.created_at_s(job),
        "status": "queued",
        "background": background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": _instructions(request),
        "max_output_tokens": params.get("max_tokens"),
        "max_tool_calls": None,
        "metadata": job.get("metadata") or {},
        "model": job["model"],
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": None,
        "store": True,
        "temperature": params.get("temperature"),
        "text": _text_config(request),
        "tool_choice": "auto",
        "tools": [],
        "top_p": params.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }


def _incomplete(view: dict[str, Any]) -> bool:
    return view["status"] == "succeeded" and openai_shapes.finish_reason(view) == "length"


def status(view: dict[str, Any]) -> str:
    """The job's status in the Responses API's words (a result cut at the output cap
    is `incomplete`)."""
    return "incomplete" if _incomplete(view) else _STATUSES[view["status"]]


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_message(item_id: str, text: str, item_status: str) -> dict[str, Any]:
    """The Response's one output item: an assistant message holding the text (no
    content yet while in progress)."""
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": item_status,
        "content": [text_part(text)] if item_status != "in_progress" else [],
    }


def usage(
    view: dict[str, Any], cached_tokens: int = 0, cache_write_tokens: int = 0
) -> dict[str, Any]:
    """The job's usage (every call it made) in the Responses API's words; the cached
    and cache-write input tokens are its attempts' (the job object does not show them)."""
    tokens = view["usage"]
    given, produced = tokens["input_tokens"] or 0, tokens["output_tokens"] or 0
    return {
        "input_tokens": given,
        "input_tokens_details": {
            "cached_tokens": cached_tokens,
            "cache_write_tokens": cache_write_tokens,
        },
        "output_tokens": produced,
        # Reasoning tokens are counted as output by aijobs, not apart.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": given + produced,
    }


def response_object(
    view: dict[str, Any],
    request: dict[str, Any],
    background: bool | None = None,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> dict[str, Any]:
    """A chat job (the job object of docs/api.md, with its stored request) as OpenAI's
    Response object."""
    response = start(view, request, background)
    shown = status(view)
    response["status"] = shown
    if view["status"] in ("succeeded", "failed", "cancelled"):
        response["usage"] = usage(view, cached_tokens, cache_write_tokens)
    if view["status"] == "succeeded":
        response["model"] = openai_shapes.answered_by(view)
        text = (view["result"] or {}).get("content") or ""
        item_status = "incomplete" if shown == "incomplete" else "completed"
        response["output"] = [output_message(message_id(view["id"]), text, item_status)]
    if shown == "completed":
        response["completed_at"] = _timestamp(view["finished_at"])
    if shown == "incomplete":
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    if view["error"] is not None and view["status"] != "succeeded":
        response["error"] = {"code": view["error"]["code"], "message": view["error"]["message"]}
    return response
