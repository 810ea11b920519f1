"""How a job names a prompt: {"name", "label" | "version", "variables"}. Kept apart
from the version schemas so the job request can import it without a cycle."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aijobs.storable import unstorable

# Names and labels travel in URL paths: a conservative alphabet, no slashes.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
DEFAULT_LABEL = "production"
MAX_VARIABLES = 100

PromptName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
LabelName = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]
VariableName = Annotated[str, StringConstraints(pattern=VARIABLE_PATTERN)]


class PromptRef(BaseModel):
    """The prompt a job runs: a label (default `production`) or a version, and the
    string values of its placeholders."""

    model_config = ConfigDict(extra="forbid")

    name: PromptName
    label: LabelName | None = None
    version: int | None = Field(default=None, ge=1)
    variables: dict[VariableName, str] = Field(default_factory=dict, max_length=MAX_VARIABLES)

    @model_validator(mode="after")
    def _one_target(self) -> PromptRef:
        if self.label is not None and self.version is not None:
            raise ValueError("name a prompt label or a version, not both")
        found = unstorable(self.variables, ("variables",))
        if found is not None:
            raise ValueError(f"{found}, which cannot be stored")
        return self

    @property
    def target(self) -> str:
        return self.label or DEFAULT_LABEL
