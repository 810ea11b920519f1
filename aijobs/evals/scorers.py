"""Scoring one output: each scorer gives a score in 0..1 and a verdict.

Deterministic scorers run here, at once: the check types through the checks runner
(aijobs/checks/run.py: RE2 patterns, linear time), `equals_expected` (the trimmed
texts are equal) and `json_matches_expected` (the output parses as JSON equal to the
expected value; object key order does not matter). A `judge` scorer's call is an
ordinary job of the tenant (its request below: the judge check's own prompt and
schema, aijobs/checks/judge.py, with the cache on), read back here once it has ended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aijobs.checks import judge
from aijobs.checks import run as checks
from aijobs.checks.schemas import JudgeCheck
from aijobs.jobs.schemas import JobRequest

from .schemas import EXPECTED_TYPES, scorer_key

JUDGE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Score:
    score: float
    passed: bool


def _expected_text(expected: Any) -> str:
    """An expected string as it is; any other JSON value as its compact JSON text."""
    if isinstance(expected, str):
        return expected
    return json.dumps(expected, separators=(",", ":"), ensure_ascii=False)


def equals_expected(output: str, expected: Any) -> Score:
    passed = output.strip() == _expected_text(expected).strip()
    return Score(1.0 if passed else 0.0, passed)


def _parse(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: objects by keys (any order), arrays in order, and true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def json_matches_expected(output: str, expected: Any) -> Score:
    """The output parsed as JSON equals the expected value (an expected string that is
    itself JSON text, as a job's result text is, is compared as the value it holds)."""
    ok, value = _parse(output.strip())
    if isinstance(expected, str):
        parsed, held = _parse(expected.strip())
        expected = held if parsed else expected
    try:
        passed = ok and same_json(value, expected)
    except RecursionError:
        passed = False
    return Score(1.0 if passed else 0.0, passed)


def needs_expected(scorers: list[Any]) -> bool:
    return any(scorer.type in EXPECTED_TYPES for scorer in scorers)


def judges(scorers: list[Any]) -> list[tuple[str, JudgeCheck]]:
    """The judge scorers, with their keys, in order."""
    return [
        (scorer_key(i, scorer), scorer)
        for i, scorer in enumerate(scorers)
        if isinstance(scorer, JudgeCheck)
    ]


def score_local(scorers: list[Any], output: str, expected: Any) -> dict[str, Score]:
    """Every scorer but the judges, on an output."""
    scores: dict[str, Score] = {}
    for index, scorer in enumerate(scorers):
        key = scorer_key(index, scorer)
        if scorer.type == "equals_expected":
            scores[key] = equals_expected(output, expected)
        elif scorer.type == "json_matches_expected":
            scores[key] = json_matches_expected(output, expected)
        elif not isinstance(scorer, JudgeCheck):
            [result] = checks.run_output([scorer], output)
            scores[key] = Score(1.0 if result.passed else 0.0, result.passed)
    return scores


def all_failed(scorers: list[Any]) -> dict[str, Score]:
    """A job that did not succeed: every scorer scores 0."""
    return {scorer_key(i, scorer): Score(0.0, False) for i, scorer in enumerate(scorers)}


def judge_request(check: JudgeCheck, output: str) -> JobRequest | None:
    """The judge's call as a job: the judge check's own request (its system prompt, the
    rubric, the output, JSON {score, reason} asked for), cached like any job so a re-run
    of the eval is answered from the cache, and run at batch priority. None when the
    output cannot be sent (longer than a message may be)."""
    try:
        request = judge.judge_request(check, output, JUDGE_TIMEOUT_S)
    except ValueError:
        return None
    return request.model_copy(update={"cache": True, "max_attempts": 3, "priority": "batch"})


def judge_score(check: JudgeCheck, status: str, result: Any) -> Score:
    """A judge job that ended: its parsed {score, reason} read as the judge check reads
    it; a job that failed (or answered no usable score) scores 0."""
    parsed = result.get("parsed") if isinstance(result, dict) else None
    if status != "succeeded" or not isinstance(parsed, dict):
        return Score(0.0, False)
    try:
        outcome = judge.result(check, parsed)
        return Score(float(parsed["score"]), outcome.passed)
    except (KeyError, TypeError, ValueError):
        return Score(0.0, False)
