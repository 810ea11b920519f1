"""The job request as clients send it, validated once at submit and re-read by the worker.

Every string in it, wherever it sits (keys too), must be one Postgres can store: text
and JSONB refuse U+0000 and lone surrogates (which arrive as JSON `"\\ud800"` escapes
and have no UTF-8 form). The whole body is checked before its fields, so a field added
later is covered too."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aijobs.checks.schemas import Checks
from aijobs.jobs.structured import check_schema
from aijobs.prompts.reference import PromptRef
from aijobs.storable import unstorable

TASKS = ("chat", "embed")
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=500_000)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[NonEmptyStr] | None = None
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not 1 <= len(value) <= 4:
            raise ValueError("stop takes 1 to 4 sequences")
        return value


class JobRequest(BaseModel):
    """POST /v1/jobs body. Unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    # "<provider>/<name>"; checked against the price table (unknown_model) at submit.
    # Required unless a prompt is named (its version gives the model; "" = not given).
    model: str = Field(default="", max_length=200)
    # Addition to SPEC: models to try, in order, when a model's attempts end in a
    # retryable error. Each gets its own max_attempts.
    fallbacks: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=5
    )
    task: Literal["chat", "embed"] = "chat"
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=1000)
    input: NonEmptyStr | list[NonEmptyStr] | None = None
    params: Params = Field(default_factory=Params)
    response_schema: dict[str, Any] | None = None
    webhook_url: str | None = Field(default=None, max_length=2000)
    cache: bool = True
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout_s: float = Field(default=60, gt=0, le=600)
    metadata: dict[str, str] = Field(default_factory=dict)
    # Instead of messages: a prompt version rendered with these variables (subject keeps
    # a split label's pick sticky). Checks: input ones run at submit, output ones in the worker.
    prompt: PromptRef | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    checks: Checks = Field(default_factory=list)
    # SPEC's "Priority and fair share". None: the route's default (interactive for
    # POST /v1/jobs, batch for a batch's line). Not part of the dedup fingerprint: the
    # same request has the same answer whatever its priority.
    priority: Literal["interactive", "batch"] | None = None
    # SPEC's "Streaming": the worker streams the call from the provider and the job's
    # events (GET /v1/jobs/{id}/events) carry its text as `delta` events. Chat jobs
    # only; not part of the dedup fingerprint (the answer is the same, streamed or not).
    stream: bool = False

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Refuse, naming where, any string Postgres would refuse (else: a 500 at insert)."""
        found = unstorable(data)
        if found is not None:
            raise PydanticCustomError(
                "unstorable_character", "{found}, which cannot be stored", {"found": found}
            )
        return data

    @field_validator("fallbacks")
    @classmethod
    def _distinct_fallbacks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("fallbacks must not repeat a model")
        return value

    def models(self) -> list[str]:
        """The model, then its fallbacks, in the order they are tried."""
        return [self.model, *self.fallbacks]

    @field_validator("input")
    @classmethod
    def _input_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not 1 <= len(value) <= 2048:
            raise ValueError("input takes 1 to 2048 strings")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limit(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16:
            raise ValueError("metadata holds at most 16 pairs")
        for key, item in value.items():
            if not 1 <= len(key) <= 64 or len(item) > 512:
                raise ValueError("metadata keys are 1-64 characters, values at most 512")
        return value

    @field_validator("response_schema")
    @classmethod
    def _schema_is_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook_url must be an http(s) URL with a host")
        return value

    @model_validator(mode="after")
    def _task_shape(self) -> JobRequest:
        if self.prompt is not None:
            if self.task != "chat" or self.messages is not None or self.input is not None:
                raise ValueError("a job naming a prompt is a chat job without messages or input")
            return self
        if not self.model:
            raise ValueError("model is required (or name a prompt)")
        if self.subject is not None:
            raise ValueError("subject applies to jobs naming a prompt")
        if self.task == "chat":
            if not self.messages:
                raise ValueError("a chat job needs messages")
            if self.input is not None:
                raise ValueError("input is for embed jobs; chat jobs take messages")
        else:
            if self.input is None:
                raise ValueError("an embed job needs input")
            if self.messages is not None:
                raise ValueError("messages are for chat jobs; embed jobs take input")
            if self.response_schema is not None:
                raise ValueError("response_schema applies to chat jobs only")
            if self.stream:
                raise ValueError("stream applies to chat jobs only")
        return self
