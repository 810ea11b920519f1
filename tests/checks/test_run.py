"""The checks runner's pure functions: results, the strictest on_fail, the retry
messages, input refusals; and the fingerprint covers checks."""

from __future__ import annotations

import uuid

import pytest
from pydantic import TypeAdapter

from aijobs.checks import run
from aijobs.checks.schemas import Check
from aijobs.errors import CheckFailed
from aijobs.jobs.fingerprint import fingerprint
from aijobs.jobs.schemas import JobRequest

CHECKS: TypeAdapter[list[Check]] = TypeAdapter(list[Check])


def test_results_and_the_strictest_on_fail() -> None:
    checks = CHECKS.validate_python(
        [
            {"type": "regex", "pattern": "^a"},
            {"type": "max_chars", "value": 2, "on_fail": "fallback"},
            {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "good"},
            {"type": "regex", "pattern": "x", "on": "input"},
        ]
    )
    results = run.run_output(checks, "abc")
    assert [r.as_json() for r in results] == [
        {"type": "regex", "passed": True, "detail": "the output matches '^a'"},
        {
            "type": "max_chars",
            "passed": False,
            "detail": "the output has 3 characters; at most 2 allowed",
        },
    ]
    assert run.action(results) == "fallback"
    assert run.action(results[:1]) is None


def test_an_exponential_pattern_stays_linear() -> None:
    # Backtracking engines take exponential time on this; RE2 answers at once.
    [check] = CHECKS.validate_python([{"type": "regex", "pattern": "^(a+)+$"}])
    [result] = run.run_output([check], "a" * 100_000 + "!")
    assert not result.passed


def test_a_long_value_is_shown_cut() -> None:
    [check] = CHECKS.validate_python([{"type": "contains", "value": "v" * 500}])
    [result] = run.run_output([check], "nothing")
    assert len(result.detail) < 150 and result.detail.endswith("...'")


def test_retry_messages_carry_the_output_and_the_failures() -> None:
    [check] = CHECKS.validate_python([{"type": "one_of", "values": ["yes"]}])
    results = run.run_output([check], "maybe")
    assistant, user = run.retry_messages("maybe", results)
    assert assistant == {"role": "assistant", "content": "maybe"}
    assert user["role"] == "user"
    assert "- one_of: the output (trimmed) is not one of the 1 allowed values" in user["content"]


def test_input_checks_name_the_check_and_the_message() -> None:
    checks = CHECKS.validate_python(
        [{"type": "max_chars", "value": 5}, {"type": "max_chars", "value": 5, "on": "input"}]
    )
    run.refuse_input(checks, ["short", "tiny"])
    with pytest.raises(CheckFailed) as refused:
        run.refuse_input(checks, ["short", "too long"])
    assert refused.value.extra["check"] == {
        "index": 1,
        "type": "max_chars",
        "detail": "message 1 has 8 characters; at most 5 allowed",
    }


def test_the_fingerprint_covers_checks() -> None:
    tenant = uuid.uuid4()
    base = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    plain = fingerprint(tenant, JobRequest.model_validate(base))
    checked = JobRequest.model_validate(base | {"checks": [{"type": "min_chars", "value": 1}]})
    other = JobRequest.model_validate(base | {"checks": [{"type": "min_chars", "value": 2}]})
    assert len({plain, fingerprint(tenant, checked), fingerprint(tenant, other)}) == 3
