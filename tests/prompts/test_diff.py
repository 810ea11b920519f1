"""Two prompt versions side by side (aijobs.prompts.diff): fields as lines, the changed
words of a changed line marked, long unchanged runs folded, and the work bounded for
any content (large changes paired in order, rows capped)."""

from __future__ import annotations

from typing import Any

from aijobs.prompts import diff


def _version(*contents: str, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": content} for content in contents],
        "model": "openai/gpt-4o-mini",
        "params": {},
        "response_schema": None,
        "fallbacks": [],
        "checks": [],
        **extra,
    }


def _field(diffs: list[diff.FieldDiff], name: str) -> diff.FieldDiff:
    (found,) = [d for d in diffs if d.field == name]
    return found


def _text(side: diff.Side, changed: bool | None = None) -> list[str]:
    return [s.text for s in side.segments if changed is None or s.changed == changed]


def test_each_field_and_the_changed_words() -> None:
    old = _version("You are terse.\nSummarise: {{text}}")
    new = _version(
        "You are terse.\nSummarise in three bullets: {{text}}", fallbacks=["openai/gpt-4o"]
    )
    diffs = diff.side_by_side(old, new)
    assert [d.field for d in diffs] == list(diff.FIELDS)
    assert {d.field for d in diffs if d.changed} == {"messages", "fallbacks"}
    messages = _field(diffs, "messages")
    assert [r.kind for r in messages.rows] == ["equal", "equal", "replace"]
    (replaced,) = [r for r in messages.rows if r.kind == "replace"]
    assert (replaced.old.number, replaced.new.number) == (3, 3)
    assert "".join(_text(replaced.new)) == "  Summarise in three bullets: {{text}}"
    assert _text(replaced.new, changed=True) == [" in three bullets"]
    assert _text(replaced.old, changed=True) == []
    fallbacks = _field(diffs, "fallbacks")
    assert [r.kind for r in fallbacks.rows] == ["replace", "insert", "insert"]


def test_text_stays_text() -> None:
    hostile = "<script>alert(1)</script>"
    rows = _field(diff.side_by_side(_version("a"), _version(hostile)), "messages").rows
    assert "".join(_text(rows[-1].new)) == f"  {hostile}"  # as given: escaping is the page's


def test_long_unchanged_runs_fold() -> None:
    body = "\n".join(f"line {i}" for i in range(100))
    rows = _field(
        diff.side_by_side(_version(body), _version(body.replace("line 50", "line fifty"))),
        "messages",
    ).rows
    kinds = [r.kind for r in rows]
    assert kinds.count("replace") == 1 and kinds.count("skip") == 2
    assert len(rows) == 2 * (2 * diff.CONTEXT) + 2 + 1
    assert sum(r.skipped for r in rows) == 101 - 1 - 4 * diff.CONTEXT


def test_the_work_is_bounded_for_any_content() -> None:
    # Many distinct lines with few in common: aligning them line by line would be slow
    # (quadratic); past the bound the sides are paired in order, and the rows capped.
    count = diff.MAX_ALIGNED_LINES
    old = "\n".join(str(i) for i in range(count))
    new = "\n".join(str(i * 7) for i in range(count))
    rows = _field(diff.side_by_side(_version(old), _version(new)), "messages").rows
    assert len(rows) == diff.MAX_ROWS + 1
    assert rows[-1].kind == "cut" and rows[-1].skipped > 0
    replaced = [r for r in rows if r.kind == "replace"]
    assert all(r.old.number == r.new.number for r in replaced)  # in order, not aligned

    # Long changed lines are compared word by word only within the budget: past it a
    # line is shown whole, with no words marked.
    words = " ".join(["word"] * 300)  # about 600 tokens: 2 pairs within the budget
    many = [words] * 10
    rows = _field(
        diff.side_by_side(_version(*many), _version(*[w + " more" for w in many])), "messages"
    ).rows
    replaced = [r for r in rows if r.kind == "replace"]
    marked = [r for r in replaced if _text(r.new, changed=True)]
    assert len(replaced) == 10 and 0 < len(marked) < 10
