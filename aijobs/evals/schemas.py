"""What the dataset and eval routes accept: a dataset, an item (its variables or
messages, or a job to make it from), an eval (a dataset, 1..5 candidates, scorers, a
tier). Unknown fields are refused everywhere; every string must be storable."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from aijobs.batches.schemas import MAX_JOBS, describe
from aijobs.checks.schemas import (
    ContainsCheck,
    JudgeCheck,
    MaxCharsCheck,
    MinCharsCheck,
    NotContainsCheck,
    NotRegexCheck,
    OneOfCheck,
    RegexCheck,
)
from aijobs.errors import InvalidRequest
from aijobs.jobs.schemas import Message
from aijobs.prompts.reference import (
    MAX_VARIABLES,
    LabelName,
    PromptName,
    VariableName,
)
from aijobs.storable import unstorable

MAX_CANDIDATES = 5
MAX_SCORERS = 10
# Items x candidates of one eval: as many jobs as one batch may hold.
MAX_EVAL_JOBS = MAX_JOBS
MAX_ITEMS_PER_DATASET = MAX_JOBS
MAX_DATASETS_PER_TENANT = 1000
MAX_ITEM_BYTES = 256 * 1024  # an item's canonical JSON (variables or messages, expected)
MAX_ITEM_MESSAGES = 100
MAX_DESCRIPTION_CHARS = 2000


def _refuse_unstorable(data: Any) -> Any:
    found = unstorable(data)
    if found is not None:
        raise ValueError(f"{found}, which cannot be stored")
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return _refuse_unstorable(data)


class DatasetCreate(_Strict):
    name: PromptName  # the prompts' alphabet: it travels in URL paths
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 16:
        raise ValueError("metadata holds at most 16 pairs")
    for key, item in value.items():
        if not 1 <= len(key) <= 64 or len(item) > 512:
            raise ValueError("metadata keys are 1-64 characters, values at most 512")
    return value


def canonical_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class ItemCreate(_Strict):
    """One item: the variables of a prompt (for prompt candidates) or the messages
    themselves, and the answer it should get (any JSON value; a string most often)."""

    variables: dict[VariableName, str] | None = Field(default=None, max_length=MAX_VARIABLES)
    messages: list[Message] | None = Field(default=None, min_length=1, max_length=MAX_ITEM_MESSAGES)
    expected: Any = None
    metadata: dict[str, str] = Field(default_factory=dict)

    _check_metadata = field_validator("metadata")(_metadata)

    @model_validator(mode="after")
    def _one_input(self) -> ItemCreate:
        if (self.variables is None) == (self.messages is None):
            raise ValueError('an item has "variables" or "messages" (one of them)')
        size = canonical_size(self.model_dump(mode="json"))
        if size > MAX_ITEM_BYTES:
            raise ValueError(f"an item holds at most {MAX_ITEM_BYTES} bytes of JSON; this: {size}")
        return self


class ItemFromJob(_Strict):
    """An item made from a job of the tenant: its variables (a prompt job) or messages,
    and `expected` (default: the job's own result text)."""

    from_job: str = Field(min_length=1, max_length=64)
    expected: Any = None

    @model_validator(mode="after")
    def _expected_size(self) -> ItemFromJob:
        if canonical_size(self.expected) > MAX_ITEM_BYTES:
            raise ValueError(f"expected holds at most {MAX_ITEM_BYTES} bytes of JSON")
        return self


def parse_item(body: Any) -> ItemCreate | ItemFromJob:
    """The body of POST /v1/datasets/{name}/items, validated (InvalidRequest naming the
    first problems)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    model: type[ItemCreate] | type[ItemFromJob] = ItemFromJob if "from_job" in body else ItemCreate
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()[:20]
        ]
        raise InvalidRequest(describe(exc), extra={"errors": errors}) from None


class CandidatePrompt(_Strict):
    name: PromptName
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    label: LabelName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CandidatePrompt:
        if self.version is not None and self.label is not None:
            raise ValueError("name a prompt version or a label, not both")
        return self


class Candidate(_Strict):
    prompt: CandidatePrompt
    # Overrides the version's model (its jobs, and the messages items').
    model: str | None = Field(default=None, min_length=1, max_length=200)


class EqualsExpected(_Strict):
    type: Literal["equals_expected"]


class JsonMatchesExpected(_Strict):
    type: Literal["json_matches_expected"]


Scorer = Annotated[
    RegexCheck
    | NotRegexCheck
    | ContainsCheck
    | NotContainsCheck
    | MinCharsCheck
    | MaxCharsCheck
    | OneOfCheck
    | JudgeCheck
    | EqualsExpected
    | JsonMatchesExpected,
    Field(discriminator="type"),
]
SCORERS: TypeAdapter[list[Scorer]] = TypeAdapter(list[Scorer])
EXPECTED_TYPES = frozenset({"equals_expected", "json_matches_expected"})


class EvalCreate(_Strict):
    dataset: PromptName
    candidates: list[Candidate] = Field(min_length=1, max_length=MAX_CANDIDATES)
    scorers: list[Scorer] = Field(default_factory=list, max_length=MAX_SCORERS)
    tier: Literal["standard", "batch"] = "standard"

    @field_validator("scorers")
    @classmethod
    def _output_scorers(cls, value: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for index, scorer in enumerate(value):
            if getattr(scorer, "on", "output") != "output":
                raise ValueError(f'scorer {index}: a scorer runs on the output ("on": "output")')
            if scorer.type in EXPECTED_TYPES:
                if scorer.type in seen:
                    raise ValueError(f"scorer {index}: {scorer.type} is given twice")
                seen.add(scorer.type)
        return value


def scorer_key(index: int, scorer: Any) -> str:
    """The key of a scorer in `scores`: its type for the two expected-answer scorers
    (each given at most once), `type#index` for a check (a type may repeat)."""
    kind = str(scorer.type)
    return kind if kind in EXPECTED_TYPES else f"{kind}#{index}"
