"""What every provider's batch API adapter does, and the line it is given."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import RowMapping

from aijobs.jobs.schemas import JobRequest
from worker.providers.base import Completion, ProviderError

# Provider batch ids looked through when finding one a crashed worker created.
FIND_LIMIT = 500
# A provider's clock may be a little off ours: what it created this long before we
# asked still counts as created after.
CLOCK_SKEW_S = 60.0


@dataclass(frozen=True)
class Call:
    """One line of a provider batch: the job id (the custom_id) and the request as the
    single call would send it."""

    custom_id: str
    name: str  # the model's name at the provider
    request: JobRequest


@dataclass(frozen=True)
class Polled:
    ended: bool
    status: str  # the provider's own word


class BatchAPI(Protocol):
    provider: str

    def find(self, row: RowMapping) -> str | None:
        """The provider batch a worker created for this row before it crashed, or None."""

    def submit(self, row: RowMapping, calls: list[Call], on_file: Callable[[str], None]) -> str:
        """Create the provider batch (one try, no SDK retries); its id. `on_file` is told
        an uploaded input file's id before the batch is created."""

    def poll(self, provider_batch_id: str) -> Polled: ...

    def results(self, provider_batch_id: str) -> Iterator[tuple[str, Any]]:
        """(custom_id, raw line) for every line the ended batch answered, any order."""

    def outcome(self, raw: Any, request: JobRequest) -> Completion | ProviderError:
        """What one line gave: the call's answer, or its error (mapped to our codes)."""
