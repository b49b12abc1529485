"""Tests for the simulator: pure answer/tokenizer/bucket/header logic, then the real server via the official SDKs."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction

import anthropic
import httpx2
import openai
import pytest

from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator, default_simulator
from nbllm._sim._answers import answer_text, pick_share
from nbllm._sim._arith import evaluate, fill_template, find_expression
from nbllm._sim._faults import parse_directive, roll_fault, strip_directives
from nbllm._sim._limits import (
    KeyLimiter,
    TokenBucket,
    anthropic_limit_headers,
    format_go_duration,
    format_rfc3339,
    openai_limit_headers,
    retry_headers,
)
from nbllm._sim._pacing import Pacing, plan_pacing, schedule
from nbllm._sim._requests import BadRequest, parse_anthropic, parse_openai
from nbllm._sim._tokens import count_prompt_tokens, finish_answer, tokenize
from nbllm._sim._wire import anthropic_stream, openai_stream

SEED_PROMPT = '请将以下表达式的计算结果返回为 JSON 格式：\n{\n  "expression": "37 + 12 x 5",\n  "result": ?\n}'
FAST = dict(ttft=0.0, tokens_per_second=0.0)
ALWAYS_RIGHT = (1.0, 0.0, 0.0)


def _json_answer(text: str) -> dict:
    """Parse an answer that may be wrapped in ```json fences."""
    return json.loads(re.sub(r"^```json\n|\n```$", "", text.strip()))


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- pure: tokens


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("hello", ["hello"]),
        ("Hello, world!", ["Hello,", " world!"]),
        ("  lead", ["  lead"]),
        ("a\n\nb c ", ["a", "\n\nb", " c"]),
        ('{"x": 1}', ['{"x":', " 1}"]),
    ],
)
def test_tokenize(text: str, pieces: list[str]) -> None:
    assert tokenize(text) == pieces


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [
        (_user("abcd"), "", 1 + 3),
        (_user("abcde"), "", 2 + 3),
        ([{"role": "system", "content": "12345678"}, *_user("1234")], "", 3 + 6),
        (_user("1234"), "12345678", 3 + 6),
        ([{"role": "user", "content": [{"type": "text", "text": "abcdefgh"}]}], "", 2 + 3),
        ([{"role": "user", "content": None}], "", 3),
    ],
)
def test_count_prompt_tokens(messages: list, system: str, expected: int) -> None:
    assert count_prompt_tokens(messages, system) == expected


@pytest.mark.parametrize(
    ("text", "max_tokens", "stop", "pieces", "finish", "stop_sequence"),
    [
        ("one two three", None, (), ["one", " two", " three"], "end", None),
        ("one two three", 2, (), ["one", " two"], "length", None),
        ("one two three", 3, (), ["one", " two", " three"], "end", None),
        ("one two. three", None, (".",), ["one", " two"], "stop_sequence", "."),
        ("one two. three!", None, ("!", "."), ["one", " two"], "stop_sequence", "."),
        ("one two three. four", 2, (".",), ["one", " two"], "length", None),
        ("one two", None, ("",), ["one", " two"], "end", None),
    ],
)
def test_finish_answer(text, max_tokens, stop, pieces, finish, stop_sequence) -> None:
    done = finish_answer(text, max_tokens, stop)
    assert list(done.pieces) == pieces
    assert (done.finish, done.stop_sequence, done.tokens) == (finish, stop_sequence, len(pieces))
    assert [json.loads(e) for e in done.escaped] == pieces


# ---------------------------------------------------------------- pure: arithmetic and answers


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("37 + 12 x 5", Fraction(97)),
        ("(1 + 2) × 3", Fraction(9)),
        ("10 / 4", Fraction(5, 2)),
        ("-3 + 4 * 2", Fraction(5)),
        ("8 ÷ 2", Fraction(4)),
        ("1 / 0", None),
        ("2 ** 10", None),
        ("__import__('os')", None),
        ("a + 1", None),
        ("1.5 + 2", None),
        ("(" * 40 + "1" + ")" * 40, Fraction(1)),
        ("1" + " + 1" * 80, None),
    ],
)
def test_evaluate_is_safe_and_exact(expr: str, value: Fraction | None) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize(
    ("prompt", "expr"),
    [
        (SEED_PROMPT, "37 + 12 x 5"),
        ("What is 6 x 7?", "6 x 7"),
        ("Compute (2 + 3) * 4 please, then 1 + 1", "(2 + 3) * 4"),
        ("I have 3 apples.", None),
        ("Hello, how are you?", None),
        ("Use gpt-4 today", None),
    ],
)
def test_find_expression(prompt: str, expr: str | None) -> None:
    assert find_expression(prompt) == expr


def test_fill_template_replaces_placeholders_and_falls_back() -> None:
    assert fill_template('{"expression": "1 + 1", "result": ?}', "1 + 1", 2) == {"expression": "1 + 1", "result": 2}
    assert fill_template('{"result": "?"}', "1 + 1", 2) == {"result": 2}
    assert fill_template("{not json ?}", "1 + 1", 2) == {"expression": "1 + 1", "result": 2}


def test_seed_prompt_answer_is_correct_json() -> None:
    answer = _json_answer(answer_text(SEED_PROMPT, 0, ALWAYS_RIGHT))
    assert answer == {"expression": "37 + 12 x 5", "result": 97}


def test_accuracy_shares_pick_prose_or_wrong() -> None:
    prose = answer_text(SEED_PROMPT, 0, (0.0, 1.0, 0.0))
    assert "97" in prose and "{" not in prose
    wrong = _json_answer(answer_text(SEED_PROMPT, 0, (0.0, 0.0, 1.0)))
    assert wrong["result"] != 97 and abs(wrong["result"] - 97) <= 10


def test_default_accuracy_is_mostly_right_across_prompts() -> None:
    right = 0
    for i in range(300):
        prompt = SEED_PROMPT.replace("37", str(i))
        try:
            right += _json_answer(answer_text(prompt, 0, (0.97, 0.015, 0.015)))["result"] == i + 60
        except ValueError:
            pass
    assert 270 <= right <= 300


def test_pick_share_bounds() -> None:
    assert pick_share(12345, (1.0, 0.0, 0.0)) == 0
    assert pick_share(12345, (0.0, 0.0, 1.0)) == 2
    assert pick_share(12345, (0.0, 0.0, 0.0)) in (0, 1, 2)


def test_answers_are_deterministic_and_seeded() -> None:
    greeting = answer_text("Hello, how are you?")
    assert greeting == answer_text("Hello, how are you?")
    assert "?" in greeting or "!" in greeting
    texts = {answer_text("Tell me about tea.", seed) for seed in range(5)}
    assert len(texts) > 1


def test_prose_length_and_verse_shape() -> None:
    for i in range(20):
        pieces = tokenize(answer_text(f"Explain topic number {i}."))
        assert 40 <= len(pieces) <= 200
    verse = answer_text("Write me a 1 verse song about sparkling water.")
    lines = verse.splitlines()
    assert 4 <= len(lines) <= 8
    assert "sparkling water" in verse.lower()


# ---------------------------------------------------------------- pure: limits and headers


def test_token_bucket_capacity_refill_and_debt() -> None:
    bucket = TokenBucket(60, 60.0, now=0.0)  # capacity 60, refills 1/s
    assert bucket.wait_time(60, 0.0) == 0.0
    bucket.take(60, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.0)
    assert bucket.wait_time(1, 0.5) == pytest.approx(0.5)
    assert bucket.remaining(10.0) == 10
    assert bucket.reset_seconds(10.0) == pytest.approx(50.0)
    small = TokenBucket(6, 1.0, now=0.0)  # capacity 0.1 request, refills 0.1/s
    assert small.wait_time(1, 0.0) == 0.0  # a full bucket admits one request anyway
    small.take(1, 0.0)
    assert small.wait_time(1, 0.0) == pytest.approx(10.0)  # and the long-run rate stays 6/min


def test_key_limiter_admits_then_refuses_and_settles() -> None:
    limiter = KeyLimiter(rpm=6, tpm=1000, window_seconds=60.0, now=0.0)
    for _ in range(6):
        assert limiter.admit(10, 0.0).ok
    refused = limiter.admit(10, 0.0)
    assert (refused.ok, refused.kind) == (False, "requests")
    assert refused.wait == pytest.approx(10.0)
    tokens = KeyLimiter(rpm=None, tpm=600, window_seconds=60.0, now=0.0)
    assert tokens.admit(500, 0.0).ok
    refused = tokens.admit(500, 0.0)
    assert (refused.kind, refused.wait) == ("tokens", pytest.approx(40.0))
    tokens.settle(500, 100, 0.0)  # used far less than estimated: the bucket is corrected
    assert tokens.admit(500, 0.0).ok


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.0004, "1ms"),
        (0.12, "120ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (59.85, "59.85s"),
        (360, "6m0s"),
        (90.25, "1m30.25s"),
        (3600, "1h0m0s"),
        (3725, "1h2m5s"),
    ],
)
def test_format_go_duration(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


def test_retry_and_rfc3339_formats() -> None:
    assert retry_headers(9.85) == {"retry-after": "10", "retry-after-ms": "9850"}
    assert retry_headers(0.01) == {"retry-after": "1", "retry-after-ms": "10"}
    assert format_rfc3339(0.2) == "1970-01-01T00:00:01Z"
    assert format_rfc3339(1_700_000_000) == "2023-11-14T22:13:20Z"


def test_limit_header_values() -> None:
    limiter = KeyLimiter(rpm=6, tpm=40_000, window_seconds=60.0, now=0.0)
    limiter.admit(1234, 0.0)
    headers = openai_limit_headers(limiter, 0.0)
    assert headers == {
        "x-ratelimit-limit-requests": "6",
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-reset-requests": "10s",
        "x-ratelimit-limit-tokens": "40000",
        "x-ratelimit-remaining-tokens": "38766",
        "x-ratelimit-reset-tokens": "1.851s",
    }
    headers = anthropic_limit_headers(limiter, 0.0, wall=1_700_000_000.0)
    assert headers["anthropic-ratelimit-requests-remaining"] == "5"
    assert headers["anthropic-ratelimit-requests-reset"] == "2023-11-14T22:13:30Z"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "39000"  # nearest thousand
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "40000"
    assert openai_limit_headers(KeyLimiter(None, None, 60.0, 0.0), 0.0) == {}


# ---------------------------------------------------------------- pure: faults, pacing, wire, requests


def test_directives_parse_and_strip() -> None:
    assert parse_directive("hi") is None
    d = parse_directive("Tell me [[sim:500:once]] now")
    assert (d.fault, d.once) == ("500", True)
    assert parse_directive("[[sim:529]]").fault == "overloaded"
    assert parse_directive("[[sim:nonsense]] [[sim:slow]]").fault == "slow"
    assert strip_directives("Tell me [[sim:500:once]] now") == "Tell me now"


def test_roll_fault_is_reproducible_and_near_its_rate() -> None:
    faults = Faults(error_500=0.1, disconnect_mid_stream=0.1)
    first = [roll_fault(faults, anthropic=False, stream=True, seed=1, counter=n) for n in range(2000)]
    again = [roll_fault(faults, anthropic=False, stream=True, seed=1, counter=n) for n in range(2000)]
    assert first == again
    assert 150 < first.count("500") < 250
    assert 100 < first.count("disconnect") < 250
    plain = [roll_fault(faults, anthropic=False, stream=False, seed=1, counter=n) for n in range(500)]
    assert "disconnect" not in plain
    assert roll_fault(Faults(error_529_overloaded=1.0), anthropic=True, stream=False, seed=0, counter=1) == "overloaded"
    assert roll_fault(Faults(error_529_overloaded=1.0), anthropic=False, stream=False, seed=0, counter=1) is None


def test_pacing_plan_and_schedule() -> None:
    cfg = SimConfig(ttft=1.0, ttft_jitter=0.2, tokens_per_second=10.0)
    assert plan_pacing(cfg, 1.0, 0.0, 5).ttft == pytest.approx(0.8)
    assert plan_pacing(cfg, 2.0, 0.999999, 5).ttft == pytest.approx(2.4, rel=1e-4)
    slow = plan_pacing(cfg, 1.0, 0.5, 10, slow_tail=True)
    assert (slow.interval, slow.tail_interval, slow.tail_from) == (0.1, 0.5, 8)
    assert schedule(10, slow) == [(0.0, 1), *[(pytest.approx(0.1 * j), j + 1) for j in range(1, 8)],
                                  (pytest.approx(1.2), 9), (pytest.approx(1.7), 10)]
    fast = Pacing(ttft=0.0, interval=0.001, tail_interval=0.0, tail_from=100)
    groups = schedule(100, fast)
    assert len(groups) == 10 and groups[-1][1] == 100  # 1 ms pieces batched into 10 ms writes
    assert Pacing(0.0, 0.0, 0.0, 3).instant


def test_openai_stream_events_shape() -> None:
    done = finish_answer("Hi there friend", 2, ())
    head, body, tail = openai_stream("chatcmpl-1", 1, "m", done, 7, include_usage=True)
    events = [e.decode() for e in head + body + tail]
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    assert events[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ["Hi", " there"]
    assert chunks[3]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 9
    _, _, no_usage = openai_stream("c", 1, "m", done, 7, include_usage=False)
    assert len(no_usage) == 2 and "usage" not in json.loads(no_usage[0].decode()[6:])


def test_anthropic_stream_events_shape() -> None:
    done = finish_answer("Hi there. More", None, (".",))
    head, body, tail = anthropic_stream("msg_1", "claude", done, 5)
    names = [e.decode().split("\n")[0] for e in head + body + tail]
    assert names == [
        "event: message_start", "event: content_block_start", "event: ping",
        "event: content_block_delta", "event: content_block_delta",
        "event: content_block_stop", "event: message_delta", "event: message_stop",
    ]
    delta = json.loads(tail[1].decode().split("data: ", 1)[1])
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "."}
    assert delta["usage"] == {"output_tokens": 2}


def test_request_validation() -> None:
    call = parse_openai({"model": "m", "messages": _user("x"), "max_tokens": 5, "stop": "."})
    assert (call.max_tokens, call.stop, call.token_budget) == (5, (".",), 5)
    assert parse_openai({"model": "m", "messages": _user("x")}).token_budget == 256
    system = [{"type": "text", "text": "Be brief."}]
    assert parse_anthropic({"model": "m", "messages": _user("x"), "max_tokens": 9, "system": system}).system == "Be brief."
    for bad in ({"messages": _user("x")}, {"model": "m", "messages": []}, {"model": "m", "messages": _user("x"), "n": 2},
                {"model": "m", "messages": _user("x"), "max_tokens": 0}, [1, 2]):
        with pytest.raises(BadRequest):
            parse_openai(bad)
    with pytest.raises(BadRequest, match="max_tokens"):
        parse_anthropic({"model": "m", "messages": _user("x")})


# ---------------------------------------------------------------- server through the official SDKs

KEYS = {
    "sk-good-aaaaaaaaaaaa": KeyProfile(alias="good"),
    "sk-quota-bbbbbbbbbbb": KeyProfile(alias="broke", quota_tokens=0),
    "sk-revoke-ccccccccccc": KeyProfile(alias="doomed"),
    "sk-rpm6-dddddddddddd": KeyProfile(alias="rpm6", rpm=6, tpm=100_000),
}


@pytest.fixture(scope="module")
def sim():
    with Simulator(SimConfig(keys=dict(KEYS), arithmetic_accuracy=ALWAYS_RIGHT, **FAST)) as running:
        yield running


class Clients:
    """Builds SDK clients pointed at a simulator and closes them all at teardown (no leaked sockets)."""

    def __init__(self) -> None:
        self._made: list[openai.OpenAI | anthropic.Anthropic] = []

    def openai(self, sim: Simulator, key: str = "sk-good-aaaaaaaaaaaa", max_retries: int = 0) -> openai.OpenAI:
        client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key=key, max_retries=max_retries)
        self._made.append(client)
        return client

    def anthropic(self, sim: Simulator, key: str = "sk-good-aaaaaaaaaaaa") -> anthropic.Anthropic:
        client = anthropic.Anthropic(base_url=sim.base_url, api_key=key, max_retries=0)
        self._made.append(client)
        return client

    def close(self) -> None:
        for client in self._made:
            client.close()


@pytest.fixture
def clients():
    made = Clients()
    yield made
    made.close()


def test_openai_sdk_non_stream(sim: Simulator, clients: Clients) -> None:
    reply = clients.openai(sim).chat.completions.create(model="gpt-x", messages=_user(SEED_PROMPT))
    assert reply.model == "gpt-x" and reply.object == "chat.completion"
    assert _json_answer(reply.choices[0].message.content)["result"] == 97
    assert reply.choices[0].finish_reason == "stop"
    usage = reply.usage
    assert usage.prompt_tokens == count_prompt_tokens(_user(SEED_PROMPT))
    assert usage.completion_tokens == len(tokenize(reply.choices[0].message.content))
    cut = clients.openai(sim).chat.completions.create(model="m", messages=_user("Tell me about owls."), max_tokens=3)
    assert (cut.choices[0].finish_reason, cut.usage.completion_tokens) == ("length", 3)


def test_openai_sdk_stream_with_usage(sim: Simulator, clients: Clients) -> None:
    stream = clients.openai(sim).chat.completions.create(
        model="m", messages=_user("Tell me about owls."), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_text("Tell me about owls.", 0, ALWAYS_RIGHT)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(tokenize(text))


async def test_async_openai_sdk(sim: Simulator) -> None:
    client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="sk-good-aaaaaaaaaaaa", max_retries=0)
    replies = await asyncio.gather(
        *(client.chat.completions.create(model="m", messages=_user(f"What is {i} + 1?")) for i in range(10))
    )
    assert [r.choices[0].message.content.count(str(i + 1)) >= 1 for i, r in enumerate(replies)] == [True] * 10
    stream = await client.chat.completions.create(
        model="m", messages=_user("Hello, how are you?"), stream=True, stream_options={"include_usage": True}
    )
    parts = [c async for c in stream]
    assert parts[-1].usage.total_tokens > 0
    await client.close()


def test_openai_sdk_typed_errors(sim: Simulator, clients: Clients) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        clients.openai(sim, "sk-wrong-key-000000").chat.completions.create(model="m", messages=_user("hi"))
    assert info.value.code == "invalid_api_key" and "sk-…0000" in info.value.message
    with pytest.raises(openai.RateLimitError) as info:
        clients.openai(sim, "sk-quota-bbbbbbbbbbb").chat.completions.create(model="m", messages=_user("hi"))
    assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
    with pytest.raises(openai.BadRequestError):
        clients.openai(sim).chat.completions.create(model="m", messages=[])


def test_anthropic_sdk_create_and_stream(sim: Simulator, clients: Clients) -> None:
    client = clients.anthropic(sim)
    message = client.messages.create(
        model="claude-x", max_tokens=100, system="Be brief.", messages=_user("Hello, how are you?")
    )
    assert message.model == "claude-x" and message.stop_reason == "end_turn"
    assert message.content[0].text == answer_text("Hello, how are you?", 0, ALWAYS_RIGHT)
    assert message.usage.input_tokens == count_prompt_tokens(_user("Hello, how are you?"), "Be brief.")
    with client.messages.stream(model="claude-x", max_tokens=5, messages=_user("Tell me about owls.")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    stopped = client.messages.create(model="c", max_tokens=500, stop_sequences=["."], messages=_user("Tell me about owls."))
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "."


def test_anthropic_errors(sim: Simulator, clients: Clients) -> None:
    with pytest.raises(anthropic.AuthenticationError) as info:
        clients.anthropic(sim, "sk-ant-nope-00000").messages.create(model="c", max_tokens=5, messages=_user("hi"))
    assert info.value.body["error"]["type"] == "authentication_error"
    url = sim.base_url + "/v1/messages"
    body = {"model": "c", "max_tokens": 5, "messages": _user("hi")}
    ok = httpx2.post(url, json=body, headers={"x-api-key": "sk-good-aaaaaaaaaaaa", "anthropic-version": "2023-06-01"})
    assert ok.status_code == 200 and ok.headers["request-id"].startswith("req_")
    no_version = httpx2.post(url, json=body, headers={"x-api-key": "sk-good-aaaaaaaaaaaa"})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"
    no_max = httpx2.post(url, json={"model": "c", "messages": _user("hi")},
                         headers={"x-api-key": "sk-good-aaaaaaaaaaaa", "anthropic-version": "2023-06-01"})
    assert no_max.status_code == 400
    broke = httpx2.post(url, json=body, headers={"x-api-key": "sk-quota-bbbbbbbbbbb", "anthropic-version": "2023-06-01"})
    assert broke.status_code == 402 and broke.json()["error"]["type"] == "billing_error"


def test_models_list_parses_in_both_sdks(sim: Simulator, clients: Clients) -> None:
    assert "gpt-4o-mini" in [m.id for m in clients.openai(sim).models.list()]
    assert "claude-haiku-4-5" in [m.id for m in clients.anthropic(sim).models.list()]


def test_rate_limit_seventh_request_and_headers(sim: Simulator, clients: Clients) -> None:
    url = sim.base_url + "/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-rpm6-dddddddddddd"}
    body = {"model": "m", "messages": _user("hi")}
    replies = [httpx2.post(url, json=body, headers=headers) for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 6 + [429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies[:6]] == ["5", "4", "3", "2", "1", "0"]
    last = replies[-1]
    assert last.json()["error"]["code"] == "rate_limit_exceeded" and last.json()["error"]["type"] == "requests"
    assert 9 <= int(last.headers["retry-after"]) <= 10
    assert 9000 <= int(last.headers["retry-after-ms"]) <= 10000
    assert last.headers["x-ratelimit-limit-requests"] == "6"
    assert re.fullmatch(r"(\d+m)?[\d.]+s|\d+ms", last.headers["x-ratelimit-reset-requests"])
    with pytest.raises(openai.RateLimitError):
        clients.openai(sim, "sk-rpm6-dddddddddddd").chat.completions.create(model="m", messages=_user("hi"))
    ant = httpx2.post(sim.base_url + "/v1/messages", json={**body, "max_tokens": 5},
                      headers={"Authorization": "Bearer sk-rpm6-dddddddddddd", "anthropic-version": "2023-06-01"})
    assert ant.status_code == 429 and ant.json()["error"]["type"] == "rate_limit_error"
    reset = datetime.strptime(ant.headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    ahead = reset.replace(tzinfo=timezone.utc).timestamp() - time.time()
    assert 0 < ahead <= 62
    assert sim.stats()["rpm6"]["rate_limited"] >= 3 and sim.stats()["rpm6"]["peak_rpm"] == 6


def test_short_window_refills_quickly(clients: Clients) -> None:
    cfg = SimConfig(keys={"k-fast-000000": KeyProfile(rpm=120)}, window_seconds=1.0, **FAST)
    with Simulator(cfg) as sim:
        client = clients.openai(sim, "k-fast-000000")
        for _ in range(2):  # a bucket of 120 * 1 / 60 = 2 requests, refilled at 2 per second
            client.chat.completions.create(model="m", messages=_user("hi"))
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=_user("hi"))
        wait_ms = int(info.value.response.headers["retry-after-ms"])
        assert 1 <= wait_ms <= 500
        assert info.value.response.headers["retry-after"] == "1"
        time.sleep(wait_ms / 1000 + 0.02)
        client.chat.completions.create(model="m", messages=_user("hi"))


def test_quota_runs_out_and_headers_can_be_hidden(clients: Clients) -> None:
    keys = {
        "k-quota-00000": KeyProfile(alias="q", quota_tokens=50),
        "k-quiet-00000": KeyProfile(alias="quiet", rpm=100, expose_limit_headers=False),
    }
    with Simulator(SimConfig(keys=keys, **FAST)) as sim:
        client = clients.openai(sim, "k-quota-00000")
        client.chat.completions.create(model="m", messages=_user("Tell me about owls."))  # ~50+ tokens
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=_user("hi"))
        assert info.value.code == "insufficient_quota"
        assert sim.stats()["q"]["quota"] == 1
        reply = httpx2.post(sim.base_url + "/v1/chat/completions", json={"model": "m", "messages": _user("hi")},
                            headers={"Authorization": "Bearer k-quiet-00000"})
        assert reply.status_code == 200 and not any(h.startswith("x-ratelimit") for h in reply.headers)


def test_revoke_and_set_profile_while_running(sim: Simulator, clients: Clients) -> None:
    client = clients.openai(sim, "sk-revoke-ccccccccccc")
    client.chat.completions.create(model="m", messages=_user("hi"))
    sim.revoke("sk-revoke-ccccccccccc")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="m", messages=_user("hi"))
    sim.set_profile("sk-revoke-ccccccccccc", KeyProfile(alias="doomed"))
    client.chat.completions.create(model="m", messages=_user("hi"))
    assert sim.stats()["doomed"]["unauthorized"] == 1


# ---------------------------------------------------------------- faults


def _raw_stream_lines(sim: Simulator, prompt: str) -> tuple[list[str], Exception | None]:
    lines: list[str] = []
    body = {"model": "m", "stream": True, "messages": _user(prompt)}
    headers = {"Authorization": "Bearer sk-good-aaaaaaaaaaaa"}
    with httpx2.stream("POST", sim.base_url + "/v1/chat/completions", json=body, headers=headers) as reply:
        try:
            lines.extend(reply.iter_lines())
        except httpx2.HTTPError as exc:
            return lines, exc
    return lines, None


def test_disconnect_directive_cuts_the_stream(sim: Simulator, clients: Clients) -> None:
    before = sim.stats()["good"]["disconnects"]
    lines, error = _raw_stream_lines(sim, "Tell me about owls. [[sim:disconnect]]")
    assert error is not None  # incomplete chunked read
    assert "data: [DONE]" not in lines
    assert any('"content"' in line for line in lines)
    assert all("[[sim" not in line for line in lines)
    assert sim.stats()["good"]["disconnects"] == before + 1
    with pytest.raises(openai.APIConnectionError):
        clients.openai(sim).chat.completions.create(model="m", messages=_user("x [[sim:disconnect]]"))


def test_500_once_then_success(sim: Simulator, clients: Clients) -> None:
    client = clients.openai(sim)
    prompt = "Tell me about retries. [[sim:500:once]]"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=_user(prompt))
    reply = client.chat.completions.create(model="m", messages=_user(prompt))
    assert reply.choices[0].message.content == answer_text("Tell me about retries.", 0, ALWAYS_RIGHT)
    retried = clients.openai(sim, max_retries=1).chat.completions.create(
        model="m", messages=_user("Another one [[sim:500:once]]")
    )
    assert retried.choices[0].finish_reason == "stop"


def test_stream_error_and_malformed(sim: Simulator, clients: Clients) -> None:
    with pytest.raises(openai.APIError):
        list(clients.openai(sim).chat.completions.create(model="m", messages=_user("x [[sim:stream_error]]"), stream=True))
    with pytest.raises(anthropic.APIStatusError) as info:
        with clients.anthropic(sim).messages.stream(model="c", max_tokens=50, messages=_user("x [[sim:stream_error]]")) as s:
            list(s.text_stream)
    assert "overloaded_error" in str(info.value)
    lines, error = _raw_stream_lines(sim, "x [[sim:malformed]]")
    assert error is None and lines[-2] == "data: [DONE]"
    bad = [line for line in lines if line.startswith("data: {")]
    broken = 0
    for line in bad:
        try:
            json.loads(line[6:])
        except ValueError:
            broken += 1
    assert broken == 1


def test_injected_overload_statuses(sim: Simulator, clients: Clients) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        clients.openai(sim).chat.completions.create(model="m", messages=_user("x [[sim:503]]"))
    assert info.value.status_code == 503
    with pytest.raises(anthropic.InternalServerError) as ainfo:
        clients.anthropic(sim).messages.create(model="c", max_tokens=5, messages=_user("x [[sim:529]]"))
    assert ainfo.value.status_code == 529


def test_random_faults_are_reproducible(clients: Clients) -> None:
    cfg = SimConfig(faults=Faults(error_500=0.3), seed=7, **FAST)
    outcomes = []
    for _ in range(2):
        with Simulator(cfg) as sim:
            client = clients.openai(sim, "sk-any")
            run = []
            for i in range(20):
                try:
                    client.chat.completions.create(model="m", messages=_user(f"q{i}"))
                    run.append(True)
                except openai.InternalServerError:
                    run.append(False)
            outcomes.append(run)
            assert sim.stats()["total"]["server_errors"] == run.count(False)
    assert outcomes[0] == outcomes[1] and 1 <= outcomes[0].count(False) <= 12


# ---------------------------------------------------------------- timing, concurrency, lifecycle


def test_streaming_pace_and_slow_tail(clients: Clients) -> None:
    cfg = SimConfig(ttft=0.2, ttft_jitter=0.0, tokens_per_second=100.0)
    with Simulator(cfg) as sim:
        client = clients.openai(sim, "sk-any")
        start = time.perf_counter()
        stream = client.chat.completions.create(model="m", messages=_user("Tell me about owls."), stream=True, max_tokens=30)
        arrivals = [time.perf_counter() - start for c in stream if c.choices and c.choices[0].delta.content]
        assert len(arrivals) == 30
        assert 0.18 <= arrivals[0] <= 0.6
        assert 0.45 <= arrivals[-1] <= 1.2  # 0.2 s + 29 tokens at 100/s
        start = time.perf_counter()
        slow = client.chat.completions.create(model="m", messages=_user("Tell me about owls. [[sim:slow]]"),
                                              stream=True, max_tokens=30)
        list(slow)
        assert time.perf_counter() - start >= 0.2 + 0.23 + 6 * 0.05  # last 6 tokens at 20/s


def test_non_stream_latency_and_max_concurrency() -> None:
    cfg = SimConfig(latency=0.2, ttft=0.0, max_concurrency=2)
    with Simulator(cfg) as sim:
        async def burst() -> float:
            client = openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="sk-any", max_retries=0)
            start = time.perf_counter()
            await asyncio.gather(*(client.chat.completions.create(model="m", messages=_user("hi")) for _ in range(4)))
            await client.close()
            return time.perf_counter() - start

        elapsed = asyncio.run(burst())
        assert 0.38 <= elapsed <= 1.5
        assert sim.stats()["total"]["max_in_flight"] == 4  # admitted, two of them queued


def test_client_abort_is_counted_and_stop_is_prompt(clients: Clients) -> None:
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=50.0)) as sim:
        stream = clients.openai(sim, "sk-any").chat.completions.create(model="m", messages=_user("Tell me about owls."), stream=True)
        next(iter(stream))
        stream.close()
        deadline = time.time() + 3
        while sim.stats()["total"]["client_aborts"] == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert sim.stats()["total"]["client_aborts"] == 1
        sim.reset_stats()
        assert sim.stats()["total"]["requests"] == 0
        start = time.perf_counter()
    assert time.perf_counter() - start < 3 and not sim.running


def test_lifecycle_and_default_simulator(clients: Clients) -> None:
    sim = Simulator(SimConfig(**FAST))
    with pytest.raises(RuntimeError):
        sim.base_url
    assert sim.start() is sim and sim.start() is sim
    url = sim.base_url
    assert httpx2.get(url + "/health").text == "ok"
    sim.stop()
    sim.stop()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url + "/health")
    shared = default_simulator()
    assert default_simulator() is shared and shared.running
    reply = clients.openai(shared, "anything").chat.completions.create(model="m", messages=_user("Hello"))
    assert reply.choices[0].message.content


def test_serve_forever_prints_url_and_serves() -> None:
    code = "from nbllm._sim import serve_forever, SimConfig; serve_forever(SimConfig(ttft=0), port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert httpx2.get(url + "/health").text == "ok"
        reply = httpx2.post(url + "/v1/chat/completions", json={"model": "m", "messages": _user("2 + 2 = ?")})
        assert "4" in reply.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()
    assert proc.returncode is not None
