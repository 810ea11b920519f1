"""What one provider call may use at most, for the reservation and the request alike: the
output cap (sent to the provider on every call, and reserved: one function, so the two
cannot differ) and a bound on input tokens that counts what aijobs adds to the client's
messages (the structured-output tool or response format, with the provider's own
prompt around it).

A call's reservation is computed at submit and its request built by the worker; both
read the same request and the same price table, through these functions.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from aijobs.billing.pricing import price_for
from aijobs.jobs.schemas import JobRequest

# Chat templates add a few tokens per message and per reply.
TOKENS_PER_MESSAGE = 8
TOKENS_PER_REQUEST = 16

# Structured output on Anthropic is a forced call of this tool, whose input schema is
# the job's response_schema: the tool input is the JSON object we validate.
STRUCTURED_TOOL_NAME = "respond"
STRUCTURED_TOOL_DESCRIPTION = "Return the answer as this JSON object."
# Anthropic adds a system prompt of its own when tools are given (346 tokens with a
# forced tool on Claude 4 models, per its tool-use pricing notes); OpenAI turns a
# json_schema response format into prompt text too. Margins above both.
TOOL_USE_PROMPT_TOKENS = 600
RESPONSE_FORMAT_PROMPT_TOKENS = 200


def structured_tool(schema: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic tool that carries a response_schema."""
    return {
        "name": STRUCTURED_TOOL_NAME,
        "description": STRUCTURED_TOOL_DESCRIPTION,
        "input_schema": schema,
    }


def structured_tool_choice() -> dict[str, str]:
    return {"type": "tool", "name": STRUCTURED_TOOL_NAME}


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Chat Completions response_format that carries a response_schema."""
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def output_cap(request: JobRequest, model: str) -> int:
    """The most output tokens the call may produce: the client's max_tokens clamped to
    the model's cap, or the model's cap. The worker sends exactly this."""
    if request.task == "embed":
        return 0
    cap = price_for(model).max_output_tokens
    asked = request.params.max_tokens
    return cap if asked is None else min(asked, cap)


def cap_param(model: str) -> str:
    """The request field that carries the output cap (max_tokens, or max_completion_tokens
    for the OpenAI models that refuse max_tokens)."""
    return price_for(model).cap_param


def _size(value: Any) -> int:
    return len(json.dumps(value).encode())


def added_input_tokens(request: JobRequest, model: str) -> int:
    """A bound on the input tokens aijobs itself adds to the client's messages."""
    if request.response_schema is None:
        return 0
    provider = model.partition("/")[0]
    if provider == "anthropic":
        tool = _size(structured_tool(request.response_schema))
        return tool + _size(structured_tool_choice()) + TOOL_USE_PROMPT_TOKENS
    if provider == "openai":
        return _size(response_format(request.response_schema)) + RESPONSE_FORMAT_PROMPT_TOKENS
    return 0  # the simulator sends nothing beyond the messages


def messages_token_bound(messages: list[dict[str, str]]) -> int:
    """A bound on the input tokens of messages added to a request (a check retry's)."""
    return sum(len(m["content"].encode()) + TOKENS_PER_MESSAGE for m in messages)


def added_input_cost(messages: list[dict[str, str]], model: str) -> Decimal:
    """The most messages added to a call's request cost as its input, at list price:
    reserved with the call, beside the request's own reservation."""
    return price_for(model).cost(messages_token_bound(messages), 0)


def input_token_bound(request: JobRequest, model: str) -> int:
    """A conservative bound on a call's input tokens: a token covers at least one UTF-8
    byte, plus the template's tokens and what aijobs adds."""
    if request.messages is not None:
        texts = [message.content for message in request.messages]
    elif isinstance(request.input, list):
        texts = request.input
    else:
        texts = [request.input or ""]
    size = sum(len(item.encode()) for item in texts)
    template = TOKENS_PER_MESSAGE * len(texts) + TOKENS_PER_REQUEST
    return size + template + added_input_tokens(request, model)
