"""The scorers and the reading back of a prompt job's variables, as plain functions."""

from __future__ import annotations

from aijobs.checks.schemas import JudgeCheck
from aijobs.evals import scorers
from aijobs.evals.from_job import read_variables
from aijobs.evals.schemas import SCORERS, scorer_key


def test_equals_expected_compares_trimmed_text() -> None:
    assert scorers.equals_expected("  Paris\n", "Paris").passed
    assert not scorers.equals_expected("paris", "Paris").passed
    assert scorers.equals_expected('{"a":1}', {"a": 1}).passed  # compact JSON text
    assert scorers.equals_expected("Paris", "Paris") == scorers.Score(1.0, True)
    assert scorers.equals_expected("Rome", "Paris") == scorers.Score(0.0, False)


def test_json_matches_expected_ignores_key_order_and_not_types() -> None:
    match = scorers.json_matches_expected
    assert match('{"b": [1, 2], "a": {"x": null}}', {"a": {"x": None}, "b": [1, 2]}).passed
    assert match(' {"a": 1} ', '{"a": 1.0}').passed  # an expected string holding JSON
    assert not match('{"a": true}', {"a": 1}).passed  # true is not 1
    assert not match('{"a": 1}', {"a": True}).passed
    assert not match("[2, 1]", [1, 2]).passed  # arrays keep their order
    assert not match("not json", "not json").passed  # the output must parse
    assert not match('{"a": 1, "b": 2}', {"a": 1}).passed
    assert match('"plain"', "plain").passed  # an expected string that is not JSON
    assert not match("[" * 5000 + "]" * 5000, []).passed  # too deep: no crash


def test_check_scorers_and_keys() -> None:
    parsed = SCORERS.validate_python(
        [
            {"type": "equals_expected"},
            {"type": "regex", "pattern": "^[0-9]+$"},
            {"type": "max_chars", "value": 3},
            {"type": "judge", "model": "openai/gpt-4o-mini", "rubric": "short?"},
        ]
    )
    keys = [scorer_key(i, s) for i, s in enumerate(parsed)]
    assert keys == ["equals_expected", "regex#1", "max_chars#2", "judge#3"]
    scores = scorers.score_local(parsed, "1234", "1234")
    assert scores == {
        "equals_expected": scorers.Score(1.0, True),
        "regex#1": scorers.Score(1.0, True),
        "max_chars#2": scorers.Score(0.0, False),
    }
    [(key, judge)] = scorers.judges(parsed)
    assert key == "judge#3" and isinstance(judge, JudgeCheck)
    request = scorers.judge_request(judge, "1234")
    assert request is not None and request.cache and request.priority == "batch"
    assert request.response_schema is not None
    assert scorers.judge_request(judge, "x" * 600_000) is None
    good = scorers.judge_score(judge, "succeeded", {"parsed": {"score": 0.7, "reason": "ok"}})
    assert good == scorers.Score(0.7, True)
    low = scorers.judge_score(judge, "succeeded", {"parsed": {"score": 0.2, "reason": "no"}})
    assert low == scorers.Score(0.2, False)
    assert scorers.judge_score(judge, "failed", None) == scorers.Score(0.0, False)


def test_variables_read_back_from_rendered_messages() -> None:
    templates = [
        {"role": "system", "content": "You answer as {{persona}}."},
        {"role": "user", "content": "{{question}} -- {{persona}} (v{{n}})"},
    ]
    rendered = [
        {"role": "system", "content": "You answer as a {{pirate}}."},
        {"role": "user", "content": "Where (really) -- is it? -- a {{pirate}} (v2)"},
    ]
    assert read_variables(templates, rendered) == {
        "persona": "a {{pirate}}",
        "question": "Where (really) -- is it?",
        "n": "2",
    }
    # A value that differs between two uses of one placeholder: no single reading.
    rendered[1]["content"] = "Q -- a parrot (v2)"
    assert read_variables(templates, rendered) is None
    assert read_variables(templates, rendered[:1]) is None
    wrong_role = [{"role": "user", "content": m["content"]} for m in rendered]
    assert read_variables(templates, wrong_role) is None
    assert (
        read_variables(
            [{"role": "user", "content": "fixed"}], [{"role": "user", "content": "fixed"}]
        )
        == {}
    )
