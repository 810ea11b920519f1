"""Which version a label sends a job to: its one version, or a pick from its split by
weight, sticky per subject (the same subject lands on the same version for as long as
the split is unchanged) and random without a subject."""

from __future__ import annotations

import hashlib
import secrets
import uuid


def bucket(tenant_id: uuid.UUID, name: str, label: str, subject: str, total: int) -> int:
    """A stable point in [0, total) for this subject under this label: sha256, so it is
    the same in every process and release (Python's hash() is salted per process)."""
    key = "\x1f".join((str(tenant_id), name, label, subject)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % total


def pick(
    split: dict[str, int],
    *,
    tenant_id: uuid.UUID,
    name: str,
    label: str,
    subject: str | None,
) -> int:
    """The version a split sends this request to. Versions are walked in number order
    with their cumulative weights, so a point maps to one version deterministically."""
    ordered = sorted((int(version), weight) for version, weight in split.items())
    total = sum(weight for _, weight in ordered)
    if subject is None:
        point = secrets.randbelow(total)
    else:
        point = bucket(tenant_id, name, label, subject, total)
    for version, weight in ordered:
        if point < weight:
            return version
        point -= weight
    raise AssertionError("a point below the total weight falls in some version")
