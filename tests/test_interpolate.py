"""Placeholder filling for ``%%llm`` prompts: f-string-like fields filled, JSON and other braces kept."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

import pytest

from nbllm._exceptions import ConfigurationError
from nbllm._prompts.placeholders import find_placeholders, interpolate


class Doc:
    title = "On Brackets"
    pages = [10, 20]

    def words(self, n: int) -> str:
        return f"{n} words"


def fmt_list(values: list[Any]) -> str:
    return ", ".join(map(str, values))


def broken() -> str:
    return undefined_inside_function  # type: ignore[name-defined]  # noqa: F821


NS: dict[str, Any] = {
    "question": "What is 1 + 2?",
    "name": "Ada",
    "n": 3,
    "value": 3.14159,
    "width": 8,
    "items": ["first", "second"],
    "data": {"key": "v", "a:b": "colon"},
    "doc": Doc(),
    "xs": [1, 2, 3],
    "k": 10,
    "fmt_list": fmt_list,
    "broken": broken,
    "when": dt.date(2026, 11, 21),
    "text": "naïve",
}

SEED_PROMPT = '{\n  "expression": "{question}",\n  "result": ?\n}'
SEED_FILLED = '{\n  "expression": "What is 1 + 2?",\n  "result": ?\n}'


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # filled: names, attributes, subscripts, calls, conversions, specs
        ("Hello {name}!", "Hello Ada!"),
        ("{doc.title}", "On Brackets"),
        ("{items[0]} then {items[-1]}", "first then second"),
        ("{data['key']} / {data[\"a:b\"]}", "v / colon"),
        ("{len(items)} items", "2 items"),
        ("{doc.words(n)}", "3 words"),
        ("{doc.pages[1]}", "20"),
        ("{name!r}", "'Ada'"),
        ("{text!a} {text!s}", "'na\\xefve' naïve"),
        ("{value:.2f}", "3.14"),
        ("[{name:>6}]", "[   Ada]"),
        ("{name!r:>7}", "  'Ada'"),
        ("{value:{width}.1f}|", "     3.1|"),
        ("{when:%Y/%m/%d}", "2026/11/21"),
        ("{ name }", "Ada"),  # f-string whitespace is allowed
        ("{items[0:1]}", "['first']"),  # a slice's colon is not a format spec
        ("{fmt_list({'k': 1, 'j': 2})}", "k, j"),  # braces and colons inside a call belong to it
        ("{doc.words(n)!r:>12}", "   '3 words'"),
        ("{fmt_list([x * k for x in xs])}", "10, 20, 30"),  # comprehension sees the namespace
        # the key-pool seed prompt: outer JSON braces stay, the inner placeholder is filled
        (SEED_PROMPT, SEED_FILLED),
        ('{"a": {"b": {"c": "{question}"}}}', '{"a": {"b": {"c": "What is 1 + 2?"}}}'),
        ('[{"q": "{n}"}, {"q": "{name}"}]', '[{"q": "3"}, {"q": "Ada"}]'),
        # left exactly as written
        ('{"expression": "1 + 2", "result": ?}', '{"expression": "1 + 2", "result": ?}'),
        ('{"a": {"b": 1}}', '{"a": {"b": 1}}'),
        ('{"a": {}}', '{"a": {}}'),
        ("{}", "{}"),
        ("{ }", "{ }"),
        ("{1, 2}", "{1, 2}"),
        ("{x + 1} {n * 2}", "{x + 1} {n * 2}"),
        ("{'quoted'}", "{'quoted'}"),
        ('{"name".upper()}', '{"name".upper()}'),
        ('{name: "Bob"}', '{name: "Bob"}'),
        ("{a: 1}", "{a: 1}"),
        ("{name!x}", "{name!x}"),
        ("{\nname\n}", "{\nname\n}"),
        ("{3}", "{3}"),
        ("{name=}", "{name=}"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        # unbalanced braces
        ("{name", "{name"),
        ("name}", "name}"),
        ("{ { {name}", "{ { Ada"),
        ("}{", "}{"),
        # escapes
        ("{{name}}", "{name}"),
        ("{{{name}}}", "{Ada}"),
        ("{{ literal }} and {name}", "{ literal } and Ada"),
        ('{"a": "}}"}', '{"a": "}}"}'),
        ("It's {name}'s turn", "It's Ada's turn"),  # apostrophes do not confuse pairing
        ("no braces at all", "no braces at all"),
        ("", ""),
    ],
)
def test_interpolate(template: str, expected: str) -> None:
    assert interpolate(template, NS) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {name}!", ["name"]),
        (SEED_PROMPT, ["question"]),
        ("{value:.2f} {name!r} {len(items)}", ["value:.2f", "name!r", "len(items)"]),
        ("{value:{width}.1f}", ["value:{width}.1f"]),
        ('{"a": 1} {} {{name}} {x + 1}', []),
        ("{undefined_is_still_listed}", ["undefined_is_still_listed"]),
        ("", []),
    ],
)
def test_find_placeholders(template: str, expected: list[str]) -> None:
    assert find_placeholders(template) == expected


@pytest.mark.parametrize(
    ("template", "message_parts"),
    [
        ("{missing}", ["{missing}", "'missing' is not defined", "{{missing}}"]),
        ("Q: {len(missing_df)}", ["{len(missing_df)}", "'missing_df'", "{{len(missing_df)}}"]),
        ("{missing.attr}", ["'missing' is not defined", "{{missing.attr}}"]),
        ("{value:{missing_width}}", ["{missing_width}", "{{missing_width}}"]),
        (SEED_PROMPT.replace("question", "prompt_text"), ["{prompt_text}", "{{prompt_text}}"]),
        ("{items[5]}", ["{items[5]}", "IndexError", "list index out of range"]),
        ("{data['nope']}", ["KeyError", "'nope'"]),
        ("{doc.missing_attr}", ["AttributeError", "missing_attr"]),
        ("{value:zz}", ["ValueError", "Unknown format code"]),
        ("{broken()}", ["{broken()}", "NameError", "undefined_inside_function"]),
    ],
)
def test_errors(template: str, message_parts: list[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        interpolate(template, NS)
    for part in message_parts:
        assert part in str(caught.value)


def test_error_from_inside_a_function_is_not_reported_as_undefined_placeholder() -> None:
    with pytest.raises(ConfigurationError) as caught:
        interpolate("{broken()}", NS)
    assert "not defined. Define it first" not in str(caught.value)
    assert isinstance(caught.value.__cause__, NameError)


def test_namespace_is_not_modified() -> None:
    namespace = {"name": "Ada"}
    assert interpolate("{name} {len(name)}", namespace) == "Ada 3"
    assert namespace == {"name": "Ada"}  # eval did not add __builtins__ to it


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        (collections.ChainMap({"name": "inner"}, {"name": "outer", "n": 1}), "inner 1"),
        ({"name": "x", "n": 2, "len": lambda _: 99}, "x 2 99"),  # the namespace shadows builtins
    ],
)
def test_any_mapping_works(namespace: Any, expected: str) -> None:
    template = "{name} {n}" + (" {len(name)}" if "len" in namespace else "")
    assert interpolate(template, namespace) == expected
