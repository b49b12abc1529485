"""Structured outputs in the simulator: schema instances, request shapes, broken JSON, re-asks, and the official SDKs."""

from __future__ import annotations

import enum
import json
from typing import Literal, Optional

import anthropic
import jsonschema
import openai
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbllm._sim import Faults, SimConfig, Simulator
from nbllm._sim._brokenjson import (
    KINDS,
    break_object,
    forced_kind,
    json_fault,
    kinds_for,
    partial_object,
)
from nbllm._sim._names import Hints
from nbllm._sim._requests import BadRequest, parse_anthropic, parse_openai
from nbllm._sim._respond import parse_answer_json, read_turns, respond
from nbllm._sim._schema import instance
from nbllm._sim._structured import Shape, anthropic_shape, openai_shape, schema_in_text

FAST = dict(ttft=0.0, tokens_per_second=0.0)
ALWAYS_RIGHT = (1.0, 0.0, 0.0)
VALIDATOR = jsonschema.Draft202012Validator


class Math(pydantic.BaseModel):
    expression: str
    result: int


MATH_SCHEMA = {
    "type": "object",
    "properties": {"expression": {"type": "string"}, "result": {"type": "integer"}},
    "required": ["expression", "result"],
    "additionalProperties": False,
}


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _valid(instance_: object, schema: dict) -> bool:
    return VALIDATOR(schema, format_checker=VALIDATOR.FORMAT_CHECKER).is_valid(instance_)


def _openai_body(prompt: str, schema: dict = MATH_SCHEMA, strict: bool = True, **extra: object) -> dict:
    response_format = {"type": "json_schema", "json_schema": {"name": "Math", "schema": schema, "strict": strict}}
    return {"model": "m", "messages": _user(prompt), "response_format": response_format, **extra}


def _tool_body(prompt: str, schema: dict = MATH_SCHEMA, **extra: object) -> dict:
    tools = [{"name": "record", "description": "Record the answer.", "input_schema": schema}]
    body = {"model": "c", "max_tokens": 200, "messages": _user(prompt), "tools": tools}
    return {**body, "tool_choice": {"type": "tool", "name": "record"}, **extra}


def _always(key: str) -> bool:
    return True


# ---------------------------------------------------------------- pure: schema -> instance

_NAMES = st.sampled_from(
    ["result", "expression", "name", "email", "age", "city", "summary", "score", "id", "tags", "created_at",
     "is_valid", "count", "price", "title", "x", "field_one", "firstName"]
)
_FORMATS = st.sampled_from([None, "date", "date-time", "email", "uuid", "ipv4", "ipv6", "time"])


@st.composite
def _string_schema(draw: st.DrawFn) -> dict:
    schema: dict = {"type": "string"}
    fmt = draw(_FORMATS)
    if fmt:
        return {**schema, "format": fmt}
    low = draw(st.integers(0, 12))
    if draw(st.booleans()):
        schema["minLength"] = low
    if draw(st.booleans()):
        schema["maxLength"] = low + draw(st.integers(0, 30))
    return schema


@st.composite
def _number_schema(draw: st.DrawFn) -> dict:
    integer = draw(st.booleans())
    schema: dict = {"type": "integer" if integer else "number"}
    low = draw(st.integers(-1000, 1000))
    width = draw(st.integers(0, 500))
    style = draw(st.sampled_from(["none", "inclusive", "exclusive", "min_only", "max_only"]))
    if style == "inclusive":
        schema.update(minimum=low, maximum=low + width)
    elif style == "exclusive":
        schema.update(exclusiveMinimum=low, exclusiveMaximum=low + width + 2)
    elif style == "min_only":
        schema["minimum"] = low
    elif style == "max_only":
        schema["maximum"] = low
    if integer and style in ("none", "min_only", "max_only") and draw(st.booleans()):
        schema["multipleOf"] = draw(st.integers(1, 12))
    return schema


_SCALARS = st.one_of(
    _string_schema(),
    _number_schema(),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans()), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    ),
    st.integers(0, 9).map(lambda v: {"const": v}),
)


def _composites(children: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    objects = st.dictionaries(_NAMES, children, max_size=5).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)) if props else st.nothing(), unique=True).map(
            lambda required: {"type": "object", "properties": props, "required": required, "additionalProperties": False}
        )
    )
    arrays = st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
    )
    any_of = st.lists(children, min_size=1, max_size=3).map(lambda options: {"anyOf": options})
    nullable = children.filter(lambda s: isinstance(s.get("type"), str) and s["type"] != "null").map(
        lambda s: {**s, "type": [s["type"], "null"]}
    )
    return st.one_of(objects, arrays, any_of, nullable)


_SCHEMAS = st.recursive(_SCALARS, _composites, max_leaves=12)


@st.composite
def _rooted(draw: st.DrawFn) -> dict:
    """A schema, sometimes moved into $defs and referenced the way Pydantic does it."""
    body = draw(_SCHEMAS)
    if draw(st.booleans()):
        return {"$defs": {"Body": body}, "type": "object", "properties": {"body": {"$ref": "#/$defs/Body"}},
                "required": ["body"]}
    return body


_HINTS = st.builds(
    Hints,
    expression=st.one_of(st.none(), st.just("3 + 4")),
    value=st.one_of(st.none(), st.integers(-100, 100), st.floats(-10, 10, allow_nan=False)),
    text=st.text(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_rooted(), hints=_HINTS, seed=st.integers(0, 2**32))
def test_generated_instances_validate(schema: dict, hints: Hints, seed: int) -> None:
    value = instance(schema, hints, seed)
    assert _valid(value, schema), (schema, value)
    assert instance(schema, hints, seed) == value  # deterministic


class Mood(str, enum.Enum):
    happy = "happy"
    sad = "sad"


class Address(pydantic.BaseModel):
    street: str
    city: str
    zip_code: Optional[str] = None


class Person(pydantic.BaseModel):
    name: str
    email: str
    age: int = pydantic.Field(ge=0, le=130)
    mood: Mood
    kind: Literal["customer", "employee"]
    address: Address
    previous: list[Address]
    score: float | None


class Tree(pydantic.BaseModel):
    label: str
    children: list["Tree"]


@pytest.mark.parametrize("model", [Math, Person, Tree])
def test_pydantic_schemas_give_instances_pydantic_accepts(model: type[pydantic.BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(20):
        value = instance(schema, Hints("6 x 7", 42, "A sentence."), seed)
        model.model_validate(value)
        assert _valid(value, schema)


def test_named_fields_are_meaningful() -> None:
    value = instance(Person.model_json_schema(), Hints(), 3)
    assert "@" in value["email"] and " " in value["name"] and 0 <= value["age"] <= 130
    math = instance(MATH_SCHEMA, Hints("37 + 12 x 5", 97, "37 + 12 x 5 = 97"), 0)
    assert math == {"expression": "37 + 12 x 5", "result": 97}
    assert instance({"type": "object", "properties": {"explanation": {"type": "string"}}}, Hints(text="Why."), 0) == {
        "explanation": "Why."
    }


# ---------------------------------------------------------------- pure: request shapes


@pytest.mark.parametrize(
    ("response_format", "messages", "message"),
    [
        ({"type": "json_object"}, _user("Give me an object"), "must contain the word 'json'"),
        ({"type": "xml"}, _user("x"), "Supported values are"),
        ({"type": "json_schema"}, _user("x"), "Missing required parameter"),
        ({"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}, _user("x"), "name"),
        (
            {"type": "json_schema", "json_schema": {"name": "M", "strict": True,
                                                    "schema": {**MATH_SCHEMA, "additionalProperties": True}}},
            _user("x"),
            "'additionalProperties' is required to be supplied and to be false",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "M", "strict": True,
                                                    "schema": {**MATH_SCHEMA, "required": ["result"]}}},
            _user("x"),
            "Missing 'expression'",
        ),
        ({"type": "json_schema", "json_schema": {"name": "M", "strict": True, "schema": {"type": "array"}}},
         _user("x"), "type: \"object\""),
    ],
)
def test_openai_shape_rejects_like_openai(response_format: dict, messages: list, message: str) -> None:
    with pytest.raises(BadRequest) as info:
        openai_shape(response_format, messages)
    assert message in info.value.message


def test_openai_shape_modes_and_support_knob() -> None:
    strict = {"type": "json_schema", "json_schema": {"name": "Math", "schema": MATH_SCHEMA, "strict": True}}
    assert openai_shape(strict, _user("x")) == Shape("json_schema", MATH_SCHEMA, True, "Math")
    assert openai_shape({"type": "json_object"}, _user("Answer in JSON")) == Shape("json_object")
    assert openai_shape({"type": "text"}, _user("x")) is None
    assert openai_shape(strict, _user("x"), support="ignore") is None
    with pytest.raises(BadRequest) as info:
        openai_shape({"type": "text"}, _user("x"), support="reject")
    assert info.value.param == "response_format"
    assert openai_shape(None, _user("x"), support="reject") is None


def test_anthropic_shape() -> None:
    tools = [{"name": "a", "input_schema": MATH_SCHEMA}, {"name": "b", "input_schema": {"type": "object"}, "strict": True}]
    assert anthropic_shape(tools, {"type": "tool", "name": "b"}) == Shape("tool", {"type": "object"}, True, "b")
    assert anthropic_shape(tools, {"type": "any"}).name == "a"
    assert anthropic_shape(tools, {"type": "auto"}) is None and anthropic_shape(tools, None) is None
    assert anthropic_shape(None, None, {"format": {"type": "json_schema", "schema": MATH_SCHEMA}}).strict
    for bad_tools, choice in (
        (tools, {"type": "tool", "name": "missing"}),
        ([{"name": "a", "input_schema": {"type": "array"}}], {"type": "any"}),
        (None, {"type": "any"}),
        (tools, {"type": "sometimes"}),
    ):
        with pytest.raises(BadRequest):
            anthropic_shape(bad_tools, choice)


def test_schema_quoted_in_a_prompt_is_found() -> None:
    prompt = f"What is 3 + 4? Answer with JSON matching this schema: {json.dumps(MATH_SCHEMA)}"
    assert schema_in_text(prompt) == MATH_SCHEMA
    assert schema_in_text('Fill in {"expression": "1 + 1", "result": ?}') is None
    assert schema_in_text("no braces here") is None


# ---------------------------------------------------------------- pure: broken JSON


@pytest.mark.parametrize("kind", KINDS)
def test_every_broken_kind_fails_validation(kind: str) -> None:
    directive = f"[[sim:broken_json_{kind}]]"
    prompt_json = f'Return JSON {{"expression": "2 x 6", "result": ?}} {directive}'
    native = _openai_body(f"What is 2 x 6? {directive}", strict=False)
    for body in ({"model": "m", "messages": _user(prompt_json)}, native):
        reply = respond(parse_openai(body), SimConfig(), _always)
        text = reply.done.text
        assert parse_answer_json(text) is None or not _valid(parse_answer_json(text), MATH_SCHEMA), text
        assert (reply.done.finish == "length") == (kind == "truncated")
    tool = respond(parse_anthropic(_tool_body(f"What is 2 x 6? {directive}")), SimConfig(), _always).tool
    assert tool is not None and not _valid(tool.input, MATH_SCHEMA)  # single_quotes becomes wrong_type in a tool


def test_break_object_and_partial_object_tables() -> None:
    obj = {"expression": "3+4", "result": 7}
    assert break_object(obj, "wrong_type") == {"expression": "3+4", "result": "seven"}
    assert break_object(obj, "missing_field") == {"expression": "3+4"}
    assert break_object({"a": "x", "b": 1}, "wrong_type", {"required": ["b"]}) == {"a": "x", "b": "one"}
    assert break_object({}, "wrong_type") == []
    for text, expected in [
        ('{"a": 1, "b": "x\\"y", "c": [1, 2', {"a": 1, "b": 'x"y', "c": [1, 2]}),
        ('{"a": 1, "b": "hel', {"a": 1}),
        ('{"a', {}),
        ('{"a": {"b": 2}, "c"', {"a": {"b": 2}}),
        ("", {}),
    ]:
        assert partial_object(text) == expected


def test_kinds_follow_the_mode_and_directives_parse() -> None:
    assert kinds_for(None) == KINDS
    assert kinds_for(Shape("json_schema", {}, True)) == ("truncated",)
    assert "single_quotes" not in kinds_for(Shape("tool", {}, False))
    assert forced_kind("x [[sim:broken_json]]") == ("", False)
    assert forced_kind("[[sim:broken_json_missing_field:once]]") == ("missing_field", True)
    assert forced_kind("[[sim:500]]") is None


def test_json_fault_rolls_per_conversation_at_its_rate() -> None:
    faults = Faults(broken_json=0.3, broken_json_on_reask=0.0)
    rolls = [json_fault(faults, KINDS, 0, h, reask=False) for h in range(2000)]
    assert 500 <= sum(r is not None for r in rolls) <= 700
    assert {r for r in rolls if r} == set(KINDS)
    assert all(json_fault(faults, KINDS, 0, h, reask=True) is None for h in range(2000))
    only_truncation = [json_fault(faults, ("truncated",), 0, h, reask=False) for h in range(200)]
    assert {r for r in only_truncation if r} == {"truncated"}


def _reask(prompt: str, bad_answer: str, error: str) -> list[dict]:
    return [*_user(prompt), {"role": "assistant", "content": bad_answer}, {"role": "user", "content": error}]


def test_a_reask_rolls_again_and_is_fixed_by_default() -> None:
    broken_first = 0
    for i in range(60):
        prompt = f"What is {i} + 5?"
        config = SimConfig(faults=Faults(broken_json=1.0))
        first = respond(parse_openai(_openai_body(prompt, strict=False)), config, _always).done.text
        broken_first += parse_answer_json(first) is None or not _valid(parse_answer_json(first), MATH_SCHEMA)
        again = _openai_body(prompt, strict=False)
        again["messages"] = _reask(prompt, first, "Your JSON failed validation: 'result' is required. Fix it.")
        fixed = respond(parse_openai(again), config, _always).done.text
        assert json.loads(fixed) == {"expression": f"{i} + 5", "result": i + 5}
    assert broken_first == 60
    rolls = set()
    for i in range(40):  # same prompt, different error messages: each re-ask rolls on its own
        again = _openai_body("What is 1 + 1?", strict=False)
        again["messages"] = _reask("What is 1 + 1?", "{}", f"Validation error #{i}: fix the JSON.")
        config = SimConfig(faults=Faults(broken_json_on_reask=0.5))
        text = respond(parse_openai(again), config, _always).done.text
        rolls.add(parse_answer_json(text) is not None and _valid(parse_answer_json(text), MATH_SCHEMA))
    assert rolls == {True, False}


def test_wrong_arithmetic_is_fixed_on_a_reask() -> None:
    prompt = 'Compute 3 + 4 and answer {"expression": "3 + 4", "result": ?}'
    config = SimConfig(arithmetic_accuracy=(0.0, 0.0, 1.0))
    wrong = respond(parse_openai({"model": "m", "messages": _user(prompt)}), config, _always).done.text
    assert parse_answer_json(wrong)["result"] != 7
    messages = _reask(prompt, wrong, "That is wrong: result must equal 3+4.")
    fixed = respond(parse_openai({"model": "m", "messages": messages}), config, _always).done.text
    assert parse_answer_json(fixed) == {"expression": "3 + 4", "result": 7}
    stubborn = SimConfig(arithmetic_accuracy=(0.0, 0.0, 1.0), arithmetic_accuracy_on_reask=(0.0, 0.0, 1.0))
    assert parse_answer_json(respond(parse_openai({"model": "m", "messages": messages}), stubborn, _always).done.text)[
        "result"
    ] != 7


@pytest.mark.parametrize(
    ("messages", "question", "reask"),
    [
        (_user("What is 2 + 2?"), "What is 2 + 2?", False),
        (_reask("Q1 {json}", "bad", "Validation error: result missing"), "Q1 {json}", True),
        (_reask("Q1", "answer", "Now tell me about owls."), "Now tell me about owls.", True),
        (
            [*_reask("Q1", "bad", "Invalid JSON, fix it"), {"role": "assistant", "content": "bad"},
             {"role": "user", "content": "Still invalid: 'result' must be an integer"}],
            "Q1",
            True,
        ),
        (
            [*_user("Q1"), {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "r", "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                           "content": "Validation Error found: field required"}]}],
            "Q1",
            True,
        ),
    ],
)
def test_read_turns_finds_the_question(messages: list, question: str, reask: bool) -> None:
    turns = read_turns(messages)
    assert (turns.question, turns.reask) == (question, reask)


def test_max_tokens_cuts_json_answers() -> None:
    reply = respond(parse_openai(_openai_body("What is 3 + 4?", max_tokens=2)), SimConfig(), _always)
    assert reply.done.finish == "length" and parse_answer_json(reply.done.text) is None
    tool = respond(parse_anthropic(_tool_body("What is 3 + 4?", max_tokens=4)), SimConfig(), _always)
    assert tool.done.finish == "length" and tool.tool.input == {"expression": "3 + 4"}


# ---------------------------------------------------------------- the official SDKs against the server


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(arithmetic_accuracy=ALWAYS_RIGHT, **FAST)) as running:
        yield running


@pytest.fixture
def oai(sim: Simulator):
    client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-test", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def claude(sim: Simulator):
    client = anthropic.Anthropic(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def test_openai_json_schema_plain_and_streamed(oai: openai.OpenAI) -> None:
    body = _openai_body("What is 12 x 7 - 3?")
    reply = oai.chat.completions.create(model="m", messages=body["messages"], response_format=body["response_format"])
    assert json.loads(reply.choices[0].message.content) == {"expression": "12 x 7 - 3", "result": 81}
    stream = oai.chat.completions.create(
        model="m", messages=body["messages"], response_format=body["response_format"], stream=True
    )
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([c for c in chunks if c]) > 2 and json.loads("".join(chunks))["result"] == 81


def test_openai_parse_with_pydantic(oai: openai.OpenAI) -> None:
    parsed = oai.chat.completions.parse(model="m", messages=_user("What is 6 x 7?"), response_format=Math)
    assert parsed.choices[0].message.parsed == Math(expression="6 x 7", result=42)
    person = oai.chat.completions.parse(model="m", messages=_user("Invent a customer."), response_format=Person)
    assert isinstance(person.choices[0].message.parsed, Person)
    with oai.chat.completions.stream(model="m", messages=_user("What is 2 + 2?"), response_format=Math) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in events and final.choices[0].message.parsed == Math(expression="2 + 2", result=4)
    with pytest.raises(openai.LengthFinishReasonError):
        oai.chat.completions.parse(model="m", messages=_user("What is 6 x 7?"), response_format=Math, max_tokens=2)
    with pytest.raises(pydantic.ValidationError):
        oai.chat.completions.parse(
            model="m", messages=_user("What is 6 x 7? [[sim:broken_json_missing_field]]"), response_format=Math
        )


def test_openai_json_object_mode(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model="m",
        messages=_user('Describe a person as JSON: {"name": "?", "age": ?, "city": "?"}'),
        response_format={"type": "json_object"},
    )
    person = json.loads(reply.choices[0].message.content)
    assert set(person) == {"name", "age", "city"} and isinstance(person["age"], int)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="m", messages=_user("hi"), response_format={"type": "json_object"})
    assert info.value.param == "messages"


def test_servers_that_reject_or_ignore_response_format() -> None:
    rf = _openai_body("x")["response_format"]
    with Simulator(SimConfig(response_format="reject", **FAST)) as rejecting:
        client = openai.OpenAI(base_url=rejecting.base_url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="m", messages=_user("What is 1 + 1?"), response_format=rf)
        assert info.value.param == "response_format" and "response_format" in info.value.message
        client.close()
    with Simulator(SimConfig(response_format="ignore", arithmetic_accuracy=ALWAYS_RIGHT, **FAST)) as ignoring:
        client = openai.OpenAI(base_url=ignoring.base_url + "/v1", api_key="k", max_retries=0)
        prose = client.chat.completions.create(model="m", messages=_user("What is 1 + 1?"), response_format=rf)
        assert parse_answer_json(prose.choices[0].message.content) is None and "2" in prose.choices[0].message.content
        asked = f"What is 5 x 5? Reply with JSON matching this schema: {json.dumps(MATH_SCHEMA)}"
        in_prompt = client.chat.completions.create(model="m", messages=_user(asked), response_format=rf)
        assert parse_answer_json(in_prompt.choices[0].message.content) == {"expression": "5 x 5", "result": 25}
        client.close()


def test_anthropic_forced_tool_plain_and_streamed(claude: anthropic.Anthropic) -> None:
    body = _tool_body("What is 6 x 7?")
    message = claude.messages.create(**body)
    block = message.content[0]
    assert message.stop_reason == "tool_use" and block.type == "tool_use" and block.id.startswith("toolu_")
    assert (block.name, block.input) == ("record", {"expression": "6 x 7", "result": 42})
    with claude.messages.stream(**{**body, "tool_choice": {"type": "any"}}) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events.count("content_block_delta") > 2 and "input_json" in events
    assert final.stop_reason == "tool_use" and final.content[0].input == {"expression": "6 x 7", "result": 42}
    cut = claude.messages.create(**{**body, "max_tokens": 4})
    assert cut.stop_reason == "max_tokens" and cut.content[0].input == {"expression": "6 x 7"}
    text = claude.messages.create(**{**body, "tool_choice": {"type": "auto"}})
    assert text.content[0].type == "text" and text.stop_reason == "end_turn"


def test_anthropic_output_format_parse(claude: anthropic.Anthropic) -> None:
    parsed = claude.messages.parse(model="c", max_tokens=200, messages=_user("What is 9 - 2?"), output_format=Math)
    assert parsed.parsed_output == Math(expression="9 - 2", result=7)


def test_broken_json_then_reask_over_the_wire() -> None:
    with Simulator(SimConfig(faults=Faults(broken_json=1.0), arithmetic_accuracy=ALWAYS_RIGHT, **FAST)) as sim:
        client = anthropic.Anthropic(base_url=sim.base_url, api_key="k", max_retries=0)
        body = _tool_body("What is 8 x 8?", {**MATH_SCHEMA})
        first = client.messages.create(**body)
        assert not _valid(first.content[0].input, MATH_SCHEMA) or first.stop_reason == "max_tokens"
        retry = [
            *body["messages"],
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                          "content": "Validation Error found: fix the errors", "is_error": True}]},
        ]
        second = client.messages.create(**{**body, "messages": retry})
        assert second.content[0].input == {"expression": "8 x 8", "result": 64}
        client.close()
