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


def test_references_must_stay_inside_the_schema() -> None:
    from aijobs.jobs.structured import check_refs

    for inside in (
        {"$defs": {"A": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/A"}}},
        {"definitions": {"A": {"type": "string"}}, "items": {"$ref": "#/definitions/A"}},
        {"type": "array", "items": {"$ref": "#"}},  # recursion through the root
        {"$defs": {"A": {"$anchor": "name", "type": "string"}}, "items": {"$ref": "#name"}},
        {"$dynamicAnchor": "node", "items": {"$dynamicRef": "#node"}},
        # Resolved against an $id, a fragment still lands in that same resource.
        {"$id": "https://example.com/r.json", "$defs": {"A": {}}, "items": {"$ref": "#/$defs/A"}},
        {"const": {"$id": 5}},  # not a schema position; nothing to resolve
    ):
        check_refs(inside)
    for outside in (
        {"$ref": "https://example.com/s.json"},
        {"$ref": "file:///etc/passwd"},
        {"$ref": "s.json#/x"},
        {"$id": "https://example.com/", "items": {"$ref": "s.json"}},
        {"items": {"$dynamicRef": "https://example.com/s.json#node"}},
        {"items": {"$recursiveRef": "https://example.com/s.json"}},
        {"$ref": "#/$defs/missing"},
    ):
        with pytest.raises(ValueError, match="points"):
            check_refs(outside)


def test_an_older_drafts_keywords_run_on_re2_too() -> None:
    """A subschema's `$schema` switches jsonschema to that draft's keywords; draft
    2019-09's unevaluatedProperties has its own regex call (about 6 s on Python's re
    for 26 x's, doubling with each one more)."""
    import time

    schema = {
        "properties": {
            "a": {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "patternProperties": {"^(x+)+$": {}},
                "unevaluatedProperties": False,
            }
        }
    }
    started = time.monotonic()
    with pytest.raises(InvalidOutput, match="properties the schema does not allow"):
        parse_output('{"a": {"' + "x" * 26 + '!": 1}}', schema)
    assert time.monotonic() - started < 1.0
