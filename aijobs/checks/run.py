"""Running checks: pure functions over an output (or a request's messages) that say which
checks passed, in our words. A detail never quotes the output; it names at most a
bounded piece of the tenant's own check (a pattern, a value), so it stays short.

Patterns run on RE2, a linear-time engine: no pattern and no output can stall a worker.
Judge checks need a model call; they are run by the worker (worker/judge.py), not here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

from aijobs.checks.schemas import (
    Check,
    ContainsCheck,
    JudgeCheck,
    MaxCharsCheck,
    MinCharsCheck,
    NotContainsCheck,
    NotRegexCheck,
    OneOfCheck,
    RegexCheck,
)
from aijobs.errors import CheckFailed

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
SHOWN_CHARS = 100  # of a pattern or value, in a detail

# The strictest failing check decides what happens to the job.
_SEVERITY = {"retry": 0, "fallback": 1, "fail": 2}


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _RE2_OPTIONS)


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "...")


@dataclass(frozen=True)
class Result:
    """One check's outcome on one output."""

    type: str
    passed: bool
    detail: str
    on_fail: str = "retry"

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "passed": self.passed, "detail": self.detail}


def _contains(check: ContainsCheck | NotContainsCheck, text: str) -> bool:
    if check.ignore_case:
        return check.value.casefold() in text.casefold()
    return check.value in text


def _run(check: Check, text: str, what: str) -> tuple[bool, str]:
    """(passed, detail) of one non-judge check on `text` (the output or a message)."""
    if isinstance(check, RegexCheck | NotRegexCheck):
        found = _compiled(check.pattern).search(text) is not None
        shown = _shown(check.pattern)
        if isinstance(check, RegexCheck):
            return found, (f"{what} matches {shown}" if found else f"{what} does not match {shown}")
        return not found, (f"{what} matches {shown}" if found else f"{what} does not match {shown}")
    if isinstance(check, ContainsCheck | NotContainsCheck):
        found = _contains(check, text)
        case = " (ignoring case)" if check.ignore_case else ""
        shown = _shown(check.value)
        detail = f"{what} contains {shown}{case}" if found else f"{what} lacks {shown}{case}"
        return (found if isinstance(check, ContainsCheck) else not found), detail
    if isinstance(check, MinCharsCheck):
        n = len(text)
        return n >= check.value, f"{what} has {n} characters; at least {check.value} required"
    if isinstance(check, MaxCharsCheck):
        n = len(text)
        return n <= check.value, f"{what} has {n} characters; at most {check.value} allowed"
    if isinstance(check, OneOfCheck):
        passed = text.strip() in check.values
        n = len(check.values)
        return passed, (
            f"{what} (trimmed) is one of the {n} allowed values"
            if passed
            else f"{what} (trimmed) is not one of the {n} allowed values"
        )
    raise TypeError(f"{check.type} checks are not run here")


def output_checks(checks: Iterable[Check]) -> list[Check]:
    return [check for check in checks if check.on == "output"]


def run_output(checks: Sequence[Check], output: str) -> list[Result]:
    """The output checks other than judges, in the order given."""
    results = []
    for check in output_checks(checks):
        if isinstance(check, JudgeCheck):
            continue
        passed, detail = _run(check, output, "the output")
        results.append(Result(check.type, passed, detail, check.on_fail))
    return results


def action(results: Sequence[Result]) -> str | None:
    """What the failing checks ask for (the strictest of their on_fail), or None when
    all passed."""
    failing = [r.on_fail for r in results if not r.passed]
    return max(failing, key=_SEVERITY.__getitem__) if failing else None


def summary(results: Sequence[Result]) -> str:
    """The failed checks in one line (the job's error message)."""
    failed = [f"{r.type}: {r.detail}" for r in results if not r.passed]
    return "; ".join(failed)


def refuse_input(checks: Sequence[Check], texts: Sequence[str]) -> None:
    """At submit: every input check on every message's content; the first failure is
    CheckFailed (422), naming the check and the message."""
    for index, check in enumerate(checks):
        if check.on != "input":
            continue
        for position, text in enumerate(texts):
            passed, detail = _run(check, text, f"message {position}")
            if not passed:
                raise CheckFailed(
                    f"input check {index} ({check.type}) failed: {detail}",
                    extra={"check": {"index": index, "type": check.type, "detail": detail}},
                )


RETRY_INSTRUCTION = (
    "Your previous answer failed these checks:\n{failed}\n"
    "Answer the original request again, fixing that. Reply with the answer only."
)


def retry_messages(output: str, results: Sequence[Result]) -> list[dict[str, str]]:
    """What the next attempt of the same model is sent after the request's messages:
    its failed output and what failed."""
    failed = "\n".join(f"- {r.type}: {r.detail}" for r in results if not r.passed)
    return [
        {"role": "assistant", "content": output},
        {"role": "user", "content": RETRY_INSTRUCTION.format(failed=failed)},
    ]
