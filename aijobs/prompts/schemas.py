"""Prompt requests and responses: a new version's body, a label's target, and the
version object clients see."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from aijobs.checks.schemas import Checks
from aijobs.jobs.schemas import Message, Params
from aijobs.jobs.structured import check_schema
from aijobs.storable import unstorable

MAX_MESSAGES = 100
# The canonical JSON of one version's content: enough for long few-shot prompts, and
# with the per-prompt version cap and the per-tenant total (settings), bounded storage.
MAX_VERSION_BYTES = 256 * 1024
MAX_SPLIT = 10

ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class VersionCreate(BaseModel):
    """POST /v1/prompts/{name}/versions: the content of the next version."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: ModelName
    params: Params = Field(default_factory=Params)
    response_schema: dict[str, Any] | None = None
    fallbacks: list[ModelName] = Field(default_factory=list, max_length=5)
    checks: Checks = Field(default_factory=list)
    note: str | None = Field(default=None, max_length=2_000)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # Refused, not repaired: Postgres cannot store these, and the tenant should know.
        found = unstorable(data)
        if found is not None:
            raise ValueError(f"{found}, which cannot be stored")
        return data

    @field_validator("fallbacks")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("fallbacks must not repeat a model")
        return value

    @field_validator("response_schema")
    @classmethod
    def _schema_is_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value

    def content(self) -> dict[str, Any]:
        """What a version stores, every field present, in one canonical shape (the
        hash of it says whether a push changed anything)."""
        return {
            "messages": [message.model_dump(mode="json") for message in self.messages],
            "model": self.model,
            "params": self.params.model_dump(mode="json", exclude_none=True),
            "response_schema": self.response_schema,
            "fallbacks": list(self.fallbacks),
            "checks": [check.model_dump(mode="json") for check in self.checks],
            "note": self.note,
        }


class LabelTarget(BaseModel):
    """PUT /v1/prompts/{name}/labels/{label}: one version, or a weighted split."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)
    split: dict[str, int] | None = Field(default=None, min_length=1, max_length=MAX_SPLIT)

    @model_validator(mode="after")
    def _one_target(self) -> LabelTarget:
        if (self.version is None) == (self.split is None):
            raise ValueError('send {"version": n} or {"split": {"n": weight, ...}}')
        if self.split is not None:
            for key, weight in self.split.items():
                if not key.isdecimal() or int(key) < 1 or key != str(int(key)):
                    raise ValueError(f"split keys are version numbers; got {key!r}")
                if not 0 <= weight <= 10_000:
                    raise ValueError("split weights are integers from 0 to 10000")
            if sum(self.split.values()) <= 0:
                raise ValueError("a split needs a positive total weight")
        return self

    def versions(self) -> list[int]:
        if self.split is not None:
            return sorted(int(key) for key in self.split)
        assert self.version is not None
        return [self.version]

    def stored_split(self) -> dict[str, int] | None:
        """The split in version order, so equal splits store (and pick) alike."""
        if self.split is None:
            return None
        return {str(v): self.split[str(v)] for v in sorted(int(key) for key in self.split)}
