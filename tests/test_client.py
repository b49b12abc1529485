"""One call over real sockets against the simulator: retries, faults, errors, timeouts."""

from __future__ import annotations

import asyncio
import socket

import pytest

import nbllm
from nbllm import Timeouts
from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator


def openai_llm(sim: Simulator, key: str = "sk-test-key-0001", **kw) -> nbllm.LLM:
    kw.setdefault("store", False)
    return nbllm.LLM("openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key=key, **kw)


def anthropic_llm(sim: Simulator, key: str = "sk-ant-test-0001", **kw) -> nbllm.LLM:
    kw.setdefault("store", False)
    return nbllm.LLM("anthropic:claude-haiku-4-5", base_url=sim.base_url, api_key=key, **kw)


@pytest.mark.parametrize("make", [openai_llm, anthropic_llm], ids=["openai", "anthropic"])
@pytest.mark.parametrize("streaming", [False, True], ids=["json", "sse"])
def test_invoke_returns_text_usage_and_timing(fast_sim, make, streaming):
    response = make(fast_sim, streaming=streaming, max_tokens=50).invoke("What is 12 + 30? Reply as JSON {\"result\": ?}")
    assert '"result": 42' in response.text
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.finish_reason in ("stop", "end_turn") and response.latency > 0
    assert response.key_alias == "key-1"


@pytest.mark.parametrize("make", [openai_llm, anthropic_llm], ids=["openai", "anthropic"])
def test_stream_yields_pieces_that_join_to_the_answer(streaming_sim, make):
    llm = make(streaming_sim)
    chunks = list(llm.stream("Write me a 1 verse song about sparkling water."))
    assert len(chunks) > 5
    assert "".join(chunks) == llm.invoke("Write me a 1 verse song about sparkling water.").text


def test_x_api_key_header_is_accepted(fast_sim):
    assert anthropic_llm(fast_sim, auth_header="x-api-key").invoke("Hello, how are you?").text


def test_transient_500_is_retried(fast_sim):
    before = fast_sim.stats()["total"]["server_errors"]
    response = openai_llm(fast_sim).invoke("Hi [[sim:500:once]] there")
    assert response.text
    assert fast_sim.stats()["total"]["server_errors"] == before + 1


def test_persistent_500_raises_server_error_after_retries(fast_sim):
    with pytest.raises(nbllm.ServerError, match="HTTP 500"):
        openai_llm(fast_sim, max_retries=1).invoke("Hi [[sim:500]]")


@pytest.mark.parametrize("fault", ["disconnect", "malformed", "stream_error"])
def test_broken_stream_nobody_saw_is_retried_silently(streaming_sim, fault):
    response = openai_llm(streaming_sim, streaming=True).invoke(f"Tell me a story (silent retry) [[sim:{fault}:once]]")
    assert response.finish_reason == "stop" and len(response.text) > 20


@pytest.mark.parametrize("fault", ["disconnect", "malformed", "stream_error"])
@pytest.mark.parametrize("make", [openai_llm, anthropic_llm], ids=["openai", "anthropic"])
def test_broken_stream_after_tokens_were_shown_raises_with_partial_text(streaming_sim, make, fault):
    chunks: list[str] = []

    async def consume() -> None:
        async for chunk in make(streaming_sim).astream(f"Tell me a story ({make.__name__}) [[sim:{fault}:once]]"):
            chunks.append(chunk)

    with pytest.raises(nbllm.StreamInterruptedError) as caught:
        asyncio.run(consume())
    assert chunks and caught.value.partial_text.startswith("".join(chunks)[:10])
    assert caught.value.tokens_delivered


def test_revoked_key_raises_authentication_error_without_the_key(make_sim):
    with make_sim({"sk-good-key-123456": KeyProfile()}) as sim:
        with pytest.raises(nbllm.NoKeyAvailableError, match="key refused") as caught:
            openai_llm(sim, key="sk-wrong-key-987654321").invoke("Hi")
    assert "sk-wrong-key-987654321" not in str(caught.value)


@pytest.mark.parametrize("make", [openai_llm, anthropic_llm], ids=["openai", "anthropic"])
def test_out_of_quota_key_is_disabled_with_reason(make_sim, make):
    key = "sk-quota-key-123456"
    with make_sim({key: KeyProfile(alias="q", quota_tokens=0)}) as sim:
        llm = make(sim, key=key)
        with pytest.raises(nbllm.NoKeyAvailableError, match="out of quota"):
            llm.invoke("Hi")
        assert llm.pool.status()[0]["state"].startswith("disabled: out of quota")


def test_bad_request_is_not_retried(fast_sim):
    with pytest.raises(nbllm.BadRequestError, match="anthropic HTTP 400"):
        anthropic_llm(fast_sim, max_tokens=0, max_retries=3).invoke("Hi")


def test_idle_timeout():
    with Simulator(SimConfig(ttft=2.0, ttft_jitter=0.0)) as sim:
        llm = openai_llm(sim, streaming=True, timeouts=Timeouts(idle=0.2), max_retries=0)
        with pytest.raises(nbllm.RequestTimeoutError) as caught:
            llm.invoke("Hi")
    assert caught.value.kind == "idle"


def test_overall_deadline():
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=20)) as sim:
        llm = openai_llm(sim, streaming=True, timeouts=Timeouts(total=0.3), max_retries=0)
        with pytest.raises(nbllm.RequestTimeoutError) as caught:
            llm.invoke("Write a long essay about rivers.")
    assert caught.value.kind == "overall"


def test_unreachable_server_raises_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = nbllm.LLM("gpt-4o-mini", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x-123456789", max_retries=0, store=False)
    with pytest.raises((nbllm.APIConnectionError, nbllm.RequestTimeoutError), match="(?i)connect|reach"):
        llm.invoke("Hi")


def test_random_faults_lose_nothing_in_a_batch():
    faults = Faults(error_500=0.1, error_503=0.05)
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0, faults=faults, seed=3)) as sim:
        results = openai_llm(sim, max_retries=6).map([f"What is {i} + {i}?" for i in range(60)], progress="none")
        assert sim.stats()["total"]["server_errors"] > 0
    assert all(r.ok for r in results)
    assert [r.text for r in results][:3] and all(str(2 * i) in r.text for i, r in enumerate(results) if r.text.startswith("{"))


def test_cancelling_a_stream_aborts_the_http_request_within_half_a_second():
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=20)) as sim:
        llm = openai_llm(sim)

        async def consume_then_cancel() -> float:
            async def consume() -> None:
                async for _ in llm.astream("Write a long essay about rivers and mountains."):
                    pass

            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.3)
            task.cancel()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            while sim.stats()["total"]["client_aborts"] == 0 and loop.time() - t0 < 2:
                await asyncio.sleep(0.01)
            return loop.time() - t0

        assert asyncio.run(consume_then_cancel()) < 0.5
        assert sim.stats()["total"]["client_aborts"] == 1


def test_a_named_server_without_any_key_is_called_without_one(fast_sim, capsys):
    llm = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", store=False)
    assert llm.invoke("Hello, how are you?").text
    assert llm.pool.keys[0].alias == "no-key"
    assert "embedded simulator" not in capsys.readouterr().err
    nbllm.LLM().invoke("Hi")  # now the simulator starts for the default route…
    other = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", store=False)
    assert other.pool.keys[0].alias == "no-key"  # …and a named server still gets no made-up key


class _Collect(nbllm.BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.events: list[str] = []

    def on_llm_start(self, serialized, prompts, **kwargs):
        self.events.append("start")

    def on_llm_new_token(self, token, **kwargs):
        self.tokens.append(token)

    async def on_llm_end(self, response, **kwargs):  # async handlers are awaited
        self.events.append("end")


def test_generate_streams_through_token_callbacks(streaming_sim):
    handler = _Collect()
    llm = openai_llm(streaming_sim, callbacks=[handler])
    result = llm.generate(["Tell me a joke."])
    assert len(handler.tokens) > 3 and "".join(handler.tokens) == result.generations[0][0].text
    assert handler.events == ["start", "end"] and result.llm_output["token_usage"]["total_tokens"] > 0
