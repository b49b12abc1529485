"""Small real servers that misbehave, one behaviour per path, and what nbllm does about each.

``scripted_server`` serves, on a loopback port, a list of canned answers per path, in order (the
last one repeats). A canned answer is a status, headers and a JSON body, or a stream of chunks with
pauses between them (SSE, a stall, a never-ending line), optionally gzip-compressed. The server keeps
every request it received (path, headers, body), so a test can also check what was *not* sent. Each
test points an ``LLM`` at one path and checks what the user gets.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

import nbllm
from nbllm._client.providers import OpenAIProvider

OK_BODY = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
# the request paths of the two wire formats; a script is registered under the base path in front of them
WIRE_SUFFIXES = ("/chat/completions", "/v1/messages")


@dataclass
class Canned:
    """One answer of a scripted server.

    ``body`` is sent as JSON (bytes or str as they are), or is a function of the request's body (bytes)
    that returns one. With ``chunks`` the answer is streamed instead: each str/bytes item is written and
    flushed on its own, a number pauses that many seconds. ``gzip`` compresses the body or the stream.
    """

    status: int = 200
    body: Any = field(default_factory=lambda: OK_BODY)
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[str | bytes | float] | None = None
    gzip: bool = False


@dataclass
class Seen:
    """A request the server received."""

    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """An aiohttp server in a thread: ``script(path, [Canned, ...])``, then ``url(path)``."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Canned]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[Seen] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def script(self, path: str, answers: list[Canned]) -> str:
        self.scripts[path] = answers
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict]:
        """The JSON bodies of the requests to ``path`` (a base path, as scripted), in arrival order."""
        return [json.loads(seen.body) for seen in self.requests if _base_path(seen.path) == path]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        raw = await request.read()
        self.requests.append(Seen(path, dict(request.headers), raw))
        answers = self.scripts.get(_base_path(path), [Canned(404, {"error": "no script"})])
        n = self.hits.get(path, 0)
        self.hits[path] = n + 1
        canned = answers[min(n, len(answers) - 1)]
        if canned.chunks is not None:
            return await _stream(request, canned)
        payload = canned.body(raw) if callable(canned.body) else canned.body
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        headers = {"content-type": "application/json", **canned.headers}
        if canned.gzip:
            body = gzip.compress(body.encode() if isinstance(body, str) else body)
            headers["content-encoding"] = "gzip"
        return web.Response(status=canned.status, body=body, headers=headers)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # stalled answers are cut off when the test ends, not waited for
        runner = self._runner = web.AppRunner(app, shutdown_timeout=0.1)
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
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)


def _base_path(path: str) -> str:
    for suffix in WIRE_SUFFIXES:
        if path.endswith(suffix):
            return path.removesuffix(suffix)
    return path


async def _stream(request: web.Request, canned: Canned) -> web.StreamResponse:
    response = web.StreamResponse(status=canned.status, headers={"content-type": "text/event-stream", **canned.headers})
    if canned.gzip:
        response.enable_compression(web.ContentCoding.gzip)
    await response.prepare(request)
    for chunk in canned.chunks or ():
        if isinstance(chunk, (int, float)):
            await asyncio.sleep(chunk)
        else:
            await response.write(chunk.encode() if isinstance(chunk, str) else chunk)
    await response.write_eof()
    return response


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def second_server() -> Iterator[ScriptedServer]:
    """Another host (another port), e.g. where a redirect points."""
    with ScriptedServer() as server:
        yield server


# ---- wire-format helpers ---------------------------------------------------------------------------

def sse(data: Any, event: str | None = None) -> str:
    """One SSE event; ``data`` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def openai_chunk(text: str | None = None, finish: str | None = None, **extra: Any) -> dict:
    delta = {} if text is None else {"content": text}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


OPENAI_USAGE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def openai_stream(*texts: str, done: bool = True) -> list[str]:
    """A whole OpenAI stream of ``texts`` (with a usage chunk and ``[DONE]`` unless ``done=False``)."""
    chunks = [sse(openai_chunk(t)) for t in texts] + [sse(openai_chunk(finish="stop")), sse(OPENAI_USAGE)]
    return chunks + ([sse("[DONE]")] if done else [])


def anthropic_events(*texts: str) -> list[tuple[str, dict]]:
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                  "model": "claude-x", "content": [],
                                                  "usage": {"input_tokens": 3, "output_tokens": 1}}}
    events = [("message_start", start),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": t}}) for t in texts]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {"output_tokens": 2}}),
               ("message_stop", {"type": "message_stop"})]
    return events


def anthropic_stream(*texts: str) -> list[str]:
    return [sse(data, event) for event, data in anthropic_events(*texts)]


def fast_retry_llm(base_url: str, **kw: Any) -> nbllm.LLM:
    if "keys" not in kw and "pool" not in kw:
        kw.setdefault("api_key", "sk-hostile-test-0001")
    llm = nbllm.LLM(kw.pop("model", "openai:gpt-4o-mini"), base_url=base_url, store=kw.pop("store", False), **kw)
    llm.retry = nbllm.RetryPolicy(max_retries=llm.retry.max_retries, initial_delay=0.01, max_delay=0.02)
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


# ---- what already behaved well: kept as regression tests --------------------------------------------

def test_html_502_is_retried_then_a_server_error(scripted_server: ScriptedServer) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    url = scripted_server.script("/v1", [Canned(502, html, {"content-type": "text/html"})])
    with pytest.raises(nbllm.ServerError, match="502") as caught:
        fast_retry_llm(url, max_retries=2).invoke("hi")
    assert caught.value.status == 502
    assert scripted_server.hits["/v1/chat/completions"] == 3


def test_a_stall_after_the_first_token_hits_the_idle_timeout(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/v1", [Canned(chunks=[sse(openai_chunk("first")), 30.0])])
    llm = fast_retry_llm(url, max_retries=0, timeouts=nbllm.Timeouts(idle=0.3))
    started = time.monotonic()
    seen: list[str] = []
    with pytest.raises(nbllm.StreamInterruptedError, match="idle") as caught:
        for chunk in llm.stream("hi"):
            seen.append(chunk)
    assert time.monotonic() - started < 5
    assert seen == ["first"] and caught.value.partial_text == "first"


def test_a_stream_without_its_terminator_is_interrupted_with_the_partial_text(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/v1", [Canned(chunks=openai_stream("Hello", " there", done=False))])
    llm = fast_retry_llm(url, max_retries=0)
    with pytest.raises(nbllm.StreamInterruptedError) as caught:
        list(llm.stream("hi"))
    assert caught.value.partial_text == "Hello there"


def test_a_401_echoing_the_key_is_redacted(scripted_server: ScriptedServer, tmp_path) -> None:
    key = "sk-hostile-test-0001"
    body = {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}
    url = scripted_server.script("/v1", [Canned(401, body)])
    llm = fast_retry_llm(url, store=tmp_path / "s.sqlite3")
    with pytest.raises(nbllm.NoKeyAvailableError, match="key refused") as caught:  # the only key is disabled
        llm.invoke("hi")
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + str(llm.pool.status())
    assert key not in shown + json.dumps(list(llm.store.rows()))
    error = OpenAIProvider().error_from_response(401, json.dumps(body))  # the error the key was disabled by
    assert isinstance(error, nbllm.AuthenticationError)
    assert key not in str(error) + error.provider_message and "sk-…0001" in error.provider_message


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
def test_gzip_answers_are_decoded(scripted_server: ScriptedServer, streamed: bool) -> None:
    canned = Canned(chunks=openai_stream("zipped", " answer"), gzip=True) if streamed else Canned(gzip=True)
    url = scripted_server.script("/v1", [canned])
    llm = fast_retry_llm(url, streaming=streamed)
    assert llm.invoke("hi").text == ("zipped answer" if streamed else "fine")


def test_a_line_over_one_mebibyte_is_capped(scripted_server: ScriptedServer) -> None:
    endless = "data: " + "x" * (2 * 1024 * 1024)  # never ends its line
    url = scripted_server.script("/v1", [Canned(chunks=[sse(openai_chunk("a")), endless, 5.0])])
    with pytest.raises(nbllm.StreamInterruptedError, match="byte limit") as caught:
        list(fast_retry_llm(url, max_retries=0).stream("hi"))
    assert caught.value.partial_text == "a"


def test_cancelling_amap_keeps_finished_answers_and_the_rerun_reads_them(scripted_server: ScriptedServer, tmp_path) -> None:
    fast, slow = Canned(chunks=openai_stream("quick")), Canned(chunks=[10.0, *openai_stream("slow")])
    url = scripted_server.script("/v1", [fast, fast, fast, slow])
    llm = fast_retry_llm(url, store=tmp_path / "cancel.sqlite3", streaming=True, concurrency=1)
    prompts = ["a", "b", "c", "d"]

    async def cancel_after_three() -> None:
        batch = llm.amap(prompts, progress="none")
        task = asyncio.ensure_future(batch)
        while sum(r is not None for r in batch.results) < 3:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the fourth is on the wire, stalled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after_three())
    assert [r.text if r else None for r in llm.last_results] == ["quick", "quick", "quick", None]
    scripted_server.scripts["/v1"] = [Canned(chunks=openai_stream("later"))]
    sent_before = len(scripted_server.requests)
    results = llm.map(prompts, progress="none")
    assert [r.text for r in results] == ["quick", "quick", "quick", "later"]
    assert [r.cached for r in results] == [True, True, True, False]
    assert len(scripted_server.requests) == sent_before + 1


def test_a_thousand_concurrent_ainvokes_on_one_key_are_served_in_fifo_order(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/v1", [Canned()])
    # every request's estimate fills the key's TPM bucket (10 000 tokens), so each waits for the one before
    # to end (its real usage, 4 tokens, gives the rest back): one at a time, the order they reach the
    # server is the order the pool granted them. Sizes alternate, so a queue ordered by size would show.
    llm = fast_retry_llm(url, keys=[{"key": "sk-hostile-fifo-0001", "tpm": 600_000}])

    async def all_at_once() -> list[nbllm.Response]:
        return await asyncio.gather(*(llm.ainvoke(f"p{i:04d}", max_tokens=10_000 * (1 + i % 2)) for i in range(1000)))

    assert all(r.text == "fine" for r in asyncio.run(all_at_once()))
    order = [int(body["messages"][0]["content"][1:]) for body in scripted_server.bodies("/v1")]
    assert order == list(range(1000))


# ---- 1. redirects: never followed, so the key never goes to another host ----------------------------

@pytest.mark.parametrize(
    ("model", "auth_header", "suffix"),
    [("openai:gpt-4o-mini", "bearer", "/chat/completions"),
     ("anthropic:claude-x", "x-api-key", "/v1/messages"),
     ("anthropic:claude-x", "bearer", "/v1/messages")],
    ids=["openai-bearer", "anthropic-x-api-key", "anthropic-bearer"],
)
@pytest.mark.parametrize("status", [307, 301])
def test_a_redirect_is_not_followed_and_says_where_to_point_base_url(
    scripted_server: ScriptedServer, second_server: ScriptedServer, model: str, auth_header: str, suffix: str,
    status: int,
) -> None:
    elsewhere = second_server.script("/moved", [Canned()])
    url = scripted_server.script("/v1", [Canned(status, "", {"location": elsewhere + suffix})])
    llm = fast_retry_llm(url, model=model, auth_header=auth_header, api_key="sk-redirect-secret-4242")
    with pytest.raises(nbllm.ProviderError) as caught:
        llm.invoke("a prompt for the original host only")
    assert second_server.requests == []  # neither the key nor the prompt went there
    assert len(scripted_server.requests) == 1  # and a redirect is not retried
    message = str(caught.value)
    assert caught.value.status == status and "redirect" in message
    assert f"base_url={elsewhere}" in message  # where to point base_url if the new place is trusted
    assert "sk-redirect-secret-4242" not in message


@pytest.mark.parametrize("transport", ["nbllm", "aiohttp", "httpx2"])
def test_no_transport_follows_a_redirect(
    scripted_server: ScriptedServer, second_server: ScriptedServer, transport: str
) -> None:
    from nbllm._client import http

    elsewhere = second_server.script("/moved", [Canned()])
    url = scripted_server.script("/v1", [Canned(307, "", {"location": elsewhere + "/chat/completions"})])

    async def post_once() -> int:
        client = http._TRANSPORTS[transport]()
        try:
            headers = {"x-api-key": "sk-redirect-secret-4242", "authorization": "Bearer sk-redirect-secret-4242"}
            async with client.post(url + "/chat/completions", headers, {"q": 1}, nbllm.Timeouts()) as response:
                return response.status
        finally:
            await client.aclose()

    assert asyncio.run(post_once()) == 307
    assert second_server.requests == []


# ---- 2. a key echoed inside a stream's error event is redacted on every path ------------------------

# not shaped like a provider key: only its registration (every key nbllm is given) can hide it
ECHOED_KEY = "hostile-secret-ABCDEFGH-9876"


def _error_streams() -> dict[str, tuple[str, list[str]]]:
    openai_error = {"error": {"message": f"Invalid key {ECHOED_KEY} for this org", "type": "invalid_request_error",
                              "code": f"bad_key_{ECHOED_KEY}"}}
    anthropic_error = {"type": "error", "error": {"type": "invalid_request_error",
                                                  "message": f"Invalid key {ECHOED_KEY}"}}
    return {
        "openai-first-event": ("openai:gpt-4o-mini", [sse(openai_error)]),
        "openai-mid-stream": ("openai:gpt-4o-mini", [sse(openai_chunk("Hello")), sse(openai_error)]),
        "anthropic-error-event": ("anthropic:claude-x", [*anthropic_stream("Hi")[:3], sse(anthropic_error, "error")]),
    }


class _ErrorRecorder(nbllm.BaseCallbackHandler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


def _everything_shown(error: BaseException) -> str:
    extra = [getattr(error, name, "") for name in ("provider_message", "error_type", "partial_text")]
    return "".join(traceback.format_exception(error)) + repr(error) + str(error) + "".join(map(str, extra))


@pytest.mark.parametrize("case", list(_error_streams()))
def test_a_key_echoed_in_a_stream_error_is_redacted_everywhere(scripted_server: ScriptedServer, tmp_path, case: str) -> None:
    model, chunks = _error_streams()[case]
    url = scripted_server.script("/s", [Canned(chunks=chunks)])
    recorder = _ErrorRecorder()
    llm = fast_retry_llm(url, model=model, api_key=ECHOED_KEY, streaming=True, max_retries=0,
                         store=tmp_path / "s.sqlite3", callbacks=[recorder])
    shown = []
    with pytest.raises(nbllm.NbllmError) as invoked:  # through callbacks: tokens are delivered as they come
        llm.invoke("hi")
    shown.append(_everything_shown(invoked.value))
    with pytest.raises(nbllm.NbllmError) as streamed:
        list(llm.stream("hi"))
    shown.append(_everything_shown(streamed.value))
    llm.callbacks = []
    with pytest.raises(nbllm.NbllmError) as quiet:  # the engine-only fast path
        llm.invoke("hi")
    shown.append(_everything_shown(quiet.value))
    (failure,) = llm.map(["hi"], progress="none")
    assert not failure.ok
    shown += [str(failure), repr(failure), _everything_shown(failure.error)]
    shown += [_everything_shown(error) for error in recorder.errors]
    assert len(recorder.errors) == 2  # invoke and stream told the callbacks
    shown.append(json.dumps(list(llm.store.rows())))
    assert "Invalid key" in shown[0]  # the provider's message is kept, only the key is masked
    assert ECHOED_KEY not in "\n".join(shown)


@pytest.mark.parametrize("case", ["openai-first-event", "anthropic-error-event"])
def test_a_key_echoed_in_a_stream_error_is_redacted_in_llm_cells(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    from IPython.testing import globalipapp

    model, chunks = _error_streams()[case]
    url = scripted_server.script("/s", [Canned(chunks=chunks)])
    monkeypatch.setenv("NBLLM_HOSTILE_KEY", ECHOED_KEY)
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nbllm")
    try:
        shell.run_line_magic("llm_config", f"base_url={url} api_key_env=NBLLM_HOSTILE_KEY")
        result = shell.run_cell(f"%%llm -m {model}\nhi")
    finally:
        shell.run_line_magic("llm_config", "base_url= api_key_env=")
        shell.run_line_magic("unload_ext", "nbllm")
    out = capsys.readouterr()
    assert result.success and "Error" in out.out
    assert ECHOED_KEY not in out.out + out.err


# ---- 9. valid JSON of the wrong shape: a clear, retried error, never a raw TypeError -----------------

WRONG_OPENAI_EVENTS = {
    "number": "5", "null": "null", "string": '"x"', "array": "[1]",
    "choices-string": '{"choices": "abc"}',
    "delta-string": '{"choices": [{"delta": "x"}]}',
    "usage-string": '{"choices": [], "usage": "lots"}',
    "content-number": '{"choices": [{"delta": {"content": 5}}]}',
    "finish-list": '{"choices": [{"delta": {}, "finish_reason": ["stop"]}]}',
    "usage-huge": '{"choices": [], "usage": {"prompt_tokens": 1e30, "completion_tokens": 1}}',
}


@pytest.mark.parametrize("data", list(WRONG_OPENAI_EVENTS.values()), ids=list(WRONG_OPENAI_EVENTS))
def test_a_wrongly_shaped_openai_event_is_a_retried_stream_error(scripted_server: ScriptedServer, data: str) -> None:
    url = scripted_server.script("/v1", [Canned(chunks=[sse(openai_chunk("Hi")), f"data: {data}\n\n",
                                                        *openai_stream(" there")])])
    llm = fast_retry_llm(url, streaming=True, max_retries=2)
    with pytest.raises(nbllm.StreamInterruptedError, match="malformed"):
        llm.invoke("hi")
    assert scripted_server.hits["/v1/chat/completions"] == 3  # retried like a broken stream


@pytest.mark.parametrize("data", ["5", "null", '"x"', "[1]", '{"type": "content_block_delta", "delta": "x"}',
                                  '{"type": "message_delta", "usage": {"output_tokens": "many"}}'],
                         ids=["number", "null", "string", "array", "delta-string", "usage-string"])
def test_a_wrongly_shaped_anthropic_event_is_a_retried_stream_error(scripted_server: ScriptedServer, data: str) -> None:
    events = anthropic_stream("Hi")
    url = scripted_server.script("/a", [Canned(chunks=[*events[:3], f"data: {data}\n\n", *events[3:]])])
    llm = fast_retry_llm(url, model="anthropic:claude-x", streaming=True, max_retries=1)
    with pytest.raises(nbllm.StreamInterruptedError, match="malformed"):
        llm.invoke("hi")
    assert scripted_server.hits["/a/v1/messages"] == 2


def _completion(content: Any) -> dict:
    return {**OK_BODY, "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}


@pytest.mark.parametrize(
    ("body", "text"),
    [(_completion([{"type": "text", "text": "in "}, {"type": "text", "text": "parts"}]), "in parts"),
     (_completion(None), ""),
     (_completion(5), None), (_completion([1]), None), ({**OK_BODY, "choices": "abc"}, None),
     ([OK_BODY], None), ({**OK_BODY, "usage": "lots"}, None)],
    ids=["content-parts", "content-null", "content-number", "content-list-of-numbers", "choices-string",
         "body-array", "usage-string"],
)
def test_a_wrongly_shaped_json_answer_is_a_clear_error(scripted_server: ScriptedServer, body: Any, text: str | None) -> None:
    url = scripted_server.script("/v1", [Canned(body=body)])
    llm = fast_retry_llm(url, max_retries=1)
    if text is not None:
        assert llm.invoke("hi").text == text
        return
    with pytest.raises(nbllm.StreamInterruptedError, match="expected shape"):
        llm.invoke("hi")
    assert scripted_server.hits["/v1/chat/completions"] == 2


# ---- 10. bad input: a clear ConfigurationError that says what to do; in a batch, that item's Failure --

def test_a_lone_surrogate_fails_only_its_own_batch_item(scripted_server: ScriptedServer, tmp_path) -> None:
    url = scripted_server.script("/v1", [Canned()])
    llm = fast_retry_llm(url, store=tmp_path / "s.sqlite3")
    prompts = ["fine one", "read with surrogateescape: \udcff!", [{"role": "user", "content": "also fine"}],
               [{"role": "user", "content": ["no", "dicts"]}]]
    results = llm.map(prompts, progress="none")
    assert [r.ok for r in results] == [True, False, True, False]
    assert isinstance(results[1].error, nbllm.ConfigurationError)
    assert "U+DCFF" in str(results[1].error) and "position 27" in str(results[1].error)
    assert isinstance(results[3].error, nbllm.ConfigurationError)
    assert len(scripted_server.requests) == 2  # the two good items were sent, the bad ones never
    with pytest.raises(nbllm.ConfigurationError, match="U\\+DCFF"):
        llm.invoke("\udcff")
    with pytest.raises(nbllm.ConfigurationError, match="system prompt"):
        llm.invoke("hi", system="be \ud800 brief")


@pytest.mark.parametrize(
    ("settings", "match"),
    [({"max_tokens": "abc"}, "max_tokens"), ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": True}, "max_tokens"),
     ({"temperature": "hot"}, "temperature"), ({"temperature": float("nan")}, "temperature"),
     ({"seed": object()}, "seed"), ({"logit_bias": {1, 2}}, "logit_bias"), ({"top_p": float("inf")}, "top_p"),
     ({"stop": ["ok", 5]}, "stop"), ({"user": "x\udcff"}, "user")],
    ids=["max_tokens-str", "max_tokens-negative", "max_tokens-bool", "temperature-str", "temperature-nan", "object",
         "set", "inf", "stop-number", "surrogate-param"],
)
def test_bad_call_parameters_are_configuration_errors(scripted_server: ScriptedServer, settings: dict, match: str) -> None:
    url = scripted_server.script("/v1", [Canned()])
    with pytest.raises(nbllm.ConfigurationError, match=match):
        fast_retry_llm(url, **settings)
    llm = fast_retry_llm(url)
    with pytest.raises(nbllm.ConfigurationError, match=match):
        llm.invoke("hi", **settings)
    with pytest.raises(nbllm.ConfigurationError, match=match):
        llm.amap(["hi", "there"], **settings)  # the whole batch is wrong: said once, before anything runs
    for name, value in settings.items():
        setattr(llm, name, value) if name in ("max_tokens", "temperature", "stop") else llm.model_kwargs.update({name: value})
    with pytest.raises(nbllm.ConfigurationError, match=match):  # set after construction
        llm.invoke("hi")
    assert scripted_server.requests == []


@pytest.mark.parametrize("store", [123, 1.5, object(), ["a"]])
def test_a_store_setting_of_the_wrong_type_says_what_it_accepts(store: Any) -> None:
    with pytest.raises(nbllm.ConfigurationError, match="store"):
        nbllm.LLM("gpt-4o-mini", api_key="sk-hostile-test-0001", store=store)


def test_a_key_with_surrounding_whitespace_is_stripped(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/v1", [Canned()])
    assert fast_retry_llm(url, api_key="  sk-hostile-pasted-0001\n").invoke("hi").text == "fine"
    assert scripted_server.requests[0].headers["Authorization"] == "Bearer sk-hostile-pasted-0001"
    pool = nbllm.KeyPool([{"key": "sk-hostile-pasted-0002\r\n"}, nbllm.ApiKey(" sk-hostile-pasted-0003 ")])
    assert [k.masked for k in pool.keys] == ["sk-…0002", "sk-…0003"]


@pytest.mark.parametrize("key", ["sk-hostile\nsecond-line", "sk-hostile\u200bzero-width", "sk-\x00nul-inside"])
def test_a_key_that_cannot_go_into_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(nbllm.ConfigurationError, match="header") as caught:
        nbllm.LLM("gpt-4o-mini", api_key=key)
    assert key not in str(caught.value) and "second-line" not in str(caught.value)


def test_a_corrupt_store_file_is_named_with_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "corrupt.sqlite3"
    path.write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(nbllm.ConfigurationError, match="corrupt.sqlite3") as caught:
        nbllm.Store(path)
    assert "delete" in str(caught.value) and "NBLLM_STORE" in str(caught.value)
    monkeypatch.setenv("NBLLM_STORE", str(path))
    llm = nbllm.LLM("gpt-4o-mini", api_key="sk-hostile-test-0001", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(nbllm.ConfigurationError, match="corrupt.sqlite3"):
        llm.invoke("hi")


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -5, 0, "500", True])
def test_a_key_limit_must_be_a_positive_number(limit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(nbllm.ConfigurationError, match="rpm"):
        nbllm.KeyPool([{"key": "sk-hostile-test-0001", "rpm": limit}])
    with pytest.raises(nbllm.ConfigurationError, match="tpm"):
        nbllm.ApiKey("sk-hostile-test-0001", tpm=limit)
    if isinstance(limit, str):
        return  # in the environment every value is a string, and "500" is right there
    monkeypatch.setenv("API_KEY", "sk-hostile-test-0001")
    monkeypatch.setenv("NBLLM_RPM", str(limit))
    with pytest.raises(nbllm.ConfigurationError, match="NBLLM_RPM|rpm"):
        nbllm.KeyPool.from_env(dotenv=False)


@pytest.mark.parametrize(
    "make",
    [lambda: nbllm.Timeouts(total=-1), lambda: nbllm.Timeouts(idle=0), lambda: nbllm.Timeouts(connect=float("nan")),
     lambda: nbllm.Timeouts(total="10"), lambda: nbllm.RetryPolicy(max_delay=float("nan")),
     lambda: nbllm.RetryPolicy(max_retries=2.5), lambda: nbllm.RetryPolicy(initial_delay=float("inf"))],
    ids=["total-negative", "idle-zero", "connect-nan", "total-str", "max_delay-nan", "max_retries-float",
         "initial_delay-inf"],
)
def test_timeouts_and_retry_policies_refuse_impossible_values(make: Any) -> None:
    with pytest.raises(nbllm.ConfigurationError):
        make()


# ---- 6. concurrency is validated by amap and map as by LLM() --------------------------------------------

@pytest.mark.parametrize("concurrency", [-1, 0, 2.5, True, "4"])
@pytest.mark.parametrize("how", ["amap", "map", "LLM"])
def test_a_batch_concurrency_below_one_or_not_whole_is_refused(scripted_server: ScriptedServer, how: str, concurrency: Any) -> None:
    url = scripted_server.script("/v1", [Canned()])
    with pytest.raises(nbllm.ConfigurationError, match="concurrency"):
        if how == "LLM":
            fast_retry_llm(url, concurrency=concurrency)
        elif how == "map":
            fast_retry_llm(url).map(["a", "b"], concurrency=concurrency, progress="none")
        else:
            fast_retry_llm(url).amap(["a", "b"], concurrency=concurrency, progress="none")
    assert scripted_server.requests == []


# ---- 7. one real key is one pool key -------------------------------------------------------------------

def test_a_key_repeated_in_env_is_one_pool_key(scripted_server: ScriptedServer, tmp_path) -> None:
    url = scripted_server.script("/v1", [Canned()])
    (tmp_path / ".env").write_text(f"API_KEY=sk-hostile-dup-0001, sk-hostile-dup-0001,sk-hostile-dup-0002\nBASE_URL={url}\n")
    keys = nbllm.KeyPool.from_env().keys
    assert [(k.alias, k.masked) for k in keys] == [("key-1", "sk-…0001"), ("key-2", "sk-…0002")]
    llm = nbllm.LLM("gpt-4o-mini", store=False)  # the default route reads the same .env
    assert len(llm.pool) == 2 and llm.invoke("hi").text == "fine"


@pytest.mark.parametrize(
    "keys",
    [["sk-hostile-dup-0001", "sk-hostile-dup-0001"],
     ["sk-hostile-dup-0001", {"key": " sk-hostile-dup-0001\n", "rpm": 60}],
     [nbllm.ApiKey("sk-hostile-dup-0001", alias="a"), {"key": "sk-hostile-dup-0001", "alias": "b"}]],
    ids=["strings", "string-and-dict-after-strip", "apikey-and-dict"],
)
def test_a_key_given_twice_explicitly_is_refused(keys: list) -> None:
    with pytest.raises(nbllm.ConfigurationError, match="twice") as caught:
        nbllm.KeyPool(keys)
    assert "sk-…0001" in str(caught.value) and "sk-hostile-dup-0001" not in str(caught.value)
    with pytest.raises(nbllm.ConfigurationError, match="twice"):
        nbllm.LLM("gpt-4o-mini", keys=keys)


def test_one_placeholder_key_for_two_servers_is_two_pool_keys() -> None:
    # local servers often take any key ("EMPTY"): the same value for two servers is two sets of limits
    pool = nbllm.KeyPool([{"key": "EMPTY-local", "base_url": "http://127.0.0.1:1/v1"},
                          {"key": "EMPTY-local", "base_url": "http://127.0.0.1:2/v1"}])
    assert len(pool) == 2


# ---- 11. reset headers are capped like retry-after, and respected without a limit header --------------

def _key_wait(llm: nbllm.LLM) -> float:
    pool = llm.pool
    return pool.key_state(pool.keys[0].alias).wait_time(1, pool.clock())


@pytest.mark.parametrize("limit_header", [True, False], ids=["with-limit", "remaining-only"])
def test_a_reset_header_of_years_blocks_the_key_only_for_max_retry_after(scripted_server: ScriptedServer, limit_header: bool) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "99999h"}
    if limit_header:
        headers["x-ratelimit-limit-requests"] = "500"
    url = scripted_server.script("/v1", [Canned(headers=headers)])
    llm = fast_retry_llm(url)
    assert llm.invoke("hi").text == "fine"
    assert 110 < _key_wait(llm) <= 121  # RetryPolicy.max_retry_after, not 11 years (nor 0: it is respected)
    (row,) = llm.pool.status()
    assert row["state"].startswith("blocked by reset header 1")


def test_a_remaining_zero_without_a_limit_header_waits_for_its_reset(scripted_server: ScriptedServer) -> None:
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1.5s"}
    url = scripted_server.script("/v1", [Canned(headers=headers)])
    llm = fast_retry_llm(url)
    llm.invoke("hi")
    assert 1.0 < _key_wait(llm) <= 1.5


# ---- 4. an attempt that ends without usage gives its tokens back ---------------------------------------

BIG_PROMPT = "x" * (10 * 1024 * 1024)  # ~2.6 M tokens estimated, against a 200 000 TPM key


@pytest.mark.parametrize(
    "failure",
    [Canned(400, {"error": {"message": "context length exceeded", "type": "invalid_request_error"}}),
     Canned(500, {"error": {"message": "boom"}}),
     Canned(chunks=[30.0])],
    ids=["400", "500", "idle-timeout"],
)
def test_a_rejected_request_gives_its_tokens_back(scripted_server: ScriptedServer, failure: Canned) -> None:
    url = scripted_server.script("/v1", [failure, Canned()])
    llm = fast_retry_llm(url, keys=[{"key": "sk-hostile-tpm-0001", "tpm": 200_000}], max_retries=0,
                         timeouts=nbllm.Timeouts(idle=0.3))
    with pytest.raises(nbllm.NbllmError):
        llm.invoke(BIG_PROMPT)
    assert _key_wait(llm) == 0.0  # nothing was used: the key is as free as before
    assert llm.pool.status()[0]["state"] == "ready"
    started = time.monotonic()
    assert llm.invoke("hi").text == "fine"
    assert time.monotonic() - started < 5


def test_a_huge_request_in_flight_blocks_its_key_for_a_minute_at_most(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/v1", [Canned(chunks=[3.0, *openai_stream("late")])])
    llm = fast_retry_llm(url, keys=[{"key": "sk-hostile-tpm-0001", "tpm": 200_000}], streaming=True)

    async def look_while_in_flight() -> tuple[float, str]:
        task = asyncio.ensure_future(llm.ainvoke(BIG_PROMPT))
        while not scripted_server.requests:
            await asyncio.sleep(0.05)
        wait, state = _key_wait(llm), llm.pool.status()[0]["state"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return wait, state

    wait, state = asyncio.run(look_while_in_flight())
    assert 50 < wait <= 61  # one minute's worth of tokens taken, not 2.6 M (13 minutes)
    assert state.startswith("waiting: TPM")  # and the status says why
    deadline = time.monotonic() + 2  # the cancel reaches the engine thread a moment later
    while _key_wait(llm) > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _key_wait(llm) == 0.0  # cancelled: given back


# ---- 3. a retry-after beyond max_retry_after parks the key; the item moves to a key that can serve --

def test_a_day_long_retry_after_moves_the_work_to_the_idle_key(scripted_server: ScriptedServer) -> None:
    parked = scripted_server.script("/a", [Canned(429, {"error": {"message": "daily limit", "type": "rate_limit_error"}},
                                                  {"retry-after": "86400"})])
    healthy = scripted_server.script("/b", [Canned()])
    llm = fast_retry_llm(None, keys=[{"key": "sk-hostile-day-000A", "base_url": parked, "alias": "A"},
                                     {"key": "sk-hostile-day-000B", "base_url": healthy, "alias": "B"}])
    started = time.monotonic()
    results = llm.map([f"p{i}" for i in range(20)], progress="none")
    assert time.monotonic() - started < 5
    assert all(r.ok for r in results) and {r.key_alias for r in results} == {"B"}
    a_hits = scripted_server.hits["/a/chat/completions"]
    assert 1 <= a_hits <= 16  # only those sent before the first 429 came back
    state = {row["alias"]: row["state"] for row in llm.pool.status()}["A"]
    assert state.startswith("parked 1") and "86400" in state


def test_when_every_key_is_parked_the_items_fail_fast_with_a_rate_limit_error(scripted_server: ScriptedServer) -> None:
    url = scripted_server.script("/a", [Canned(429, {"error": {"message": "daily limit", "type": "rate_limit_error"}},
                                               {"retry-after": "86400"})])
    llm = fast_retry_llm(url)
    started = time.monotonic()
    results = llm.map(["a", "b", "c", "d", "e"], progress="none")
    with pytest.raises(nbllm.RateLimitError, match="max_retry_after") as caught:
        llm.invoke("one more")
    assert time.monotonic() - started < 5  # neither a day nor max_retry_after (120 s)
    assert all(isinstance(r.error, nbllm.RateLimitError) for r in results)
    assert "86400" in str(caught.value) and "key-1" in str(caught.value)
    assert scripted_server.hits["/a/chat/completions"] <= 5  # nothing sent to the parked key


# ---- 5. store write failures: a bad row costs only that row; a lock is waited out; the batch says so ---

def _answer(i: int, **fields: Any) -> nbllm.Response:
    return nbllm.Response(**{"text": f"answer {i}", "usage": nbllm.Usage(3, 1), "model": "m",
                             "finish_reason": "stop", **fields})


BAD_ANSWERS = {
    "finish_reason-list": lambda: _answer(99, **{"finish_reason": ["stop"]}),
    "usage-1e30": lambda: nbllm.Response(text="big", usage=nbllm.Usage(int(1e30), 1)),
    "lone-surrogate": lambda: nbllm.Response(text="a JSON escape \ud800 decodes to this"),
}


@pytest.mark.parametrize("bad", list(BAD_ANSWERS))
def test_one_unstorable_answer_costs_only_its_own_row(tmp_path, bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with nbllm.Store(tmp_path / "s.sqlite3") as store:
        request = {"model": "m", "messages": [{"role": "user", "content": "q"}], "params": {}}
        for i in range(18):  # one group: handed over faster than the writer's 5 ms gathering window
            answer = BAD_ANSWERS[bad]() if i == 9 else _answer(i)
            store.record(f"fp-{i}", request, answer, batch="b", index=i)
        assert store.flush(5)
        rows = {row["item_index"]: row for row in store.rows("b")}
        assert [i for i, row in rows.items() if row["ok"]] == [i for i in range(18) if i != 9]
        assert rows[9]["ok"] == 0 and "could not be stored" in rows[9]["error_message"]
        assert store.unstored("b") == 1 and store.unstored() == 1
        assert store.lookup("fp-3").text == "answer 3" and store.lookup("fp-9") is None  # a rerun sends it again
    assert "nbllm" not in capsys.readouterr().err  # reported to the batch, not printed from a thread


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")  # the write lock, as another kernel's long transaction holds it
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def test_a_store_locked_by_another_process_is_waited_out_never_dropped(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    with nbllm.Store(path, busy_timeout=0.1) as store:  # gives up on the lock after 0.1 s, each try
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path), "1.5"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        request = {"model": "m", "messages": [], "params": {}}
        for i in range(10):
            store.record(f"fp-{i}", request, _answer(i), batch="b", index=i)
        assert not store.flush(0.5)  # still locked: kept, waiting
        assert store.pending() == 10
        holder.wait(10)
        assert store.flush(10)
        assert store.count() == 10 and store.unstored() == 0


def test_settled_waits_for_its_own_rows_and_says_when_the_lock_holds_them(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    request = {"model": "m", "messages": [], "params": {}}
    with nbllm.Store(path, busy_timeout=0.1) as store:
        store.record("fp-first", request, _answer(0), batch="b", index=0)
        assert asyncio.run(store.settled(store.recorded, timeout=5))
        assert store.lookup("fp-first") is not None
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path), "1.0"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
        store.record("fp-held", request, _answer(1), batch="b", index=1)
        assert not asyncio.run(store.settled(store.recorded, timeout=0.3))  # the other process holds the lock
        holder.wait(10)
        assert asyncio.run(store.settled(store.recorded, timeout=10)) and store.pending() == 0


def test_a_batch_reports_answers_it_could_not_store(scripted_server: ScriptedServer, tmp_path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    surrogate = _completion("an escaped lone surrogate \ud800 in the text")
    url = scripted_server.script("/v1", [Canned()] * 5 + [Canned(body=json.dumps(surrogate))] + [Canned()])
    path = tmp_path / "reported.sqlite3"
    llm = fast_retry_llm(url, store=path, concurrency=1)
    batch = llm.amap([f"p{i}" for i in range(12)], progress="none")
    results = asyncio.run(_await(batch))
    assert all(r.ok for r in results)  # every answer is in the results...
    assert batch.not_stored == 1 and batch.progress.not_stored == 1  # ...one is not in the store, and it says so
    assert "1 not stored" in batch.progress.summary()
    warning = capsys.readouterr().err
    assert "could not be written" in warning and str(path) in warning
    assert len(list(llm.store.rows())) == 12 and sum(r["ok"] for r in llm.store.rows()) == 11


async def _await(batch: Any) -> Any:
    return await batch


# ---- structured answers against servers without structured outputs -------------------------------------
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
    refused_body, fallback_body, _ = scripted_server.bodies("/v1")
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
