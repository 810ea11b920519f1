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


# Deeper input is refused while it is walked (pydantic's own limits are looser).
MAX_DEPTH = 64


def unstorable(value: Any, path: tuple[str | int, ...] = ()) -> str | None:
    """Where in a tenant's JSON value a string (or a key) holds what Postgres refuses,
    and what, for a 422 ("messages[0].content contains U+0000 (NUL)"); None when all of
    it can be stored. Raises ValueError for a value nested deeper than MAX_DEPTH."""
    if len(path) > MAX_DEPTH:
        raise ValueError(f"the request nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        what = _refused(value)
        return f"{_where(path)} contains {what}" if what else None
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            what = _refused(key_text)
            if what:  # the key itself cannot be shown: it is the refused text
                return f"a key in {_where(path)} contains {what}"
            found = unstorable(item, (*path, key_text[:64]))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable(item, (*path, index))
            if found:
                return found
    return None


def _refused(text: str) -> str | None:
    if "\x00" in text:
        return "U+0000 (NUL)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (U+D800..U+DFFF)"
    return None


def _where(path: tuple[str | int, ...]) -> str:
    """`messages[0].content` from ("messages", 0, "content")."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "request"
