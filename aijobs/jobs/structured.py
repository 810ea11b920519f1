"""Structured output: the model's text must parse as JSON and validate against the schema.

No schema a tenant sends can stall a worker: its size and depth are bounded at submit
(`check_limits`), and every regex in it (`pattern`, `patternProperties`, which
`additionalProperties` and `unevaluatedProperties` also consult) runs on RE2, a
linear-time engine, instead of Python's backtracking `re`. A pattern RE2 cannot run
(backreferences, lookaround) is refused at submit.

Nor can a schema make a worker fetch a URL or read a file: a `$ref` (and `$dynamicRef`,
`$recursiveRef`) must point inside the schema (`#...`) and at something there, checked
at submit (`check_refs`); and validation runs on a registry that retrieves nothing, so
a reference that slipped past fails instead of being fetched (jsonschema's default
registry would fetch it with urllib, `file://` included). A `$schema` only selects a
built-in dialect by name; it is never fetched.

What a tenant sees when output is invalid is said in our words, built from the
failing keyword and the output's path; the library's message text is not copied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin

import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import re2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

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
# A subschema's `$schema` can switch jsonschema to an older draft's keywords.
jsonschema._legacy_keywords.re = _LinearRegex  # type: ignore[attr-defined]

REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refuse_retrieval(uri: str) -> Resource[Any]:
    """The registry's only way to fetch: it never does (no network, no disk)."""
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Validators get this registry instead of jsonschema's default, which fetches any URI
# it does not know with urllib.
NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


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


def check_schema(schema: dict[str, Any]) -> None:
    """At submit (a job, a prompt version): a valid JSON Schema, small, shallow, its
    regexes RE2's, and every reference inside it. ValueError says what is wrong."""
    check_limits(schema)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"response_schema is not a valid JSON Schema: {exc.message}") from exc
    check_refs(schema)


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


def _refs(schema: Any, base: str = "") -> Iterator[tuple[str, str, str]]:
    """(keyword, reference, base URI) of every reference in the schema. Every object is
    looked at, not only schema positions: stricter, and nothing can hide a ref."""
    if isinstance(schema, dict):
        if isinstance(schema.get("$id"), str):
            base = urljoin(base, schema["$id"])
        for keyword in REF_KEYWORDS:
            if isinstance(schema.get(keyword), str):
                yield keyword, schema[keyword], base
        for value in schema.values():
            yield from _refs(value, base)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value, base)


def check_refs(schema: dict[str, Any]) -> None:
    """At submit: every reference points inside the schema, at something that is there."""
    root = DRAFT202012.create_resource(schema)
    registry = NO_RETRIEVAL.with_resource(root.id() or "", root).crawl()
    for keyword, ref, base in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(
                f"response_schema {keyword} {ref[:200]!r} points outside the schema; only"
                " references inside it are allowed (#/$defs/..., #/properties/...)"
            )
        try:
            registry.resolver(base).lookup(ref)
        except Unresolvable:
            raise ValueError(
                f"response_schema {keyword} {ref[:200]!r} points at nothing in the schema"
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
        raise InvalidOutput(
            f"the output is not JSON (it stops parsing at character {exc.pos})"
        ) from None
    validator = Draft202012Validator(schema, registry=NO_RETRIEVAL)
    try:
        error = best_match(validator.iter_errors(value))
    except Unresolvable:
        raise InvalidOutput(
            "response_schema has a reference that does not resolve inside the schema"
        ) from None
    if error is not None:
        raise InvalidOutput(
            f"the output does not match response_schema at {_path(error)}: {_what(error)}"
        )
    return value


def _path(error: ValidationError) -> str:
    path = error.json_path
    return path if len(path) <= 200 else path[:200] + "..."


_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_KEYWORD_WORDS = {
    "enum": "the value is not one of the allowed values (enum)",
    "const": "the value is not the required constant (const)",
    "pattern": "the string does not match the pattern",
    "format": "the string is not in the required format",
    "additionalProperties": "it has properties the schema does not allow",
    "unevaluatedProperties": "it has properties the schema does not allow",
    "unevaluatedItems": "it has items the schema does not allow",
    "propertyNames": "a property name is not allowed",
    "anyOf": "it matches none of the allowed shapes (anyOf)",
    "oneOf": "it does not match exactly one of the allowed shapes (oneOf)",
    "not": "it matches a shape the schema forbids (not)",
    "uniqueItems": "its items are not unique",
    "contains": "no item matches the schema's contains",
    "dependentRequired": "a property it needs is missing (dependentRequired)",
}
_BOUNDS = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minContains",
        "maxContains",
    }
)


def _what(error: ValidationError) -> str:
    """The failed keyword in our words, with only what the tenant's own schema and
    output hold (a type name, a bound, a missing property)."""
    if error.validator is None:  # a `false` schema
        return "the schema allows no value here"
    keyword = str(error.validator)
    wanted = error.validator_value
    if keyword == "type":
        names = [wanted] if isinstance(wanted, str) else wanted
        if isinstance(names, list) and names and all(n in _JSON_TYPES for n in names):
            return f"expected type {' or '.join(names)}"
        return "the value has the wrong type"
    if keyword == "required" and isinstance(wanted, list) and isinstance(error.instance, dict):
        missing = [str(p) for p in wanted if p not in error.instance]
        if missing:
            return f"missing required property {missing[0][:100]!r}"
    if keyword in _BOUNDS and isinstance(wanted, int | float) and not isinstance(wanted, bool):
        return f"{keyword} is {wanted:g}"
    if keyword in _KEYWORD_WORDS:
        return _KEYWORD_WORDS[keyword]
    return f"it fails the schema's {keyword[:50]!r} keyword"
