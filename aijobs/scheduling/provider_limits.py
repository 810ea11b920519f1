"""AIJOBS_PROVIDER_LIMITS: the rpm and tpm caps of a model or of a whole provider.

`openai/gpt-4o-mini=rpm:500,tpm:200000;anthropic/*=rpm:50` caps calls to
gpt-4o-mini at 500 a minute and 200,000 tokens a minute, and all of Anthropic's
models together at 50 calls a minute. A call counts against every rule that matches
its model: its own and its provider's wildcard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MODEL = re.compile(r"[a-z0-9_.\-]+/(\*|[A-Za-z0-9_.:\-]+)")
_KINDS = ("rpm", "tpm")


@dataclass(frozen=True)
class Limit:
    rule: str  # the model or "provider/*" it was written for
    rpm: int | None = None
    tpm: int | None = None


def parse(value: str) -> dict[str, Limit]:
    """The rules by model (or "provider/*"); ValueError saying what is wrong."""
    rules: dict[str, Limit] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        model, sep, caps = item.partition("=")
        model = model.strip()
        if not sep or not _MODEL.fullmatch(model):
            raise ValueError(
                f"AIJOBS_PROVIDER_LIMITS: {item!r} is not MODEL=rpm:N,tpm:N "
                "(MODEL is provider/name or provider/*)"
            )
        if model in rules:
            raise ValueError(f"AIJOBS_PROVIDER_LIMITS: {model} is given twice")
        found: dict[str, int] = {}
        for cap in caps.split(","):
            kind, _, number = cap.strip().partition(":")
            if kind not in _KINDS or kind in found:
                raise ValueError(
                    f"AIJOBS_PROVIDER_LIMITS: {model}: {cap.strip()!r} is not rpm:N or tpm:N "
                    "(each at most once)"
                )
            if not number.strip().isdigit() or int(number) < 1:
                raise ValueError(
                    f"AIJOBS_PROVIDER_LIMITS: {model}: {kind} must be a whole number >= 1, "
                    f"not {number.strip()!r}"
                )
            found[kind] = int(number)
        rules[model] = Limit(model, found.get("rpm"), found.get("tpm"))
    return rules


def rules_for(rules: dict[str, Limit], model: str) -> list[Limit]:
    """The rules a call to `model` counts against: the model's own, its provider's."""
    provider = model.partition("/")[0]
    return [rule for key in (model, f"{provider}/*") if (rule := rules.get(key)) is not None]
