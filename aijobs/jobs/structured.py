"""Structured output: the model's text must parse as JSON and validate against the schema.

No schema a tenant sends can stall a worker: its size and depth are bounded at submit
(`check_limits`), and every regex in it (`pattern`, `patternProperties`, which
`additionalProperties` and `unevaluatedProperties` also consult) runs on RE2, a
linear-time engine, instead of Python's backtracking `re`. A pattern RE2 cannot run
(backreferences, lookaround) is refused at submit."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema._keywords
import jsonschema._utils
import re2
from jsonschema import Draft202012Validator

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


class _LinearRegex:
    """Stands in for the `re` module inside jsonschema's keywords, which call only
    `re.search(pattern, text)` (jsonschema is pinned; tests/jobs/test_structured.py
    proves an exponential pattern stays fast)."""

    @staticmethod
    def search(pattern: str, text: str) -> Any:
        return _compiled(pattern).search(text)


jsonschema._keywords.re = _LinearRegex  # type: ignore[attr-defined]
jsonschema._utils.re = _LinearRegex  # type: ignore[attr-defined]


def _patterns(schema: Any, depth: int = 0) -> list[str]:
    """Every regex a schema holds; ValueError past MAX_SCHEMA_DEPTH."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError(f"response_schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    found: list[str] = []
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            found.append(schema["pattern"])
        properties = schema.get("patternProperties")
        if isinstance(properties, dict):
            found += [str(key) for key in properties]
        for value in schema.values():
            found += _patterns(value, depth + 1)
    elif isinstance(schema, list):
        for value in schema:
            found += _patterns(value, depth + 1)
    return found


def check_limits(schema: dict[str, Any]) -> None:
    """At submit: the schema is small and shallow enough, and RE2 runs its regexes."""
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"response_schema is {size} bytes; at most {MAX_SCHEMA_BYTES}")
    for pattern in _patterns(schema):
        try:
            _compiled(pattern)
        except re2.error as exc:
            raise ValueError(
                f"response_schema pattern {pattern[:100]!r} is not supported by the"
                f" linear-time regex engine (RE2: no backreferences or lookaround): {exc}"
            ) from None


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
