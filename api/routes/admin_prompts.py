"""/admin/ui/prompts: the admin page's prompts. Every tenant's prompts with their labels;
one prompt's versions, labels and per-version stats, each version's last 30 days as
small SVG charts drawn here (no script) and a table, and two versions side by side; the
way from a job's page to the version it ran. Read only: versions and labels change
through the tenant API (or `aijobs prompts push`), never here.

Prompt text is tenant data: the templates only ever print it autoescaped (the diff is
plain text and flags from aijobs.prompts.diff, never markup)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from aijobs.errors import NotFound
from aijobs.jobs import triage
from aijobs.models import Tenant
from aijobs.money import usd
from aijobs.prompts import catalog, diff, history, service
from aijobs.prompts import stats as prompt_stats
from api import admin_session
from api.deps import SessionDep
from api.routes.admin_page import HEADERS, render_page

# Pages only (GET): a session, else 303 to the login. Nothing here posts.
pages = APIRouter(
    prefix="/admin",
    include_in_schema=False,
    dependencies=[Depends(admin_session.require_session)],
)
PAGE_SIZE = 100
STATS_DAYS = 30


def _shares(split: dict[str, int]) -> list[tuple[int, str]]:
    """A split's versions with their share of the weight, as the page prints it."""
    total = sum(split.values())
    return [(int(version), f"{weight * 100 / total:.3g}%") for version, weight in split.items()]


def _label_text(target: int | dict[str, Any]) -> str:
    if isinstance(target, int):
        return f"v{target}"
    return "split " + ", ".join(f"v{v} {share}" for v, share in _shares(target["split"]))


def _labels_by_version(labels: dict[str, Any]) -> dict[int, list[str]]:
    """Which labels send traffic to each version (a split's with the version's share)."""
    found: dict[int, list[str]] = {}
    for label, target in labels.items():
        if isinstance(target, int):
            found.setdefault(target, []).append(label)
        else:
            for version, share in _shares(target["split"]):
                found.setdefault(version, []).append(f"{label} ({share})")
    return found


def _error(request: Request, message: str, status_code: int = 404) -> Response:
    return render_page(request, "error.html", {"error": message}, status_code=status_code)


def prompt_path(tenant_id: uuid.UUID | str, name: str) -> str:
    return f"/admin/ui/prompts/{tenant_id}/{quote(name, safe='')}"


@pages.get("/ui/prompts")
def prompts_page(
    request: Request, session: SessionDep, tenant: str = "", cursor: str = ""
) -> Response:
    after = int(cursor) if cursor.isdecimal() and len(cursor) < 19 else None
    rows, next_cursor = catalog.list_all(
        session, tenant=tenant.strip() or None, limit=PAGE_SIZE, cursor=after
    )
    for row in rows:
        row["path"] = prompt_path(row["tenant_id"], row["name"])
        row["labels_shown"] = [(k, _label_text(v)) for k, v in row["labels"].items()]
    return render_page(
        request,
        "prompts.html",
        {"prompts": rows, "tenant": tenant, "next_cursor": next_cursor or ""},
    )


def _number(value: str) -> int | None:
    return int(value) if value.isdecimal() and len(value) < 10 else None


def _pair(numbers: list[int], a: str, b: str) -> tuple[int, int, str]:
    """The two versions to compare: as asked, else the last two (or the one before b).
    An unknown version falls back to those, with a note saying so."""
    wanted_b, wanted_a = _number(b), _number(a)
    unknown = [
        repr(asked)
        for asked, value in ((a, wanted_a), (b, wanted_b))
        if asked and value not in numbers
    ]
    note = ""
    if unknown:
        note = f"There is no version {' or '.join(unknown)}; showing the default comparison."
    new = wanted_b if wanted_b in numbers else numbers[0]
    below = [n for n in numbers if n < new]
    old = wanted_a if wanted_a in numbers else (below[0] if below else new)
    assert old is not None
    return old, new, note


def _window() -> tuple[date, date]:
    """The last STATS_DAYS UTC days, today included: [start, end)."""
    end = datetime.now(UTC).date() + timedelta(days=1)
    return end - timedelta(days=STATS_DAYS), end


def _stats(
    session: SessionDep, tenant_id: uuid.UUID, name: str, start: date, end: date
) -> dict[int, dict[str, Any]]:
    found = prompt_stats.stats(session, tenant_id, name, start=start, end=end)
    return {row["version"]: row for row in found["versions"]}


# --- the history charts: one small SVG per metric, a slot per day --------------------

SLOT = 10  # px per day
CHART_H = 60
PAD = 3


@dataclass(frozen=True)
class Mark:
    """A day's bar (x, y, height) or point (x, y), with its tooltip."""

    x: float
    y: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    metric: str
    title: str
    span: str  # what the chart's height spans, as the caption prints it
    kind: str  # "bars" | "line"
    marks: list[Mark]
    lines: list[str]  # polyline points, broken where a day has no value
    width: int
    height: int = CHART_H
    bar_width: int = SLOT - 2


def _chart(
    metric: str,
    title: str,
    days: list[history.Day],
    values: list[float | None],
    shown: Callable[[float], str],
    *,
    kind: str,
    unit_range: bool = False,
) -> Chart:
    """Bars from 0 (a day without a value draws none), or a line over the values' range
    (0..1 for shares, which every value in 0..1 is taken to be)."""
    given = [v for v in values if v is not None]
    low = 0.0 if kind == "bars" or unit_range else min([0.0, *given])
    high = 1.0 if unit_range else max([0.0, *given])
    if high <= low:
        high = low + 1
    marks: list[Mark] = []
    lines: list[str] = []
    points: list[str] = []
    for n, (day, value) in enumerate(zip(days, values, strict=True)):
        if value is None or (kind == "bars" and value == 0):
            lines.append(" ".join(points))
            points = []
            continue
        height = (value - low) / (high - low) * (CHART_H - 2 * PAD)
        tooltip = f"{day.day.isoformat()}: {shown(value)}"
        if kind == "bars":
            top = CHART_H - PAD - height
            marks.append(Mark(n * SLOT + 1, round(top, 1), round(height, 1), tooltip))
        else:
            x, y = n * SLOT + SLOT / 2, round(CHART_H - PAD - height, 1)
            marks.append(Mark(x, y, 0, tooltip))
            points.append(f"{x:g},{y:g}")
    lines.append(" ".join(points))
    # A line joins consecutive days only; a lone day is its point alone.
    lines = [line for line in lines if " " in line]
    span = f"{shown(low)} to {shown(high)}"
    return Chart(metric, title, span, kind, marks, lines, width=len(days) * SLOT)


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def _mean(value: float) -> str:
    return f"{value:.4g}"


def _history(series: history.Series) -> dict[str, Any]:
    days = series.days
    charts = [
        _chart("jobs", "jobs", days, [d.jobs for d in days], lambda v: f"{v:g}", kind="bars"),
        _chart(
            "checks_passed",
            "checks passed",
            days,
            [d.checks_passed for d in days],
            _percent,
            kind="line",
            unit_range=True,
        ),
    ]
    for name in series.feedback_names:
        means = [d.feedback.get(name) for d in days]
        charts.append(
            _chart(
                f"feedback:{name}",
                f"feedback {name} (mean)",
                days,
                means,
                _mean,
                kind="line",
                unit_range=all(0 <= v <= 1 for v in means if v is not None),
            )
        )
    charts += [
        _chart(
            "cost_usd",
            "cost (USD)",
            days,
            [float(d.cost_usd) for d in days],
            lambda v: usd(round(Decimal(v), 6)),
            kind="bars",
        ),
        _chart("p50_ms", "latency p50 (ms)", days, [d.p50_ms for d in days], _mean, kind="line"),
    ]
    rows = [
        {
            "day": d.day.isoformat(),
            "jobs": d.jobs,
            "checks_passed": "" if d.checks_passed is None else _percent(d.checks_passed),
            "feedback": [
                _mean(d.feedback[name]) if name in d.feedback else ""
                for name in series.feedback_names
            ],
            "cost_usd": usd(d.cost_usd),
            "p50_ms": "" if d.p50_ms is None else d.p50_ms,
        }
        for d in days
        if d.jobs
    ]
    return {
        "version": series.version,
        "charts": charts,
        "rows": rows,
        "feedback_names": series.feedback_names,
    }


@pages.get("/ui/prompts/{tenant_id}/{name}")
def prompt_page(
    request: Request, session: SessionDep, tenant_id: str, name: str, a: str = "", b: str = ""
) -> Response:
    try:
        owner = uuid.UUID(tenant_id)
        outline = catalog.outline(session, owner, name)
    except ValueError:
        return _error(request, f"no tenant {tenant_id!r}")
    except NotFound as exc:
        return _error(request, exc.detail)
    tenant = session.get(Tenant, owner)
    numbers = [v["version"] for v in outline["versions"]]
    old_number, new_number, note = _pair(numbers, a, b)
    old = service.get_version(session, owner, name, old_number)
    new = service.get_version(session, owner, name, new_number)
    labelled = _labels_by_version(outline["labels"])
    start, end = _window()
    stats = _stats(session, owner, name, start, end)
    series = history.daily(session, owner, name, start=start, end=end)
    for version in outline["versions"]:
        version["labels"] = labelled.get(version["version"], [])
        version["stats"] = stats.get(version["version"])
    return render_page(
        request,
        "prompt.html",
        {
            "tenant": tenant.name if tenant else "",
            "tenant_id": str(owner),
            "prompt": outline,
            "labels_shown": [(k, _label_text(v)) for k, v in outline["labels"].items()],
            "path": prompt_path(owner, name),
            "old": old,
            "new": new,
            "diff": diff.side_by_side(old, new),
            "note": note,
            "stats_days": STATS_DAYS,
            "history": [_history(one) for one in series],
            "history_span": (start.isoformat(), (end - timedelta(days=1)).isoformat()),
        },
    )


@pages.get("/ui/jobs/{job_id}/prompt")
def job_prompt(request: Request, session: SessionDep, job_id: str) -> Response:
    """The prompt page at the version the job ran (compared with the one before it)."""
    try:
        job = triage.get(session, job_id)
    except NotFound as exc:
        return _error(request, exc.detail)
    if not job.prompt:
        return _error(request, "this job did not run a prompt")
    path = prompt_path(job.tenant_id, job.prompt["name"])
    version = int(job.prompt["version"])
    return RedirectResponse(f"{path}?b={version}#version-{version}", 303, headers=HEADERS)
