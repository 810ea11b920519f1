"""A judge check: the request a second model is sent (the rubric and the output, asking
for JSON {"score", "reason"}), its reservation (the same function the call is sent
by), and reading its answer into a check result.

A judge answer that does not parse, or a judge call that fails, is a failed check with
a detail saying so (not a retry of the judge alone): its on_fail then decides, like any
failed check's, so a flaky judge costs at most the attempts the job allows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aijobs.billing.budget import max_call_cost
from aijobs.checks.run import Result
from aijobs.checks.schemas import JudgeCheck
from aijobs.jobs.schemas import JobRequest

# The judge's answer is short: a score and a sentence or two.
JUDGE_MAX_TOKENS = 300
JUDGE_SYSTEM = (
    "You are a judge. Score the output below against the rubric, from 0 (fails it"
    ' completely) to 1 (meets it fully). Answer with JSON only: {"score": <number from 0'
    ' to 1>, "reason": "<one or two sentences>"}.'
)
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["score", "reason"],
}
REASON_CHARS = 200  # of the judge's reason, in the detail


def judge_checks(request: JobRequest) -> list[JudgeCheck]:
    return [c for c in request.checks if isinstance(c, JudgeCheck) and c.on == "output"]


def judge_request(check: JudgeCheck, output: str, timeout_s: float) -> JobRequest:
    """What the judge model is sent: a structured call, capped output."""
    return JobRequest.model_validate(
        {
            "model": check.model,
            "messages": [
                {"role": "system", "content": JUDGE_SYSTEM},
                {
                    "role": "user",
                    "content": f"Rubric:\n{check.rubric}\n\nOutput to score:\n{output}",
                },
            ],
            "params": {"max_tokens": JUDGE_MAX_TOKENS, "temperature": 0},
            "response_schema": JUDGE_SCHEMA,
            "cache": False,
            "max_attempts": 1,
            "timeout_s": timeout_s,
        }
    )


def reservation(request: JobRequest) -> Decimal:
    """The most the judge call may cost: reserved before it is made."""
    return max_call_cost(request, request.model)


def result(check: JudgeCheck, parsed: Any) -> Result:
    """The judge's parsed answer (validated against JUDGE_SCHEMA) as a check result."""
    score = float(parsed["score"])
    reason = " ".join(str(parsed["reason"]).split())[:REASON_CHARS]
    passed = score >= check.threshold
    verb = "at least" if passed else "below"
    detail = f"the judge scored {score:g}, {verb} the threshold {check.threshold:g}"
    return Result("judge", passed, f"{detail}: {reason}" if reason else detail, check.on_fail)


def failed(check: JudgeCheck, why: str) -> Result:
    """The judge gave no usable score (its call failed, or its answer did not parse)."""
    return Result("judge", False, f"the judge gave no score: {why}", check.on_fail)
