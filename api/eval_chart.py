"""The eval page's chart: pass rate and cost per candidate as horizontal bars, laid out
here in Python and drawn by the template as inline SVG (no script, nothing fetched).

Only numbers are computed here; the labels (prompt names are tenant data) stay text
that the template autoescapes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

WIDTH = 720
VALUE_WIDTH = 100  # the number printed after each bar
BAR_SPACE = WIDTH - VALUE_WIDTH
BAR_HEIGHT = 14
LABEL_HEIGHT = 15  # each bar's name sits on its own line above it, never clipped
ROW_HEIGHT = LABEL_HEIGHT + BAR_HEIGHT + 7
LABEL_CHARS = 90  # a longer name is cut (the bar's tooltip and the table have it whole)
TITLE_HEIGHT = 20
PANEL_GAP = 16


@dataclass(frozen=True)
class Bar:
    index: int
    label: str  # "#1 summarise@3 (production) on openai/gpt-4o-mini", cut to LABEL_CHARS
    title: str  # the same, whole
    value: str  # as printed after the bar: "83%", "$0.00042", "-" when unknown
    label_y: int  # the label's baseline
    y: int  # the top of the bar
    width: float
    baseline: bool  # candidate 0, the one the others are compared with


@dataclass(frozen=True)
class Panel:
    metric: str  # "pass-rate" | "cost"
    title: str
    y: int  # the title's baseline; the bars follow
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bar_space: int
    bar_height: int
    panels: list[Panel]


def _label(candidate: dict[str, Any]) -> str:
    prompt = candidate["prompt"]
    text = f"#{candidate['index']} {prompt['name']}@{prompt['version']}"
    text += f" ({prompt['label']})" if prompt.get("label") else ""
    return f"{text} on {candidate['model']}"


def _panel(
    metric: str, title: str, top: int, rows: list[tuple[dict[str, Any], float, str]]
) -> Panel:
    bars = []
    for i, (candidate, share, value) in enumerate(rows):
        row_top = top + TITLE_HEIGHT + i * ROW_HEIGHT
        label = _label(candidate)
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        bars.append(
            Bar(
                index=candidate["index"],
                label=shown,
                title=label,
                value=value,
                label_y=row_top + LABEL_HEIGHT - 3,
                y=row_top + LABEL_HEIGHT,
                width=round(share * BAR_SPACE, 1),
                baseline=i == 0,
            )
        )
    return Panel(metric=metric, title=title, y=top + TITLE_HEIGHT - 6, bars=bars)


def chart(candidates: list[dict[str, Any]]) -> Chart:
    """Two panels, one bar per candidate in each: the pass rate on a 0-100% scale and
    the cost scaled to the dearest candidate."""
    passes: list[tuple[dict[str, Any], float, str]] = []
    for candidate in candidates:
        rate = candidate["pass_rate"]
        if rate is None:  # nothing scored yet
            passes.append((candidate, 0.0, "-"))
        else:
            passes.append((candidate, rate, f"{rate * 100:.0f}%"))
    costs = [Decimal(candidate["cost_usd"]) for candidate in candidates]
    dearest = max(costs, default=Decimal(0))
    priced = [
        (candidate, float(cost / dearest) if dearest > 0 else 0.0, f"${cost.normalize():f}")
        for candidate, cost in zip(candidates, costs, strict=True)
    ]
    panel_height = TITLE_HEIGHT + len(candidates) * ROW_HEIGHT
    return Chart(
        width=WIDTH,
        height=2 * panel_height + PANEL_GAP,
        bar_space=BAR_SPACE,
        bar_height=BAR_HEIGHT,
        panels=[
            _panel("pass-rate", "Pass rate (every scorer passed)", 0, passes),
            _panel("cost", "Cost (USD)", panel_height + PANEL_GAP, priced),
        ],
    )
