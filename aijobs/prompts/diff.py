"""Two versions of a prompt side by side: each field a version holds, as lines, and the
rows of a two-column diff with the changed characters of changed lines marked. The
result is plain data (text and flags, never markup): whoever shows it escapes it."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

# What a job gets from a version, in the order people read it (the note is shown with
# the version, not diffed).
FIELDS = ("messages", "model", "params", "response_schema", "fallbacks", "checks")
# Marking the changed words of a changed line compares the two lines word by word, in
# time up to quadratic in their words: only while the product of their word counts, over
# the whole diff, stays under a bound, so no content makes the page slow (beyond it a
# changed line is marked whole).
INTRALINE_MAX_CELLS = 1_000_000
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
# Unchanged lines shown around a change; a longer unchanged run folds into one "skip" row.
CONTEXT = 8
# Aligning lines (difflib's matcher) can take time quadratic in the lines compared: past
# this many changed lines (after the common start and end are set aside) the two sides
# are paired in order instead. A field shows at most MAX_ROWS rows, then one "cut" row.
MAX_ALIGNED_LINES = 4_000
MAX_ROWS = 2_000

Kind = Literal["equal", "replace", "delete", "insert", "skip", "cut"]


@dataclass(frozen=True)
class Segment:
    """A run of a line's text; `changed` marks the words that differ from the line it is
    paired with (only in a replaced line compared word by word)."""

    text: str
    changed: bool


@dataclass(frozen=True)
class Side:
    """One cell of a row: its line number in that version's field, and its text."""

    number: int | None
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Row:
    kind: Kind
    old: Side
    new: Side
    skipped: int = 0  # for a "skip" or "cut" row: how many lines it stands for


@dataclass(frozen=True)
class FieldDiff:
    field: str
    changed: bool
    rows: list[Row]


def field_lines(field: str, value: Any) -> list[str]:
    """A field as lines: each message its role then its content line by line, the
    model as is, any other field as indented, key-sorted JSON."""
    if field == "messages":
        lines: list[str] = []
        for index, message in enumerate(value or []):
            lines.append(f"[{index}] {message.get('role', '')}:")
            lines += [f"  {line}" for line in str(message.get("content", "")).split("\n")]
        return lines
    if field == "model":
        return [str(value)]
    dumped = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    return dumped.split("\n")


_EMPTY = Side(None, ())


def _whole(number: int, text: str) -> Side:
    return Side(number, (Segment(text, False),))


def _intraline(old: list[str], new: list[str]) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Two lines (as words, spaces and punctuation) cut into runs of equal and changed
    text."""
    left: list[Segment] = []
    right: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            left.append(Segment("".join(old[i1:i2]), tag != "equal"))
        if j2 > j1:
            right.append(Segment("".join(new[j1:j2]), tag != "equal"))
    return tuple(left), tuple(right)


class _Budget:
    """How much word-by-word comparing the diff may still do (in word pairs)."""

    def __init__(self, cells: int) -> None:
        self.cells = cells

    def take(self, old: list[str], new: list[str]) -> bool:
        cost = len(old) * len(new)
        if cost > self.cells:
            return False
        self.cells -= cost
        return True


def _unchanged(old: list[str], i1: int, i2: int, j1: int) -> list[Row]:
    """An unchanged run, its middle folded when it is long."""
    shown = list(range(i1, i2))
    skipped = 0
    if i2 - i1 > 2 * CONTEXT + 1:
        shown = [*range(i1, i1 + CONTEXT), *range(i2 - CONTEXT, i2)]
        skipped = i2 - i1 - 2 * CONTEXT
    rows = []
    for i in shown:
        if skipped and i == i2 - CONTEXT:
            rows.append(Row("skip", _EMPTY, _EMPTY, skipped))
        rows.append(Row("equal", _whole(i + 1, old[i]), _whole(j1 + i - i1 + 1, old[i])))
    return rows


def _common_ends(old: list[str], new: list[str]) -> tuple[int, int]:
    """How many lines the two start with alike, and end with alike (not overlapping)."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    return start, end


Opcode = tuple[str, int, int, int, int]


def _opcodes(old: list[str], new: list[str]) -> list[Opcode]:
    """difflib's opcodes, with the cost bounded: the common start and end are equal
    blocks, and only a middle of bounded size is aligned line by line."""
    start, end = _common_ends(old, new)
    old_end, new_end = len(old) - end, len(new) - end
    middle: list[Opcode] = []
    if (old_end - start) + (new_end - start) <= MAX_ALIGNED_LINES:
        matcher = difflib.SequenceMatcher(None, old[start:old_end], new[start:new_end])
        middle = [
            (tag, i1 + start, i2 + start, j1 + start, j2 + start)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        ]
    elif old_end > start or new_end > start:
        middle = [("replace", start, old_end, start, new_end)]
    head: list[Opcode] = [("equal", 0, start, 0, start)] if start else []
    tail: list[Opcode] = [("equal", old_end, len(old), new_end, len(new))] if end else []
    return head + middle + tail


def _rows(old: list[str], new: list[str], budget: _Budget) -> list[Row]:
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in _opcodes(old, new):
        if len(rows) > MAX_ROWS:
            break
        if tag == "equal":
            rows += _unchanged(old, i1, i2, j1)
            continue
        # A replaced block pairs its lines up in order; the longer side's rest stands alone.
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            left = old[i] if i < i2 else None
            right = new[j] if j < j2 else None
            if left is not None and right is not None:
                words_old, words_new = _TOKEN.findall(left), _TOKEN.findall(right)
                if budget.take(words_old, words_new):
                    cut_old, cut_new = _intraline(words_old, words_new)
                    rows.append(Row("replace", Side(i + 1, cut_old), Side(j + 1, cut_new)))
                else:
                    rows.append(Row("replace", _whole(i + 1, left), _whole(j + 1, right)))
            elif left is not None:
                rows.append(Row("delete", _whole(i + 1, left), _EMPTY))
            elif right is not None:
                rows.append(Row("insert", _EMPTY, _whole(j + 1, right)))
            if len(rows) > MAX_ROWS:
                break
    if len(rows) > MAX_ROWS:
        shown = rows[:MAX_ROWS]
        last_old = max((row.old.number or 0 for row in shown), default=0)
        last_new = max((row.new.number or 0 for row in shown), default=0)
        hidden = max(len(old) - last_old, len(new) - last_new)
        return [*shown, Row("cut", _EMPTY, _EMPTY, hidden)]
    return rows


def side_by_side(old: dict[str, Any], new: dict[str, Any]) -> list[FieldDiff]:
    """Each field of FIELDS, the rows of its two-column diff, and whether it changed."""
    budget = _Budget(INTRALINE_MAX_CELLS)
    diffs = []
    for field in FIELDS:
        before, after = field_lines(field, old.get(field)), field_lines(field, new.get(field))
        diffs.append(FieldDiff(field, before != after, _rows(before, after, budget)))
    return diffs
