# ---
# jupyter:
#   jupytext:
#     custom_cell_magics: llm
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Streaming: `stream`, `astream`, `astream_events`, callbacks and `%%llm`
#
# *Seeds 003/004 — LangChain's "如何从 LLM 流式传输响应" (how to stream responses from an LLM) and "如何流式传输LLM和聊天模型响应"
# (how to stream LLM and chat model responses).*
#
# > **Runs offline, or on your keys.** With no API key configured, nbllm answers from its embedded
# > simulator — a real OpenAI/Anthropic-compatible HTTP server on a loopback port, with realistic latency,
# > streaming pace and rate limits — and says so once. Set `OPENAI_API_KEY` (or `API_KEY=sk-a,sk-b,sk-c` plus
# > `BASE_URL` in a `.env`, as the key-pool seed of notebook 03 does) and the same cells run unchanged
# > against your provider. The outputs saved in this notebook come from a simulator run (`make notebooks`).
#
# The seeds show four ways to watch an answer arrive: the synchronous stream (同步流), the async stream
# (异步流), the async event stream (异步事件流), and a callback handler implementing `on_llm_new_token`. Two of
# their caveats do not apply to nbllm:
#
# * "**默认** 实现不提供逐个标记流式传输的支持" — LangChain's *default* implementation yields the whole answer as
#   one chunk unless the integration implements token streaming. nbllm streams token by token for every
#   provider it speaks (OpenAI-compatible and Anthropic server-sent events).
# * "如果使用 `generate`，仍然可以访问最终的 `LLMResult`。然而，目前不支持使用流式传输的 `token_usage`" — with
#   streaming, the final `LLMResult` had an empty `token_usage`. nbllm asks the provider for usage on every
#   stream (`stream_options.include_usage`), so streamed answers carry their token counts too.
#
# The outputs below were recorded after the fact: the `|` separators and the callback output show where the
# chunks were, but the point of streaming — the text appearing as it is written — only shows when you run
# the cells.

# %%
import nbllm

# the seed: OpenAI(model="gpt-3.5-turbo-instruct", temperature=0, max_tokens=512)
llm = nbllm.LLM(temperature=0, max_tokens=512)
SIMULATED = llm.pool.simulated
print("answers come from", "nbllm's embedded simulator" if SIMULATED else f"your provider ({len(llm.pool)} key(s))")

# %% [markdown]
# ## Sync stream (同步流)
#
# `llm.stream(prompt)` is a plain iterator of text chunks. As in the seed, `|` marks where one chunk ends and
# the next begins.

# %%
for chunk in llm.stream("Write me a 1 verse song about sparkling water."):
    print(chunk, end="|", flush=True)


# %% [markdown]
# ## Async stream (异步流)
#
# `llm.astream(prompt)` is the same as an async iterator — in a notebook cell, `async for` works at the top
# level. While it waits for the next chunk, the kernel's event loop is free for other work (other streams,
# widget clicks).

# %%
async for chunk in llm.astream("Write me a 1 verse song about sparkling water."):
    print(chunk, end="|", flush=True)


# %% [markdown]
# ## Async event stream (异步事件流)
#
# `llm.astream_events(prompt, version="v1")` yields LangChain-named events: `on_llm_start`, one
# `on_llm_stream` per chunk, then `on_llm_end` (or `on_llm_error`). Each has `.event`, `.name`, `.data` and
# `.run_id`, and can be indexed like LangChain's dicts (`event["event"]`). The seed's cell, unchanged but for
# the model, truncates after four events:

# %%
idx = 0

async for event in llm.astream_events(
    "Write me a 1 verse song about goldfish on the moon", version="v1"
):
    idx += 1
    if idx >= 5:  # Truncate the output
        print("...Truncated")
        break
    print(event)


# %% [markdown]
# The whole stream, summarised: the last event carries the finished `Response`, with its usage.

# %%
kinds = {}
async for event in llm.astream_events("Write me a 1 verse song about goldfish on the moon", version="v1"):
    kinds[event["event"]] = kinds.get(event["event"], 0) + 1
    if event.event == "on_llm_end":
        final = event.data["output"]
print(kinds)
print(f"on_llm_end: finish_reason={final.finish_reason!r}, usage={final.usage}")

# %% [markdown]
# ## Callbacks: `on_llm_new_token`
#
# Seed 004: "要使用流式传输，请使用实现 `on_llm_new_token` 的 `CallbackHandler`" — to stream, use a callback
# handler that implements `on_llm_new_token`. Subclass `nbllm.BaseCallbackHandler` and implement what you
# need (`on_llm_start`, `on_llm_new_token`, `on_llm_end`, `on_llm_error`; plain or `async def`). Callbacks
# run in your thread, so a `print` lands in the cell that made the call. An `LLM` with a handler that
# implements `on_llm_new_token` streams by itself.

# %%
import time


class TokenTimer(nbllm.BaseCallbackHandler):
    # counts chunks and measures the time to the first one
    def on_llm_start(self, serialized, prompts, **kwargs):
        self.start, self.first, self.chunks = time.perf_counter(), None, 0

    def on_llm_new_token(self, token, **kwargs):
        if self.first is None:
            self.first = time.perf_counter() - self.start
        self.chunks += 1

    def on_llm_end(self, response, **kwargs):
        usage = response.llm_output["token_usage"]
        print(f"{self.chunks} chunks, first after {self.first:.2f} s, "
              f"done after {time.perf_counter() - self.start:.2f} s; usage {usage}")


timed = nbllm.LLM(temperature=0, callbacks=[TokenTimer()])
answer = timed.invoke("Write me a song about sparkling water.")

# %% [markdown]
# The seed's own example, with `nbllm.StreamingStdOutCallbackHandler`, which prints each token as it
# arrives. `llm(prompt)` is `llm.invoke(prompt)`; it returns a `Response`, whose `usage` is filled although
# the answer was streamed:

# %%
from nbllm import StreamingStdOutCallbackHandler

llm = nbllm.LLM(streaming=True, callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
resp = llm("Write me a song about sparkling water.")

# %%
print(f"\nfinish_reason={resp.finish_reason!r}, usage={resp.usage}, "
      f"first token after {resp.time_to_first_token:.2f} s, {resp.tokens_per_second:.0f} tokens/s")

# %% [markdown]
# ## `generate` still returns an `LLMResult` — now with `token_usage`
#
# The seed's `llm.generate(["Tell me a joke."])` returned `llm_output={'token_usage': {}, ...}`. nbllm's:

# %%
llm.generate(["Tell me a joke."])

# %% [markdown]
# One difference from the seed: nbllm's `generate`/`agenerate` run prompts as a batch (concurrently, without
# streaming), so they do not call `on_llm_new_token` — above, the joke was not printed token by token before
# the result. To watch tokens *and* get the usage, call `invoke`/`ainvoke` on an LLM with a token callback
# (or `streaming=True`), as in the previous section.
#
# ## Chat messages
#
# The seed's `ChatOpenAI` example passes `[HumanMessage(content=...)]`. nbllm's `LLM` is the chat model:
# pass a list of `{"role", "content"}` messages (or a string, which is one user message).

# %%
chat = nbllm.LLM(streaming=True, callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
resp = chat([{"role": "user", "content": "Write me a song about sparkling water."}])

# %% [markdown]
# ## Anthropic
#
# The seed's last example streams from Anthropic's `claude`. The same code with an `anthropic:` model; nbllm
# speaks Anthropic's Messages API (the simulator does too). It runs on the simulator, or when an Anthropic
# key is configured. The `Response` of the last line renders as Markdown.

# %%
import os

if SIMULATED or os.environ.get("ANTHROPIC_API_KEY"):
    claude = nbllm.LLM("anthropic:claude-haiku-4-5", streaming=True,
                       callbacks=[StreamingStdOutCallbackHandler()], temperature=0)
    song = claude("Write me a song about sparkling water.")
else:
    song = None
    print("skipped: no ANTHROPIC_API_KEY")
song

# %% [markdown]
# ## `%%llm`: the answer streams into the cell
#
# With the extension loaded, a `%%llm` cell sends its body as the prompt. The answer appears in the cell's
# output as it is written — as plain text at most ten updates a second, then once more, rendered as
# Markdown, when it is complete (the saved notebook keeps only that final rendering). `-o NAME` keeps the
# `Response`. Every option is in notebook 04.

# %%
# %load_ext nbllm

# %% magic_args="-o verse" language="llm"
# Write me a 1 verse song about sparkling water.

# %%
print(f"{verse.usage.completion_tokens} tokens streamed in {verse.latency:.2f} s "
      f"(first after {verse.time_to_first_token:.2f} s); finish_reason={verse.finish_reason!r}")

# %% [markdown]
# ## Summary
#
# | | the seeds (LangChain) | nbllm |
# |---|---|---|
# | token streaming | only where the integration implements it | every provider |
# | `stream` / `astream` / `astream_events` | ✓ | ✓ (same names and events) |
# | `on_llm_new_token` callbacks | ✓ | ✓ (in the caller's thread) |
# | `token_usage` when streaming | empty | filled |
# | in a notebook | print tokens | `%%llm`: streamed, then rendered as Markdown |
#
# This run's numbers, as one JSON line (the test suite reads it):

# %%
import json

result = nbllm.LLM(temperature=0).generate(["Tell me a joke."])
print(json.dumps({
    "simulated": SIMULATED,
    "generate_token_usage": result.llm_output["token_usage"],
    "stream_usage": resp.usage.as_dict(),
    "events": kinds,
    "verse_tokens": verse.usage.completion_tokens,
}))
