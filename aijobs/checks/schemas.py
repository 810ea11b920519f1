"""The check types of SPEC ("Checks"), as a request or a prompt version carries them.

Validated at submit and at version creation (patterns must compile under RE2, the
linear-time engine; input checks only where they make sense); running them is the
job of the checks runner, not of these models."""

from __future__ import annotations

from typing import Annotated, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aijobs.storable import unstorable

MAX_CHECKS = 20
MAX_PATTERN_CHARS = 2_000
MAX_VALUE_CHARS = 10_000

OnFail = Literal["retry", "fallback", "fail"]
On = Literal["output", "input"]
# The types that may also run on the request's messages at submit.
INPUT_TYPES = frozenset({"regex", "not_regex", "max_chars"})

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_fail: OnFail = "retry"
    on: On = "output"

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: object) -> object:
        found = unstorable(data)
        if found is not None:
            raise ValueError(f"{found}, which cannot be stored")
        return data

    @model_validator(mode="after")
    def _input_allowed(self) -> _Check:
        kind = getattr(self, "type", "")
        if self.on == "input" and kind not in INPUT_TYPES:
            raise ValueError(
                f'a {kind} check runs on the output only ("on": "input" is for'
                " regex, not_regex and max_chars)"
            )
        return self


class _PatternCheck(_Check):
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS)

    @field_validator("pattern")
    @classmethod
    def _linear_time(cls, value: str) -> str:
        try:
            re2.compile(value, _RE2_OPTIONS)
        except re2.error as exc:
            raise ValueError(
                f"pattern {value[:100]!r} is not supported by the linear-time regex engine"
                f" (RE2: no backreferences or lookaround): {exc}"
            ) from None
        return value


class RegexCheck(_PatternCheck):
    type: Literal["regex"]


class NotRegexCheck(_PatternCheck):
    type: Literal["not_regex"]


class _ValueCheck(_Check):
    value: str = Field(min_length=1, max_length=MAX_VALUE_CHARS)
    ignore_case: bool = False


class ContainsCheck(_ValueCheck):
    type: Literal["contains"]


class NotContainsCheck(_ValueCheck):
    type: Literal["not_contains"]


class MinCharsCheck(_Check):
    type: Literal["min_chars"]
    value: int = Field(ge=0, le=10_000_000)


class MaxCharsCheck(_Check):
    type: Literal["max_chars"]
    value: int = Field(ge=0, le=10_000_000)


class OneOfCheck(_Check):
    type: Literal["one_of"]
    values: list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)]] = Field(
        min_length=1, max_length=100
    )


class JudgeCheck(_Check):
    type: Literal["judge"]
    # Priced like any model: checked against the price table where the check is accepted.
    model: str = Field(min_length=1, max_length=200)
    rubric: str = Field(min_length=1, max_length=MAX_VALUE_CHARS)
    threshold: float = Field(default=0.5, ge=0, le=1)


Check = Annotated[
    RegexCheck
    | NotRegexCheck
    | ContainsCheck
    | NotContainsCheck
    | MinCharsCheck
    | MaxCharsCheck
    | OneOfCheck
    | JudgeCheck,
    Field(discriminator="type"),
]
Checks = Annotated[list[Check], Field(max_length=MAX_CHECKS)]


def judge_models(checks: list[Check]) -> list[str]:
    """The models the judge checks call (each must have a price)."""
    return [check.model for check in checks if isinstance(check, JudgeCheck)]
