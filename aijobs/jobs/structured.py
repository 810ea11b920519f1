"""Structured output: the model's text must parse as JSON and validate against the schema."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator


class InvalidOutput(Exception):
    """The output did not parse or did not match the schema (code invalid_output)."""


def parse_output(content: str, schema: dict[str, Any]) -> Any:
    text = content.strip()
    # Models often wrap JSON in a markdown fence even when asked not to.
    if text.startswith("```"):
        text = text.strip("`")
        text = text.removeprefix("json").strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOutput(f"output is not JSON: {exc.msg} at position {exc.pos}") from exc
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise InvalidOutput(f"output does not match response_schema at {where}: {error.message}")
    return value
