"""What Postgres can store: its text and JSONB refuse U+0000 and strings that are not
valid UTF-8 (lone surrogates). Values from outside (a model's answer, a provider's
error text) are made storable before they are written: such characters become U+FFFD,
the replacement character, and everything else is kept as it is."""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def storable_text(value: str) -> str:
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def storable(value: Any) -> Any:
    """The same JSON value with every string (keys too) made storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def unstorable_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value a string (or key) holds U+0000 or a lone surrogate, or None.

    For input that must be refused (422) rather than repaired: a tenant's own text."""
    if isinstance(value, str):
        return path or "value" if storable_text(value) != value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if storable_text(str(key)) != key:
                return where
            found = unstorable_path(item, where)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
