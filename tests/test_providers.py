"""Pure provider code: request building, stream events and error classification, table-driven; and any
JSON value in any position of any event or answer, property-based."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbllm import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NbllmError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from nbllm._client.providers import (
    AnthropicProvider,
    CallSpec,
    MalformedAnswer,
    OpenAIProvider,
    StreamState,
    resolve_model,
)
from nbllm._types import normalize_messages


def spec(**kw):
    base = dict(model="m", messages=normalize_messages("Hi", system="Be brief"), stream=True)
    base.update(kw)
    return CallSpec(**base)


@pytest.mark.parametrize(
    "model, provider, expected",
    [
        ("openai:gpt-4o-mini", None, ("openai", "gpt-4o-mini", None)),
        ("anthropic:claude-haiku-4-5", None, ("anthropic", "claude-haiku-4-5", None)),
        ("claude-sonnet-4", None, ("anthropic", "claude-sonnet-4", None)),
        ("gpt-4o", None, ("openai", "gpt-4o", None)),
        ("llama3:8b", None, ("openai", "llama3:8b", None)),  # an Ollama tag is not a prefix
        ("ollama:llama3:8b", None, ("openai", "llama3:8b", "http://localhost:11434/v1")),
        ("deepseek:deepseek-chat", None, ("openai", "deepseek-chat", "https://api.deepseek.com/v1")),
        ("my-model", "anthropic", ("anthropic", "my-model", None)),
    ],
)
def test_resolve_model(model, provider, expected):
    assert resolve_model(model, provider) == expected


def test_resolve_model_rejects_unknown_provider():
    with pytest.raises(ConfigurationError, match="Unknown provider"):
        resolve_model("x", "cohere")


def test_openai_request_shape():
    request = OpenAIProvider("http://h/v1").build_request(
        spec(temperature=0.2, max_tokens=5, stop=["\n"], extra={"top_p": 0.9}), "sk-test"
    )
    assert request.url == "http://h/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief"}
    assert (request.body["temperature"], request.body["max_tokens"], request.body["stop"], request.body["top_p"]) == (0.2, 5, ["\n"], 0.9)


@pytest.mark.parametrize("auth, header, value", [("bearer", "authorization", "Bearer sk-ant"), ("x-api-key", "x-api-key", "sk-ant")])
def test_anthropic_request_shape(auth, header, value):
    request = AnthropicProvider("http://h", auth_header=auth).build_request(spec(stop=["END"]), "sk-ant")
    assert request.url == "http://h/v1/messages"
    assert request.headers[header] == value
    assert request.headers["anthropic-version"]
    assert request.body["system"] == "Be brief"
    assert all(m["role"] != "system" for m in request.body["messages"])
    assert request.body["max_tokens"] > 0 and request.body["stop_sequences"] == ["END"]


def test_anthropic_rejects_unknown_auth_header():
    with pytest.raises(ConfigurationError):
        AnthropicProvider(auth_header="basic")  # type: ignore[arg-type]


def feed_all(provider, events):
    state, texts = StreamState(), []
    for event, data in events:
        text = provider.feed_event(state, event, data if isinstance(data, str) else json.dumps(data))
        if text:
            texts.append(text)
    return state, texts


def chunk(content=None, finish=None, usage=None, choices=True):
    body = {"model": "m", "usage": usage}
    body["choices"] = [{"delta": {"content": content} if content is not None else {"role": "assistant"}, "finish_reason": finish}] if choices else []
    return ("message", body)


OPENAI_STREAMS = [
    # (name, events, text, finish, usage, complete)
    ("plain", [chunk(), chunk("Hel"), chunk("lo"), chunk(finish="stop"), chunk(usage={"prompt_tokens": 3, "completion_tokens": 2}, choices=False), ("message", "[DONE]")],
     "Hello", "stop", (3, 2), True),
    ("no usage chunk", [chunk("a"), chunk(finish="length"), ("message", "[DONE]")], "a", "length", (0, 0), True),
    ("null content (tool call)", [chunk(None), ("message", {"choices": [{"delta": {"content": None, "tool_calls": []}}]}), chunk("x"), ("message", "[DONE]")],
     "x", None, (0, 0), True),
    ("cut off", [chunk("par"), chunk("tial")], "partial", None, (0, 0), False),
]


@pytest.mark.parametrize("name, events, text, finish, usage, complete", OPENAI_STREAMS, ids=[s[0] for s in OPENAI_STREAMS])
def test_openai_stream(name, events, text, finish, usage, complete):
    state, _ = feed_all(OpenAIProvider(), events)
    assert (state.text, state.finish_reason, (state.usage.prompt_tokens, state.usage.completion_tokens), state.complete) == (text, finish, usage, complete)


def test_openai_error_inside_200_stream():
    with pytest.raises(ServerError):
        feed_all(OpenAIProvider(), [chunk("a"), ("message", {"error": {"message": "boom", "type": "server_error"}})])


ANTHROPIC_STREAM = [
    ("message_start", {"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
    ("brand_new_event", {"type": "brand_new_event", "whatever": 1}),
    ("content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " there"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
    ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}}),
    ("message_stop", {"type": "message_stop"}),
]


def test_anthropic_stream_all_event_types():
    state, texts = feed_all(AnthropicProvider(), ANTHROPIC_STREAM)
    assert texts == ["Hi", " there"]
    assert (state.finish_reason, state.usage.prompt_tokens, state.usage.completion_tokens) == ("end_turn", 7, 5)
    assert state.complete and state.model == "claude"


def test_anthropic_stream_without_message_stop_is_incomplete():
    state, _ = feed_all(AnthropicProvider(), ANTHROPIC_STREAM[:-1])
    assert not state.complete


def test_anthropic_error_event():
    with pytest.raises(ServerError, match="overloaded"):
        feed_all(AnthropicProvider(), [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}})])


OPENAI_ERRORS = [
    (401, {"error": {"message": "Incorrect API key provided: sk-abcdefghijklmnop1234", "type": "invalid_request_error", "code": "invalid_api_key"}}, AuthenticationError),
    (429, {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}, QuotaExhaustedError),
    (429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}, RateLimitError),
    (400, {"error": {"message": "bad model", "type": "invalid_request_error"}}, BadRequestError),
    (404, {"error": "model not found"}, BadRequestError),  # Ollama-style bare string
    (500, {"error": {"message": "oops", "type": "server_error"}}, ServerError),
    (503, "<html>gateway</html>", ServerError),
]


@pytest.mark.parametrize("status, body, cls", OPENAI_ERRORS)
def test_openai_errors(status, body, cls):
    error = OpenAIProvider().error_from_response(status, body if isinstance(body, str) else json.dumps(body))
    assert type(error) is cls and error.status == status
    assert "sk-abcdefghijklmnop1234" not in str(error)


ANTHROPIC_ERRORS = [
    (401, "authentication_error", AuthenticationError),
    (403, "permission_error", AuthenticationError),
    (402, "billing_error", QuotaExhaustedError),
    (429, "rate_limit_error", RateLimitError),
    (529, "overloaded_error", ServerError),
    (400, "invalid_request_error", BadRequestError),
    (418, "", BadRequestError),
]


@pytest.mark.parametrize("status, kind, cls", ANTHROPIC_ERRORS)
def test_anthropic_errors(status, kind, cls):
    body = json.dumps({"type": "error", "error": {"type": kind, "message": "m"}})
    error = AnthropicProvider().error_from_response(status, body, retry_after=2.0)
    assert type(error) is cls and error.retry_after == 2.0
    assert isinstance(error, ProviderError)


# ---- any JSON value in any position of any event gives text or a clear error ---------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
OPENAI_EVENTS = [
    {"id": "c", "model": "gpt", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    {"id": "c", "model": "gpt", "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
    {"id": "c", "model": "gpt", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "c", "model": "gpt", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    {"error": {"message": "overloaded", "type": "server_error", "code": None}},
]
ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 3, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2, "input_tokens": 3}},
    {"type": "message_stop"},
    {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
]
COMPLETIONS = {
    "openai": {"model": "gpt", "choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
    "anthropic": {"model": "claude", "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 3, "output_tokens": 1}},
}
PROVIDERS = {"openai": OpenAIProvider(), "anthropic": AnthropicProvider()}


def _paths(value, path=()):
    """Every position in a JSON tree, the root included."""
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, (*path, key))


def _replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(copy[path[0]], path[1:], new)
    return copy


@st.composite
def _one_value_replaced(draw, values):
    """``values`` with one position of one of them (any depth, or the whole) replaced by any JSON value."""
    index = draw(st.integers(0, len(values) - 1))
    path = draw(st.sampled_from(list(_paths(values[index]))))
    out = list(values)
    out[index] = _replaced(values[index], path, draw(JSON_VALUES))
    return out


def _check_state(state: StreamState) -> None:
    assert all(isinstance(part, str) for part in state.text_parts)
    assert state.finish_reason is None or isinstance(state.finish_reason, str)
    assert isinstance(state.model, str)
    for count in (state.usage.prompt_tokens, state.usage.completion_tokens):
        assert type(count) is int and 0 <= count < 2**63  # fits a SQLite INTEGER


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_json_in_any_event_gives_text_or_a_clear_error(wire, data):
    events = data.draw(_one_value_replaced(OPENAI_EVENTS if wire == "openai" else ANTHROPIC_EVENTS))
    state = StreamState()
    for event in events:
        try:
            text = PROVIDERS[wire].feed_event(state, "message", json.dumps(event))
        except (NbllmError, MalformedAnswer):
            break  # a provider error, or a malformed stream the client retries
        assert text is None or (isinstance(text, str) and text)
    _check_state(state)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_json_in_any_position_of_a_completion_gives_text_or_a_clear_error(wire, data):
    (body,) = data.draw(_one_value_replaced([COMPLETIONS[wire]]))
    try:
        completion = PROVIDERS[wire].parse_completion(body)
    except (NbllmError, MalformedAnswer):
        return
    assert isinstance(completion.text, str) and isinstance(completion.model, str)
    assert completion.finish_reason is None or isinstance(completion.finish_reason, str)
    state = StreamState(usage=completion.usage)
    _check_state(state)
