"""Placeholders: `{{name}}` (spaces inside the braces allowed: `{{ name }}`) replaced
verbatim by a string value, in one pass. No logic, no escaping, no attribute or file
access: a value is inserted as is and never scanned again, and anything else between
braces (`{{ a.b }}`, `{{#if}}`) is plain text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from aijobs.errors import InvalidRequest

# Bounded name length: a run of braces or letters costs a fixed amount of backtracking.
PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]{0,63})[ \t]*\}\}")
# The rendered messages together: a template repeating a large value is refused
# before it is built, so rendering stays bounded whatever the tenant sends.
MAX_RENDERED_CHARS = 1_000_000


def variables(texts: Iterable[str]) -> list[str]:
    """The placeholder names, in order of first appearance."""
    found: dict[str, None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            found.setdefault(match.group(1), None)
    return list(found)


def check_variables(expected: Iterable[str], given: Mapping[str, str]) -> None:
    """Every placeholder needs a value, and every value a placeholder (a typo in a
    variable name would otherwise pass silently)."""
    wanted = list(expected)
    missing = [name for name in wanted if name not in given]
    if missing:
        raise InvalidRequest(
            f"missing prompt variable(s): {', '.join(missing)}", extra={"variables": missing}
        )
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        raise InvalidRequest(
            f"unknown prompt variable(s), not in the template: {', '.join(unknown)}",
            extra={"variables": unknown},
        )


def render(texts: list[str], values: Mapping[str, str]) -> list[str]:
    """Each text with its placeholders replaced; the values must cover them."""
    size = 0
    for text in texts:
        size += len(text)
        for match in PLACEHOLDER.finditer(text):
            size += len(values[match.group(1)]) - len(match.group(0))
    if size > MAX_RENDERED_CHARS:
        raise InvalidRequest(
            f"the rendered prompt would hold {size} characters; the limit is {MAX_RENDERED_CHARS}"
        )
    return [PLACEHOLDER.sub(lambda match: values[match.group(1)], text) for text in texts]
