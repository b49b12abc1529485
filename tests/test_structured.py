"""Structured answers, the pure part: schemas normalised, their strict form, extraction, verdicts, re-asks,
the wire requests and answers of both providers, and the results table. No network here."""

from __future__ import annotations

import json
from datetime import date
from typing import Literal, Optional

import jsonschema
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nbllm
from nbllm._api.results import Results, summarize
from nbllm._client.providers import AnthropicProvider, CallSpec, OpenAIProvider, OutputFormat, StreamState
from nbllm._progress import BatchProgress
from nbllm._structured import (
    NotJSON,
    as_schema,
    correction,
    drop_added_nulls,
    extract_json,
    judge,
    reask_messages,
    strict_schema,
    with_instructions,
)
from nbllm._structured.strict import allows_null
from nbllm._types import Attempt, Failure, Response, Usage


class Result(pydantic.BaseModel):
    expression: str
    result: int


class Inner(pydantic.BaseModel):
    city: str
    zip_code: Optional[str] = None


class Person(pydantic.BaseModel):
    name: str
    age: int = 30
    born: Optional[date] = None
    home: Inner
    tags: list[str] = []
    kind: Literal["a", "b"] = "a"


class Scores(pydantic.BaseModel):
    by_name: dict[str, int]


MATH = {
    "title": "Math answer", "type": "object",
    "properties": {"expression": {"type": "string"}, "result": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["expression", "result"],
}


# ---- schemas ------------------------------------------------------------------------------------------
def test_a_pydantic_model_and_a_dict_normalise_to_a_schema() -> None:
    model, plain = as_schema(Result), as_schema(MATH)
    assert (model.name, model.fields, model.kind) == ("Result", ("expression", "result"), "pydantic")
    assert (plain.name, plain.fields, plain.kind) == ("Math_answer", ("expression", "result", "note"), "json")
    assert as_schema(Result) is model and as_schema(dict(MATH)) is plain  # normalised once, then cached
    assert model.validate({"expression": "1 + 1", "result": 2}) == Result(expression="1 + 1", result=2)
    assert plain.validate({"expression": "1", "result": 2}) == {"expression": "1", "result": 2}
    assert model.dump(Result(expression="x", result=1)) == {"expression": "x", "result": 1}
    assert model.row(Result(expression="x", result=1)) == {"expression": "x", "result": 1}


@pytest.mark.parametrize("bad, message", [
    (Result(expression="x", result=1), "pass the class, not an instance"),
    (str, "Pydantic model class or a JSON Schema dict"),
    ({"type": "array", "items": {"type": "integer"}}, "must describe a JSON object"),
    ({"type": "object", "properties": {"a": {"type": "nonsense"}}}, "not a valid JSON Schema"),
])
def test_wrong_schemas_say_what_to_do(bad, message) -> None:
    with pytest.raises(nbllm.ConfigurationError, match=message):
        as_schema(bad)
    with pytest.raises(nbllm.ConfigurationError, match=message):
        nbllm.LLM("gpt-4o-mini", schema=bad)  # an LLM setting fails at once, not at the first call


@pytest.mark.parametrize("value, errors", [
    ({"expression": "1", "result": "seven"}, ["result: Input should be a valid integer, unable to parse string as an integer (got 'seven')"]),
    ({"expression": "1"}, ["result: Field required"]),
    ([1, 2], ["(root): Input should be a valid dictionary or instance of Result (got [1, 2])"]),
])
def test_pydantic_errors_are_precise(value, errors) -> None:
    with pytest.raises(ValueError) as caught:
        as_schema(Result).validate(value)
    assert caught.value.errors == errors


@pytest.mark.parametrize("value, errors", [
    ({"expression": "1", "result": "seven"}, ["result: 'seven' is not of type 'integer'"]),
    ({"expression": "1"}, ["(root): 'result' is a required property"]),
    ({"expression": 1, "result": 1.5}, ["expression: 1 is not of type 'string'", "result: 1.5 is not of type 'integer'"]),
])
def test_jsonschema_errors_are_precise(value, errors) -> None:
    with pytest.raises(ValueError) as caught:
        as_schema(MATH).validate(value)
    assert caught.value.errors == errors


# ---- the strict form ------------------------------------------------------------------------------------
def _closed_everywhere(node) -> bool:
    if isinstance(node, list):
        return all(_closed_everywhere(n) for n in node)
    if not isinstance(node, dict):
        return True
    if node.get("type") == "object" or "properties" in node:
        if node.get("additionalProperties") is not False or node.get("required") != list(node.get("properties", {})):
            return False
    return all(_closed_everywhere(v) for k, v in node.items() if k not in ("enum", "const", "default"))


@pytest.mark.parametrize("model", [Result, Person, Inner])
def test_strict_form_closes_every_object_and_the_simulator_accepts_it(model) -> None:
    from nbllm._sim._structured import strict_problem

    strict = strict_schema(model.model_json_schema())
    assert strict is not None and _closed_everywhere(strict)
    assert strict_problem(strict) is None  # what the simulator checks, as OpenAI does
    jsonschema.Draft202012Validator.check_schema(strict)


def test_optional_properties_become_nullable_and_nulls_mean_absent() -> None:
    schema = Person.model_json_schema()
    strict = strict_schema(schema)
    assert strict["properties"]["age"] == {"anyOf": [{"default": 30, "title": "Age", "type": "integer"}, {"type": "null"}]}
    born = {k: v for k, v in schema["properties"]["born"].items() if k != "default"}  # a null default is dropped
    assert strict["properties"]["born"] == born  # Optional[...] already allows null: not wrapped again
    answer = {"name": "Ada", "age": None, "born": None, "home": {"city": "Paris", "zip_code": None},
              "tags": None, "kind": None}
    assert drop_added_nulls(answer, schema) == {"name": "Ada", "born": None, "home": {"city": "Paris", "zip_code": None}}
    parsed = as_schema(Person).validate(answer)
    assert (parsed.age, parsed.tags, parsed.kind, parsed.born) == (30, [], "a", None)


def test_open_objects_have_no_strict_form() -> None:
    assert strict_schema(Scores.model_json_schema()) is None  # dict[str, int] needs additionalProperties
    assert strict_schema({"type": "object"}) is None
    assert strict_schema({"type": "object", "properties": {"a": {"type": "object"}}}) is None
    assert as_schema(Scores).strict_schema is None
    assert as_schema(Scores).validate({"by_name": {"a": 1}}).by_name == {"a": 1}


def test_refs_with_siblings_are_inlined_and_null_checks_follow_refs() -> None:
    root = {"type": "object", "$defs": {"N": {"type": ["string", "null"]}},
            "properties": {"x": {"$ref": "#/$defs/N", "description": "d"}, "y": {"$ref": "#/$defs/N"}}}
    strict = strict_schema(root)
    assert strict["properties"]["x"] == {"type": ["string", "null"], "description": "d"}
    assert strict["properties"]["y"] == {"$ref": "#/$defs/N"}  # nullable already: not wrapped
    assert allows_null({"$ref": "#/$defs/N"}, root) and not allows_null({"type": "string"}, root)


# ---- extraction -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ('{"a": 1}', {"a": 1}),
    ('  [1, 2]\n', [1, 2]),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ('Here you go:\n```\n{"a": "}"}\n```\nAnything else?', {"a": "}"}),
    ('Sure! The answer is {"a": {"b": [1, "{"]}} as requested.', {"a": {"b": [1, "{"]}}),
])
def test_extraction_finds_the_object_without_changing_it(text, value) -> None:
    assert extract_json(text) == value


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("The result is 7.", "no JSON object"),
    ("Sure! {'expression': '3 + 4', 'result': 7}", "double quotes"),  # single quotes: re-asked, not repaired
    ('{"a": 1,}', "trailing commas"),
    ('{"expression": "3 + 4", "resu', "incomplete"),                  # cut off: fields lost, re-asked
])
def test_extraction_refuses_what_would_need_a_guess(text, why) -> None:
    with pytest.raises(NotJSON, match=why):
        extract_json(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10),
       st.sampled_from(["", "Sure! ", "Here is the JSON:\n"]), st.sampled_from(["", " Done.", "\nHope that helps!"]))
def test_any_object_amid_prose_or_fenced_comes_back_exactly(value, before, after) -> None:
    obj = {"v": value}
    text = json.dumps(obj, ensure_ascii=False)
    assert extract_json(before + text + after) == obj
    assert extract_json(f"{before}```json\n{json.dumps(obj, indent=2)}\n```{after}") == obj


# ---- verdicts and re-asks -------------------------------------------------------------------------------
def test_judge_table() -> None:
    schema = as_schema(Result)
    ok = judge('{"expression": "1 + 1", "result": 2}', "stop", schema)
    assert ok.ok and ok.parsed.result == 2
    cut = judge('{"expression": "1 + 1", "result": 2}', "length", schema)  # parses, but was cut: not accepted
    assert not cut.ok and cut.truncated and "cut off" in cut.errors[0]
    cut_tool = judge('{"expression": "1 + 1"}', "max_tokens", schema)  # Anthropic's name for it
    assert cut_tool.truncated and cut_tool.errors[1] == "result: Field required"
    wrong = judge('{"expression": "1 + 1", "result": "two"}', "tool_use", schema)
    assert not wrong.truncated and wrong.errors == ("result: Input should be a valid integer, unable to parse string as an integer (got 'two')",)


def test_reask_messages_carry_the_answer_and_every_error() -> None:
    messages = [{"role": "system", "content": "Be exact."}, {"role": "user", "content": "3 + 4?"}]
    out = reask_messages(messages, '{"result": "seven"}', ["result: not an integer", "expression: missing"])
    assert out[:2] == messages and out[2] == {"role": "assistant", "content": '{"result": "seven"}'}
    assert out[3]["role"] == "user" and "- result: not an integer\n- expression: missing" in out[3]["content"]
    assert "validation" in correction(["x"]) and "JSON" in correction(["x"])
    assert reask_messages(messages, "", ["x"])[2]["content"]  # Anthropic refuses an empty assistant turn


def test_instructions_go_to_the_last_user_message_with_the_schema() -> None:
    schema = as_schema(Result)
    out = with_instructions([{"role": "user", "content": "3 + 4?"}, {"role": "assistant", "content": "7"},
                             {"role": "user", "content": "again"}], schema)
    assert out[0]["content"] == "3 + 4?" and out[2]["content"].startswith("again\n\nAnswer with only a JSON object")
    assert json.loads(out[2]["content"].split("\n")[-1]) == schema.json_schema
    blocks = with_instructions([{"role": "user", "content": [{"type": "text", "text": "hi"}]}], schema)
    assert blocks[0]["content"][1]["type"] == "text" and "JSON Schema" in blocks[0]["content"][1]["text"]


# ---- the wire: requests and answers ---------------------------------------------------------------------
def _spec(output: OutputFormat | None, stream: bool = False) -> CallSpec:
    return CallSpec("m", [{"role": "user", "content": "q"}], stream=stream, output=output)


def test_openai_asks_for_the_strict_schema_or_the_plain_one_or_nothing() -> None:
    schema = as_schema(Result)
    strict = OutputFormat(schema.name, schema.json_schema, schema.strict_schema)
    body = OpenAIProvider().build_request(_spec(strict), "k").body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Result", "schema": schema.strict_schema, "strict": True}}
    open_schema = as_schema(Scores)
    loose = OutputFormat(open_schema.name, open_schema.json_schema, None)
    assert OpenAIProvider().build_request(_spec(loose), "k").body["response_format"]["json_schema"]["strict"] is False
    fallback = OutputFormat(schema.name, schema.json_schema, schema.strict_schema, native=False)
    assert "response_format" not in OpenAIProvider().build_request(_spec(fallback), "k").body
    refusal = {"choices": [{"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}]}
    assert OpenAIProvider().parse_completion(refusal).text == "I can't."


def test_anthropic_forces_a_tool_and_reads_its_input_as_the_answer() -> None:
    schema = as_schema(Result)
    body = AnthropicProvider().build_request(_spec(OutputFormat("Result", schema.json_schema)), "k").body
    assert body["tools"][0]["name"] == "Result" and body["tools"][0]["input_schema"] == schema.json_schema
    assert body["tool_choice"] == {"type": "tool", "name": "Result"}
    message = {"content": [{"type": "tool_use", "id": "toolu_1", "name": "Result", "input": {"result": 7}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}}
    done = AnthropicProvider().parse_completion(message)
    assert (json.loads(done.text), done.finish_reason) == ({"result": 7}, "tool_use")
    with_text = {"content": [{"type": "text", "text": "Let me check."}, message["content"][0]]}
    assert AnthropicProvider().parse_completion(with_text).text == "Let me check."  # text wins: tools of your own


def test_anthropic_stream_collects_input_json_deltas_without_showing_them() -> None:
    provider, state = AnthropicProvider(), StreamState()
    events = [
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "tool_use", "id": "t", "name": "Result", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": '{"resu'}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": 'lt": 7}'}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    shown = [provider.feed_event(state, name, json.dumps(payload)) for name, payload in events]
    assert shown == [None] * 5 and state.complete and state.finish_reason == "tool_use"
    assert state.text == "" and state.answer == '{"result": 7}'


# ---- results, summary, progress -------------------------------------------------------------------------
def _answer(parsed: Result | None, *attempts: Attempt, cached: bool = False) -> Response:
    return Response(text="{}", usage=Usage(10, 5), model="gpt-4o-mini", latency=0.5, key_alias="key-1",
                    cached=cached, parsed=parsed, attempts=list(attempts))


def test_results_table_has_one_row_per_prompt_with_the_fields_and_the_bookkeeping() -> None:
    first = Attempt('{"expression": "x", "result": "one"}', ["result: not an integer"], Usage(10, 5), "stop", 0.2, "key-2")
    fine = Attempt("{}", [], Usage(10, 5), "stop", 0.3, "key-1")
    failure = Failure(nbllm.StructuredOutputError("no fit"), "p", attempts=[first, first], text="raw")
    rows = Results([_answer(Result(expression="a", result=1), fine), _answer(Result(expression="b", result=2), first, fine),
                    failure, None], schema=as_schema(Result), model="gpt-4o-mini")
    frame = rows.to_dataframe()
    assert list(frame.columns) == ["expression", "result", "ok", "error", "attempts", "tokens", "latency", "cost",
                                   "key", "cached"]
    assert len(frame) == 4 and list(frame["result"][:2]) == [1, 2] and frame["result"][2:].isna().all()
    assert list(frame["ok"]) == [True, True, False, False] and list(frame["attempts"]) == [1, 2, 2, 0]
    assert frame["error"][2].startswith("StructuredOutputError: no fit") and list(frame["tokens"][:3]) == [15, 15, 30]
    assert frame["cost"][0] > 0 and frame["key"][2] == "key-2"
    summary = rows.summary()
    assert (summary.items, summary.valid_first, summary.repaired, summary.failed) == (4, 1, 1, 2)
    assert (summary.requests, summary.extra_requests, summary.tokens) == (5, 2, 60)
    assert "✎1 repaired" in str(summary) and "5 requests (2 extra)" in str(summary)
    assert failure.errors == ["result: not an integer"] * 2 and failure.usage == Usage(20, 10)


def test_plain_results_have_a_text_column_and_clashing_fields_keep_their_names() -> None:
    frame = Results([_answer(None), _answer(None, cached=True)], model="m").to_dataframe()
    assert list(frame.columns[:3]) == ["text", "ok", "error"] and list(frame["attempts"]) == [1, 1]
    assert summarize([_answer(None), _answer(None, cached=True)]).requests == 1
    clash = as_schema({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
    table = Results([_answer({"ok": False})], schema=clash).to_dataframe()  # type: ignore[arg-type]
    assert list(table.columns[:2]) == ["ok", "nbllm_ok"] and list(table.iloc[0][:2]) == [False, True]


def test_progress_line_shows_valid_repaired_failed() -> None:
    progress = BatchProgress(4, structured=True, clock=lambda: 0.0)
    progress.item_done(ok=True)
    progress.item_done(ok=True, repaired=True)
    progress.item_done(ok=False)
    assert progress.format_line().startswith("3/4 ✓1 ✎1 ✗1 ⟲0")
    assert progress.format_dict()["repaired"] == 1 and progress.format_dict()["ok"] == 1
    plain = BatchProgress(1, clock=lambda: 0.0)
    plain.item_done(ok=True)
    assert plain.format_line().startswith("1/1 ✓1 ✗0 ⟲0") and "repaired" not in plain.format_dict()
