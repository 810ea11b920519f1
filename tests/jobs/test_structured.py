"""Structured output: the text must parse as JSON and match the schema."""

from __future__ import annotations

import pytest

from aijobs.jobs.structured import InvalidOutput, parse_output


def test_structured_output() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert parse_output('{"a": 1}', schema) == {"a": 1}
    assert parse_output('```json\n{"a": 2}\n```', schema) == {"a": 2}
    with pytest.raises(InvalidOutput, match="not JSON"):
        parse_output("nope", schema)
    with pytest.raises(InvalidOutput, match="does not match"):
        parse_output('{"a": "x"}', schema)


def test_a_backtracking_pattern_runs_in_linear_time() -> None:
    """`^(a+)+$` against 34 a's and a '!' takes Python's re minutes; RE2, microseconds."""
    import time

    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^(x+)+$": {}},
        "additionalProperties": False,
    }
    started = time.monotonic()
    with pytest.raises(InvalidOutput, match="does not match"):
        parse_output('{"a": "' + "a" * 34 + '!"}', schema)
    assert time.monotonic() - started < 1.0


def test_schemas_are_bounded_at_submit() -> None:
    from aijobs.jobs.structured import check_limits

    with pytest.raises(ValueError, match="linear-time"):
        check_limits({"type": "string", "pattern": "(?=a)b"})
    deep: dict[str, object] = {"type": "string"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    with pytest.raises(ValueError, match="deeper"):
        check_limits(deep)
    with pytest.raises(ValueError, match="bytes"):
        check_limits({"description": "x" * 70_000})
    check_limits({"type": "object", "properties": {"a": {"pattern": "^[a-z]+$"}}})
