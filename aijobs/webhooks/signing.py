"""Standard Webhooks signing: the webhook-id, webhook-timestamp and webhook-signature
headers, keyed by a tenant's whsec_ secret(s)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


def message_id(job_id: uuid.UUID, seq: int) -> str:
    """Stable across the retries (and redeliveries) of one delivery."""
    return f"msg_{job_id.hex}_{seq}"


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """One v1 signature per secret (the new and, during a rotation, the previous one)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
