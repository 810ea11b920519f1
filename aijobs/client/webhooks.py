"""Verify a webhook from aijobs (Standard Webhooks: webhook-id, webhook-timestamp and
webhook-signature headers, HMAC-SHA256 with the tenant's whsec_ secret) with the
reference `standardwebhooks` library, and return its parsed payload."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as Refused

from aijobs.client.errors import WebhookVerificationError


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The payload of a genuine, fresh webhook. Pass the body exactly as received (bytes
    are best: any re-encoding breaks the signature), its headers (any case) and the
    tenant's `whsec_...` secret. Raises WebhookVerificationError on a wrong or missing
    signature, a timestamp more than five minutes from now, or a malformed header."""
    try:
        payload = Webhook(secret).verify(body, dict(headers))
    except Refused as exc:
        raise WebhookVerificationError(f"webhook refused: {exc}") from exc
    except (ValueError, binascii.Error) as exc:  # a malformed signature header or body
        raise WebhookVerificationError(f"webhook refused: malformed ({exc})") from exc
    if not isinstance(payload, dict):
        raise WebhookVerificationError("webhook refused: the payload is not a JSON object")
    return payload
