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
