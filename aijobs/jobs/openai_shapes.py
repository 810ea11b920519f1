"""OpenAI's Chat Completions and Embeddings shapes, translated to and from aijobs jobs:
the request body to a JobRequest, a finished job to OpenAI's object (or, streamed, to
its chunks), a job's error to OpenAI's error object. Pure functions; the HTTP edge is
api/routes/openai_compat.py."""

from __future__ import annotations

import base64
import struct
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aijobs.errors import InvalidRequest, Unsupported
from aijobs.jobs.schemas import JobRequest

# aijobs' own options, sent beside OpenAI's fields (the SDK's `extra_body`). OpenAI's
# own `metadata` (string pairs) means the same as aijobs'.
AIJOBS_OPTIONS = (
    "metadata",
    "cache",
    "max_attempts",
    "timeout_s",
    "fallbacks",
    "priority",
    "checks",
    "webhook_url",
)
# OpenAI fields accepted and ignored: they change nothing in the answer.
_IGNORED = ("user", "store", "service_tier", "safety_identifier", "prompt_cache_key")
# OpenAI fields a job cannot honour: accepted only with their default (or null).
_CHAT_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "tools": ([],),
    "tool_choice": ("none", "auto"),
    "parallel_tool_calls": (True, False),
    "functions": ([],),
    "function_call": ("none", "auto"),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "logit_bias": ({},),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "web_search_options": (),
    "reasoning_effort": (),
    "verbosity": (),
}
_CHAT_FIELDS = (
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "response_format",
    "stream",
    "stream_options",
)
_STREAM_OPTIONS = ("include_usage", "include_obfuscation")
_EMBEDDING_DEFAULTS: dict[str, tuple[Any, ...]] = {"dimensions": ()}
_EMBEDDING_FIELDS = ("model", "input", "encoding_format")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Providers' own finish reasons (Anthropic's) in OpenAI's words.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}

# A job's error code → the HTTP status its OpenAI-shaped answer carries.
STATUS_FOR_JOB_ERROR = {
    "budget_exceeded": 402,
    "check_failed": 422,
    "cancelled": 409,
    "provider_rate_limited": 429,
    "provider_error": 502,
    "invalid_output": 502,
    "provider_timeout": 504,
    "internal": 500,
}
_ERROR_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def check_fields(
    body: dict[str, Any], known: tuple[str, ...], defaults: dict[str, tuple[Any, ...]]
) -> None:
    """Unknown fields are a 422 invalid_request (a typo must not pass silently); OpenAI
    fields a job cannot honour are a 422 unsupported unless they hold their default."""
    for name, value in body.items():
        if name in defaults:
            if value is not None and value not in defaults[name]:
                raise Unsupported(
                    f"{name}={value!r} is not supported on this route", extra={"field": name}
                )
        elif name not in known and name not in AIJOBS_OPTIONS and name not in _IGNORED:
            raise InvalidRequest(f"unknown field {name!r}", extra={"field": name})


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or text parts joined (other parts: unsupported)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise Unsupported(f"{where}: content parts of type {kind!r} are not supported")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise InvalidRequest(f"{where}: content must be a string or a list of text parts")


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list", extra={"field": "messages"})
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object")
        role = message.get("role")
        if (
            role in ("tool", "function")
            or message.get("tool_calls")
            or message.get("function_call")
        ):
            raise Unsupported(f"{where}: tool calls are not supported (jobs take no tools)")
        if role not in _ROLES:
            raise InvalidRequest(f"{where}.role must be one of {', '.join(_ROLES)}")
        for name, value in message.items():
            if name in ("role", "content") or value is None:
                continue
            if name in ("name", "refusal", "audio"):
                raise Unsupported(f"{where}.{name} is not supported")
            raise InvalidRequest(f"{where}: unknown field {name!r}")
        out.append({"role": _ROLES[role], "content": _text(message.get("content"), where)})
    return out


def _response_schema(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object")
        return schema
    raise InvalidRequest(
        "response_format.type must be text, json_object or json_schema",
        extra={"field": "response_format"},
    )


def aijobs_options(body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in AIJOBS_OPTIONS if body.get(name) is not None}


def validated(job: dict[str, Any]) -> JobRequest:
    try:
        return JobRequest.model_validate(job)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0]
        where = ".".join(first["loc"]) or "request"
        raise InvalidRequest(f"{where}: {first['msg']}", extra={"errors": errors}) from exc


def _stream(body: dict[str, Any]) -> bool:
    """`stream`, with `stream_options` checked (given only with stream: true)."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", extra={"field": "stream"})
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "stream_options is only allowed with stream: true",
                extra={"field": "stream_options"},
            )
        if not isinstance(options, dict):
            raise InvalidRequest("stream_options must be an object")
        for name, value in options.items():
            if name not in _STREAM_OPTIONS:
                raise InvalidRequest(
                    f"stream_options: unknown field {name!r}", extra={"field": "stream_options"}
                )
            if value is not None and not isinstance(value, bool):
                raise InvalidRequest(f"stream_options.{name} must be a boolean")
    return bool(stream)


def include_usage(body: dict[str, Any]) -> bool:
    """stream_options.include_usage: a last chunk with the usage and no choices."""
    options = body.get("stream_options") or {}
    return bool(options.get("include_usage"))


def chat_job_request(body: dict[str, Any]) -> JobRequest:
    """A Chat Completions body as the aijobs chat job it runs as (`stream: true`: a job
    whose call streams, so its events carry the text as it comes)."""
    check_fields(body, _CHAT_FIELDS, _CHAT_DEFAULTS)
    stream = _stream(body)
    max_tokens, max_completion = body.get("max_tokens"), body.get("max_completion_tokens")
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise InvalidRequest("max_tokens and max_completion_tokens disagree")
    params = {
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_tokens": max_completion if max_completion is not None else max_tokens,
        "stop": body.get("stop"),
        "seed": body.get("seed"),
    }
    job = {
        "model": body.get("model"),
        "task": "chat",
        "messages": _messages(body.get("messages")),
        "params": {k: v for k, v in params.items() if v is not None},
        "response_schema": _response_schema(body.get("response_format")),
        "stream": stream or None,
        **aijobs_options(body),
    }
    return validated({k: v for k, v in job.items() if v is not None})


def embedding_job_request(body: dict[str, Any]) -> JobRequest:
    """An Embeddings body as the aijobs embed job it runs as."""
    check_fields(body, _EMBEDDING_FIELDS, _EMBEDDING_DEFAULTS)
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be float or base64")
    given = body.get("input")
    texts = given if isinstance(given, list) else [given]
    if any(not isinstance(text, str) for text in texts):
        raise Unsupported("input must be a string or a list of strings (token arrays are not)")
    job = {"model": body.get("model"), "task": "embed", "input": given, **aijobs_options(body)}
    return validated(job)


def created_at_s(view: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(view["created_at"]).timestamp())


def answered_by(view: dict[str, Any]) -> str:
    return str(view["answered_by"] or view["model"])


def _chat_usage(view: dict[str, Any]) -> dict[str, int]:
    usage = view["usage"]
    prompt, completion = usage["input_tokens"] or 0, usage["output_tokens"] or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(view: dict[str, Any]) -> str:
    """A succeeded job's finish reason in OpenAI's words."""
    reason = (view["result"] or {}).get("finish_reason") or "stop"
    return _FINISH_REASONS.get(reason, reason)


def chat_completion(view: dict[str, Any]) -> dict[str, Any]:
    """A succeeded chat job (the job object of docs/api.md) as a chat.completion."""
    result = view["result"] or {}
    return {
        "id": f"chatcmpl-{view['id']}",
        "object": "chat.completion",
        "created": created_at_s(view),
        "model": answered_by(view),
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": result.get("content", ""),
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": finish_reason(view),
            }
        ],
        "usage": _chat_usage(view),
        "system_fingerprint": None,
    }


def chat_chunk(
    job: dict[str, Any],
    model: str,
    delta: dict[str, str],
    reason: str | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One chat.completion.chunk of a streamed chat job: `delta` is {"role"?, "content"?}
    ({} in the last, with the finish reason). With stream_options.include_usage every
    chunk carries `usage: null`, as OpenAI's do."""
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{job['id']}",
        "object": "chat.completion.chunk",
        "created": created_at_s(job),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    if with_usage:
        chunk["usage"] = None
    return chunk


def chat_usage_chunk(view: dict[str, Any]) -> dict[str, Any]:
    """The last chunk of a stream with stream_options.include_usage: no choices, the
    job's usage (every attempt's tokens, as the job object counts them)."""
    chunk = chat_chunk(view, answered_by(view), {})
    chunk["choices"] = []
    chunk["usage"] = _chat_usage(view)
    return chunk


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(view: dict[str, Any], encoding_format: str = "float") -> dict[str, Any]:
    """A succeeded embed job as Embeddings' list object."""
    vectors = (view["result"] or {}).get("embeddings") or []
    tokens = view["usage"]["input_tokens"] or 0
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _base64(vector) if encoding_format == "base64" else vector,
            }
            for i, vector in enumerate(vectors)
        ],
        "model": answered_by(view),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object, carrying aijobs' code."""
    kind = _ERROR_TYPES.get(status)
    if kind is None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def job_error(view: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A job that ended without a result: the status and OpenAI error that answer it."""
    error = view["error"] or {"code": "internal", "message": f"the job ended {view['status']}"}
    code = error["code"]
    message = error["message"] or code
    status = STATUS_FOR_JOB_ERROR.get(code, 500)
    return status, error_body(status, code, f"job {view['id']}: {message}")
