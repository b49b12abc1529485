"""Small real servers that misbehave, one behaviour per path, and what nbllm does about each.

``scripted_server`` serves, on a loopback port, a list of canned answers per path, in order (the
last one repeats). Each test points an ``LLM`` at one path and checks what the user gets.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

import nbllm

OK_BODY = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@dataclass
class Canned:
    """One answer of a scripted server; ``body`` may be a function of the request's body (bytes)."""

    status: int = 200
    body: Any = field(default_factory=lambda: OK_BODY)
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedServer:
    """An aiohttp server in a thread: ``script(path, [Canned, ...])``, then ``url(path)``."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Canned]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        self.bodies: list[Any] = []  # the JSON body of every request (None when it was not JSON)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def script(self, path: str, answers: list[Canned]) -> str:
        self.scripts[path] = answers
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append((path, dict(request.headers)))
        try:
            self.bodies.append(await request.json())
        except ValueError:
            self.bodies.append(None)
        answers = self.scripts.get(path.removesuffix("/chat/completions"), [Canned(404, {"error": "no script"})])
        n = self.hits.get(path, 0)
        self.hits[path] = n + 1
        canned = answers[min(n, len(answers) - 1)]
        payload = canned.body(await request.read()) if callable(canned.body) else canned.body
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        headers = {"content-type": "application/json", **canned.headers}
        return web.Response(status=canned.status, body=body, headers=headers)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        self._started.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def fast_retry_llm(base_url: str, **kw: Any) -> nbllm.LLM:
    llm = nbllm.LLM("openai:gpt-4o-mini", base_url=base_url, api_key="sk-hostile-test-0001", store=False, **kw)
    llm.retry = nbllm.RetryPolicy(initial_delay=0.01, max_delay=0.02)
    return llm


# ---- retry classes: one rule (status + x-should-retry) ---------------------------------------------

@pytest.mark.parametrize(
    ("first", "retried"),
    [
        (Canned(408, {"error": {"message": "request timeout"}}), True),
        (Canned(409, {"error": {"message": "conflict"}}), True),
        (Canned(400, {"error": {"message": "try me again"}}, {"x-should-retry": "true"}), True),
        (Canned(500, {"error": {"message": "do not retry"}}, {"x-should-retry": "false"}), False),
        (Canned(503, {"error": {"message": "unavailable"}}), True),
        (Canned(400, {"error": {"message": "bad"}}), False),
    ],
    ids=["408", "409", "400+x-should-retry:true", "500+x-should-retry:false", "503", "400"],
)
def test_one_retry_rule_for_error_answers(scripted_server: ScriptedServer, first: Canned, retried: bool) -> None:
    url = scripted_server.script("/v1", [first, Canned()])
    llm = fast_retry_llm(url)
    if retried:
        assert llm.invoke("hi").text == "fine"
        assert scripted_server.hits["/v1/chat/completions"] == 2
    else:
        with pytest.raises(nbllm.ProviderError) as caught:
            llm.invoke("hi")
        assert caught.value.status == first.status
        assert scripted_server.hits["/v1/chat/completions"] == 1


# ---- structured answers against servers without structured outputs -------------------------------------
def _completion(content: str) -> dict[str, Any]:
    return {**OK_BODY, "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}


def test_an_unknown_response_format_falls_back_to_instructions_and_tolerant_parsing(scripted_server: ScriptedServer) -> None:
    refused = Canned(400, {"error": {"message": "Unrecognized request argument supplied: response_format",
                                     "type": "invalid_request_error"}})
    chatty = Canned(200, _completion('Sure! Here it is:\n```json\n{"city": "Paris", "population": 2100000}\n```'))
    url = scripted_server.script("/v1", [refused, chatty])
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
              "required": ["city", "population"]}
    llm = fast_retry_llm(url)
    first = llm.invoke("Largest city of France?", schema=schema)
    second = llm.invoke("Largest city of Italy?", schema=schema)
    assert first.parsed == {"city": "Paris", "population": 2100000} and second.parsed == first.parsed
    assert scripted_server.hits["/v1/chat/completions"] == 3  # one 400, then two answers: remembered
    refused_body, fallback_body, _ = scripted_server.bodies
    assert refused_body["response_format"]["json_schema"]["strict"] is True
    assert "response_format" not in fallback_body
    assert fallback_body["messages"][-1]["content"].startswith("Largest city of France?\n\nAnswer with only a JSON object")


def test_a_400_about_the_schema_itself_is_raised_not_worked_around(scripted_server: ScriptedServer) -> None:
    invalid = Canned(400, {"error": {"message": "Invalid schema for response_format 'answer': 'format' is not permitted.",
                                     "type": "invalid_request_error", "param": "response_format"}})
    url = scripted_server.script("/v1", [invalid, Canned()])
    with pytest.raises(nbllm.BadRequestError, match="Invalid schema"):
        fast_retry_llm(url).invoke("hi", schema={"type": "object", "properties": {"a": {"type": "string"}}})
    assert scripted_server.hits["/v1/chat/completions"] == 1
