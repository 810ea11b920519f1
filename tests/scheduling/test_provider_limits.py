"""AIJOBS_PROVIDER_LIMITS: parsed into rules, and refused with a clear message."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import ValidationError

from aijobs.scheduling.provider_limits import Limit, parse, rules_for
from aijobs.settings import Settings
from tests.stack import AIJOBS


def test_rules_by_model_and_provider() -> None:
    rules = parse("openai/gpt-4o-mini=rpm:500,tpm:200000; anthropic/*=rpm:50;")
    assert rules == {
        "openai/gpt-4o-mini": Limit("openai/gpt-4o-mini", rpm=500, tpm=200000),
        "anthropic/*": Limit("anthropic/*", rpm=50),
    }
    assert [r.rule for r in rules_for(rules, "anthropic/claude-haiku-4-5")] == ["anthropic/*"]
    assert [r.rule for r in rules_for(rules, "openai/gpt-4o-mini")] == ["openai/gpt-4o-mini"]
    assert rules_for(rules, "openai/gpt-4o") == []
    both = parse("openai/gpt-4o=tpm:10;openai/*=rpm:5")
    assert [r.rule for r in rules_for(both, "openai/gpt-4o")] == ["openai/gpt-4o", "openai/*"]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("openai/gpt-4o-mini=rpm:0", "rpm must be a whole number >= 1"),
        ("openai/gpt-4o-mini=rpm:-5", "rpm must be a whole number >= 1"),
        ("openai/gpt-4o-mini=rpm:1.5", "rpm must be a whole number >= 1"),
        ("openai/gpt-4o-mini=rps:5", "is not rpm:N or tpm:N"),
        ("openai/gpt-4o-mini=rpm:5,rpm:6", "is not rpm:N or tpm:N"),
        ("gpt-4o-mini=rpm:5", "is not MODEL=rpm:N,tpm:N"),
        ("openai/gpt-4o-mini rpm:5", "is not MODEL=rpm:N,tpm:N"),
        ("openai/*=rpm:5;openai/*=tpm:5", "given twice"),
    ],
)
def test_invalid_values_are_refused(value: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse(value)
    with pytest.raises(ValidationError, match=said):
        Settings(provider_limits=value)


def test_a_worker_with_an_invalid_value_fails_at_start_up() -> None:
    env = {"AIJOBS_PROVIDER_LIMITS": "openai/gpt-4o-mini=rpm:lots", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([*AIJOBS, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "AIJOBS_PROVIDER_LIMITS" in done.stderr + done.stdout
    assert "rpm must be a whole number" in done.stderr + done.stdout
