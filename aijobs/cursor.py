"""Page cursors: the `next_cursor` a list answers, and reads back. Opaque to clients
(base64 of text); one that does not decode is 422 `invalid_request`."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from aijobs.errors import InvalidRequest


def _encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


def keyset(created_at: datetime, key: uuid.UUID | str) -> str:
    """After the row (created_at, id), in a list ordered by both."""
    return _encode(f"{created_at.isoformat()}|{key}")


def read_keyset(cursor: str, name: str = "cursor") -> tuple[datetime, uuid.UUID]:
    try:
        created, _, key = _decode(cursor).partition("|")
        return datetime.fromisoformat(created), uuid.UUID(key)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"{name} is not one this API returned") from exc


def position(prefix: str, at: int) -> str:
    """From position `at` of a list ordered by position (`prefix` tells lists apart)."""
    return _encode(f"{prefix}{at}")


def read_position(cursor: str, prefix: str, name: str = "cursor", most: int = 2**62) -> int:
    try:
        raw = _decode(cursor)
        if not raw.startswith(prefix):
            raise ValueError(raw)
        at = int(raw[len(prefix) :])
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"{name} is not one this API returned") from exc
    if not 0 <= at <= most:
        raise InvalidRequest(f"{name} is not one this API returned")
    return at
