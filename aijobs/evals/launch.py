"""Creating an eval: everything is checked first (the dataset, each candidate resolved
and pinned to a prompt version, the scorers, the tier, every item x candidate job as a
batch line), and nothing is written on a refusal. Then its jobs go in as one batch of
the tenant (aijobs/batches: bulk insert, the exact cache folded in, identical lines
following one another, priority batch, tier standard or batch), with the eval and a
result row per job, in the session's transaction; the edge commits, then publishes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, RowMapping, text
from sqlalchemy.orm import Session

from aijobs.batches import service as batches
from aijobs.batches.intake import Intake, Lines, check_batch_tier
from aijobs.batches.schemas import BatchOptions
from aijobs.billing.pricing import price_for
from aijobs.errors import InvalidRequest, UnknownPrompt, Unsupported
from aijobs.jobs.schemas import JobRequest
from aijobs.jobs.submission import check_submittable
from aijobs.prompts.reference import DEFAULT_LABEL

from . import datasets, report, transitions
from .schemas import MAX_EVAL_JOBS, Candidate, EvalCreate
from .scorers import judges, needs_expected

_VERSION = text(
    """
    SELECT v.version, v.content, v.variables FROM prompts p
    JOIN prompt_versions v ON v.prompt_id = p.id
    WHERE p.tenant_id = :tenant_id AND p.name = :name AND v.version = :version
    """
)
_LABEL = text(
    """
    SELECT l.version, l.split FROM prompts p
    JOIN prompt_labels l ON l.prompt_id = p.id AND l.label = :label
    WHERE p.tenant_id = :tenant_id AND p.name = :name
    """
)
_ITEMS = text(
    """
    SELECT id, position, variables, messages, expected FROM dataset_items
    WHERE dataset_id = :dataset_id ORDER BY position
    """
)
# A line's stand-in message when only the candidate's model and options are checked.
_PROBE = [{"role": "user", "content": "probe"}]


@dataclass(frozen=True)
class Pinned:
    """A candidate resolved at create: the version it runs, and the model."""

    index: int
    name: str
    version: int
    label: str | None
    model: str
    override: str | None
    variables: list[str]

    def view(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.label is not None:
            prompt["label"] = self.label
        return {"index": self.index, "prompt": prompt, "model": self.model}


@dataclass
class Plan:
    """A checked eval, nothing written yet."""

    id: uuid.UUID
    dataset: RowMapping
    body: EvalCreate
    candidates: list[Pinned]
    items: list[RowMapping]
    lines: Lines = field(default_factory=Lines)

    @property
    def jobs(self) -> int:
        return len(self.items) * len(self.candidates)


def _pin(
    conn: Connection, tenant_id: uuid.UUID, index: int, candidate: Candidate, tier: str
) -> Pinned:
    ref = candidate.prompt
    where = {"tenant_id": tenant_id, "name": ref.name}
    label = None
    version = ref.version
    if version is None:
        label = ref.label or DEFAULT_LABEL
        found = conn.execute(_LABEL, {**where, "label": label}).first()
        if found is None:
            raise UnknownPrompt(f"candidate {index}: prompt {ref.name!r} has no label {label!r}")
        if found.split is not None:
            raise UnknownPrompt(
                f"candidate {index}: label {label!r} of prompt {ref.name!r} is a split;"
                " name one version"
            )
        version = int(found.version)
    row = conn.execute(_VERSION, {**where, "version": version}).first()
    if row is None:
        raise UnknownPrompt(f"candidate {index}: prompt {ref.name!r} has no version {version}")
    content = row.content
    model = candidate.model or content["model"]
    # The candidate's model and the version's options, as every job of it will carry
    # them: unknown_model, unsupported (an unconfigured provider, or the batch tier's
    # limits) are answered here once, not per line.
    probe = JobRequest.model_validate(
        {
            "model": model,
            "messages": _PROBE,
            "params": content["params"],
            "response_schema": content["response_schema"],
            "fallbacks": content["fallbacks"],
            "checks": content["checks"],
        }
    )
    check_submittable(probe, refuse_unconfigured=True)
    if tier == "batch":
        check_batch_tier(probe)  # sim/* (no batch API), a judge check on the version
    return Pinned(index, ref.name, version, label, model, candidate.model, list(row.variables))


def _check_scorers(body: EvalCreate) -> None:
    for _, check in judges(body.scorers):
        price = price_for(check.model)  # unknown_model
        if price.mode != "chat":
            raise InvalidRequest(f"judge model {check.model!r} is a {price.mode} model")
        probe = JobRequest.model_validate({"model": check.model, "messages": _PROBE})
        check_submittable(probe, refuse_unconfigured=True)
    if body.tier == "batch" and judges(body.scorers):
        raise Unsupported(
            'judge scorers are not served on tier "batch" (each judge is a call made when'
            " its output is known); use tier standard",
            extra={"field": "tier"},
        )


def _item_name(item: RowMapping) -> str:
    return f"item {item['id']} (position {item['position']})"


def _check_items(items: list[RowMapping], candidates: list[Pinned], body: EvalCreate) -> None:
    """Cheap checks before any line is built, naming the first bad item."""
    expected = needs_expected(body.scorers)
    for item in items:
        if expected and item["expected"] is None:
            raise InvalidRequest(
                f"{_item_name(item)} has no expected answer, which"
                " equals_expected / json_matches_expected need",
                extra={"item_id": str(item["id"])},
            )
        variables = item["variables"]
        if variables is None:
            continue
        for candidate in candidates:
            missing = [name for name in candidate.variables if name not in variables]
            unknown = sorted(set(variables) - set(candidate.variables))
            if missing or unknown:
                what = (
                    f"lacks variable(s) {', '.join(missing)}"
                    if missing
                    else f"has variable(s) {', '.join(unknown)} not in the template"
                )
                raise InvalidRequest(
                    f"{_item_name(item)} {what} of candidate {candidate.index}"
                    f" ({candidate.name} v{candidate.version})",
                    extra={"item_id": str(item["id"]), "candidate": candidate.index},
                )


def _line(item: RowMapping, candidate: Pinned) -> dict[str, Any]:
    """The job of one item x candidate, as a batch line: a prompt job at the pinned
    version (the candidate's model override, if any), or the item's messages sent to
    the candidate's model. The same on every run, so a re-run is answered by the cache."""
    line: dict[str, Any] = {"custom_id": f"{item['position']}:{candidate.index}"}
    if item["variables"] is not None:
        line["prompt"] = {
            "name": candidate.name,
            "version": candidate.version,
            "variables": item["variables"],
        }
        if candidate.override is not None:
            line["model"] = candidate.override
    else:
        line["model"] = candidate.model
        line["messages"] = item["messages"]
    return line


def plan(conn: Connection, tenant_id: uuid.UUID, body: EvalCreate) -> Plan:
    """Every check an eval needs, nothing written: NotFound (the dataset), 422
    unknown_prompt, unknown_model, unsupported, invalid_request naming the first bad
    item and candidate."""
    dataset = datasets.find(conn, tenant_id, body.dataset)
    count = int(dataset["item_count"])
    if count == 0:
        raise InvalidRequest(f"dataset {body.dataset!r} has no items")
    if count * len(body.candidates) > MAX_EVAL_JOBS:
        raise InvalidRequest(
            f"an eval runs at most {MAX_EVAL_JOBS} jobs (items x candidates);"
            f" this one would run {count * len(body.candidates)}"
        )
    _check_scorers(body)
    candidates = [_pin(conn, tenant_id, i, c, body.tier) for i, c in enumerate(body.candidates)]
    items = list(conn.execute(_ITEMS, {"dataset_id": dataset["id"]}).mappings())
    _check_items(items, candidates, body)
    intake = Intake(tenant_id, body.tier)
    intake.feed(conn, (_line(item, c) for item in items for c in candidates))
    lines = intake.finish()
    if lines.errors:
        first = lines.errors[0]
        item = items[first["index"] // len(candidates)]
        which = first["index"] % len(candidates)
        raise InvalidRequest(
            f"{_item_name(item)}, candidate {which}: {first['detail']}",
            extra={"item_id": str(item["id"]), "candidate": which},
        )
    return Plan(uuid.uuid4(), dataset, body, candidates, items, lines)


@dataclass(frozen=True)
class Launched:
    eval: dict[str, Any]
    publish: list[uuid.UUID]  # the jobs a worker must run, once committed


def launch(session: Session, tenant_id: uuid.UUID, plan: Plan, *, budgeted: bool) -> Launched:
    """The eval, its batch of jobs and its result rows, in the session's transaction
    (402 when the tenant's budget is already spent, nothing written)."""
    options = BatchOptions(tier=plan.body.tier, metadata={"eval_id": str(plan.id)})
    submitted = batches.submit(
        session,
        tenant_id,
        options,
        plan.lines,
        idempotency_key=None,
        body_hash="",
        budgeted=budgeted,
    )
    conn = session.connection()
    transitions.create(
        conn,
        {
            "id": plan.id,
            "tenant_id": tenant_id,
            "dataset_id": plan.dataset["id"],
            "batch_id": uuid.UUID(submitted.batch["id"]),
            "tier": plan.body.tier,
            "candidates": [c.view() for c in plan.candidates],
            "scorers": [s.model_dump(mode="json") for s in plan.body.scorers],
            "total": plan.jobs,
        },
    )
    n = len(plan.candidates)
    results = []
    for row in plan.lines.rows:
        index = int(row["batch_index"])
        item = plan.items[index // n]
        results.append(
            {
                "item_index": index // n,
                "candidate": index % n,
                "item_id": str(item["id"]),
                "job_id": row["id"],
            }
        )
    transitions.insert_results(conn, plan.id, results)
    shown = report.report(conn, tenant_id, plan.id)
    return Launched(shown, submitted.publish)
