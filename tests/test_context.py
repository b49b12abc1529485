"""Variables as prompt text within a token budget, and the table side of a fill (rows in, columns out)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from nbllm import ConfigurationError, Failure, Response
from nbllm._prompts import answer_columns, fill_row, interpolate, markdown_table, render_value, table_rows, write_columns
from nbllm._tokens import count_tokens


@pytest.fixture(autouse=True)
def _approximate(monkeypatch):
    monkeypatch.setenv("NBLLM_TOKENIZER", "approx")  # the same counts on every machine


def _big_frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(rows), "text": np.where(np.arange(rows) % 2, "great value", "too loud | broke\nfast"),
                         "score": np.linspace(0, 1, rows)})


def test_a_million_row_dataframe_stays_within_the_budget_and_is_fast():
    frame = _big_frame(1_000_000)
    started = time.perf_counter()
    text = render_value(frame, 500)
    elapsed = time.perf_counter() - started
    print(f"\n[measure] {{df}} of 1 000 000 rows: {count_tokens(text)} tokens in {elapsed * 1000:.0f} ms")
    assert count_tokens(text) <= 500 and elapsed < 1.0
    dtypes = ", ".join(f"{name} {dtype}" for name, dtype in frame.dtypes.items())  # text: object, or str on pandas 3
    assert text.startswith(f"DataFrame: 1 000 000 rows × 3 columns\ndtypes: {dtypes}\n\n|  | id | text | score |")
    assert "| 0 | 0 | too loud \\| broke fast | 0 |" in text  # escaped pipe, no line break inside a cell
    assert text.rstrip().endswith("of 1 000 000 rows shown]")


@pytest.mark.parametrize("budget", [60, 200, 3000])
def test_dataframe_rows_shrink_to_fit(budget):
    text = render_value(_big_frame(100), budget)
    assert count_tokens(text) <= budget
    assert ("| 0 |" in text) == (budget >= 200)


def test_small_values_are_written_as_they_are():
    assert render_value(42) == "42" and render_value("short text") == "short text"
    assert render_value(3.5) == "3.5" and render_value(None) == "None"
    assert render_value([1, 2, 3]) == "[1, 2, 3]" and render_value({"a": 1}) == "{'a': 1}"
    assert render_value((1,)) == "(1)"  # items, not Python syntax: a one-tuple has no trailing comma


def test_long_text_lists_and_dicts_are_cut_with_a_note():
    long = "word " * 10_000
    text = render_value(long, 300)
    assert count_tokens(text) <= 300 and "[… cut: the first" in text and "of 50 000 characters are shown]" in text
    items = render_value(list(range(1_000_000)), 200)
    assert count_tokens(items) <= 200 and items.startswith("[0, 1, 2") and "of 1 000 000 items are shown]" in items
    mapping = render_value({f"key{i}": "v" * 500 for i in range(1000)}, 300)
    assert count_tokens(mapping) <= 300 and "of 1 000 keys are shown]" in mapping
    assert "…" in mapping  # each value cut to one line's worth


def test_series_arrays_and_nested_frames():
    series = render_value(pd.Series(range(10_000), name="n"), 200)
    assert series.startswith("Series 'n': 10 000 values, dtype int64") and count_tokens(series) <= 200
    array = render_value(np.arange(1_000_000).reshape(1000, 1000), 300)
    assert array.startswith("array of shape (1000, 1000), dtype int64") and "..." in array
    nested = render_value([_big_frame(10), list(range(100))], 300)
    assert nested == "[<DataFrame of shape (10, 3)>, <list of 100 items>]"


@settings(max_examples=40, deadline=None)
@given(value=st.recursive(st.none() | st.integers() | st.text(max_size=400),
                          lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner, max_size=30),
                          max_leaves=200),
       budget=st.integers(40, 400))
def test_any_value_fits_its_budget(value, budget):
    assert count_tokens(render_value(value, budget)) <= budget


def test_markdown_table_escapes_cells():
    assert markdown_table([["1", "a|b\nc"]], ["id", "text"]) == "| id | text |\n|---|---|\n| 1 | a\\|b c |"


def test_placeholders_use_the_renderer_only_for_plain_fields():
    frame = _big_frame(1000)
    out = interpolate("{df} / {n:.1f} / {n!r}", {"df": frame, "n": 2}, render=lambda v: f"<{type(v).__name__}>")
    assert out == "<DataFrame> / 2.0 / 2"


# ---- rows in -------------------------------------------------------------------------------------------
def test_rows_from_frames_dicts_and_strings():
    assert table_rows(pd.DataFrame({"a": [1, 2], 3: ["x", "y"]})) == [{"a": 1, "3": "x"}, {"a": 2, "3": "y"}]
    assert table_rows([{"text": "hi"}, {"text": "yo", "n": 1}]) == [{"text": "hi"}, {"text": "yo", "n": 1}]
    assert table_rows(["good", "bad"]) == [{"text": "good"}, {"text": "bad"}]
    for bad in ("a string", 42, [1, 2]):
        with pytest.raises(ConfigurationError):
            table_rows(bad)


def test_fill_row_reads_columns_then_the_namespace_and_keeps_json_braces():
    row = {"text": "Loud but fine", "review id": 7}
    prompt = fill_row('Label {text!r} for {who} as JSON {{"label": ?}} (row {row["review id"]})', row, {"who": "QA"})
    assert prompt == 'Label \'Loud but fine\' for QA as JSON {"label": ?} (row 7)'
    with pytest.raises(ConfigurationError, match="'stars' is not defined"):
        fill_row("{stars}", row, {})


# ---- columns out ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Label:
    label: str
    confidence: float


class LabelModel(BaseModel):
    label: str
    confidence: float


@dataclasses.dataclass
class Parsed(Response):
    """A Response that carries parsed fields, as a structured-output answer will."""

    parsed: object = None


@pytest.mark.parametrize("parsed", [{"label": "pos", "confidence": 0.9}, LabelModel(label="pos", confidence=0.9),
                                    Label("pos", 0.9)])
def test_parsed_fields_become_columns(parsed):
    results = [Parsed('{"label": "pos"}', parsed=parsed), Failure(ValueError("boom")), None, Response("plain")]
    columns = answer_columns(results, "sentiment")
    assert columns == {
        "sentiment": ['{"label": "pos"}', None, None, "plain"],
        "sentiment_error": [None, "ValueError: boom", None, None],
        "sentiment.label": ["pos", None, None, None],
        "sentiment.confidence": [0.9, None, None, None],
    }


def test_columns_go_into_the_frame_or_a_new_one():
    frame = pd.DataFrame({"text": ["a", "b"]})
    out = write_columns(frame, table_rows(frame), answer_columns([Response("x"), Response("y")], "s"))
    assert out is frame and list(frame.columns) == ["text", "s"]  # no error column when nothing failed
    write_columns(frame, table_rows(frame), answer_columns([Response("x"), Failure(KeyError("k"))], "s"))
    assert pd.isna(frame["s_error"][0]) and frame["s_error"][1] == "KeyError: 'k'" and pd.isna(frame["s"][1])
    write_columns(frame, table_rows(frame), answer_columns([Response("x"), Response("z")], "s"))
    assert frame["s_error"].isna().all()  # a rerun that succeeds clears the old errors
    new = write_columns(["p", "q"], table_rows(["p", "q"]), answer_columns([Response("1"), Response("2")], "n"))
    assert list(new.columns) == ["text", "n"] and list(new["n"]) == ["1", "2"]
