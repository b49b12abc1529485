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
# # 01 · Async concurrency: ten LLM calls at once
#
# *Seeds 000/001 — LangChain's "how to use the async API for LLMs" (如何使用LLMs的异步API).*
#
# > **Runs offline, or on your keys.** With no API key configured, nbllm answers from its embedded
# > simulator — a real OpenAI/Anthropic-compatible HTTP server on a loopback port, with realistic latency,
# > streaming pace and rate limits — and says so once. Set `OPENAI_API_KEY` (or `API_KEY=sk-a,sk-b,sk-c` plus
# > `BASE_URL` in a `.env`, as the key-pool seed of notebook 03 does) and the same cells run unchanged
# > against your provider. The outputs saved in this notebook come from a simulator run (`make notebooks`).
#
# The seed's point: async support "对于同时调用多个LLMs特别有用，因为这些调用是网络限制的" — it is
# especially useful for calling LLMs several at a time, *because the calls are network-bound*. It timed ten
# `"Hello, how are you?"` calls with `agenerate`:
#
# | seed (LangChain + OpenAI, 2023) | 10 calls |
# |---|---|
# | serial (`generate` in a loop) | 5.77 s |
# | concurrent (`agenerate` + `asyncio.gather`) | 1.39 s (4.2×) |
#
# This notebook reruns that experiment with nbllm — the seed's code with one line changed — then with 100
# calls, and then asks what the speedup depends on.

# %%
import asyncio
import json
import time

import nbllm

llm = nbllm.LLM(temperature=0.9)     # the seed's OpenAI(temperature=0.9); no key -> the simulator
SIMULATED = llm.pool.simulated
print("answers come from", "nbllm's embedded simulator" if SIMULATED else f"your provider ({len(llm.pool)} key(s))")

# one call first, so that starting the simulator and opening the connection are not what we time
r = llm.invoke("Hello, how are you?")
print(f"{r.text!r}\nmodel {r.model}, {r.usage.total_tokens} tokens, {r.latency:.2f} s")


# %% [markdown]
# ## The seed's experiment
#
# The seed's code, with `from langchain.llms import OpenAI` / `OpenAI(temperature=0.9)` replaced by
# `nbllm.LLM(temperature=0.9)`. `generate` and `agenerate` take a list of prompts and return a LangChain-shaped
# `LLMResult`, so everything else is unchanged — including the top-level `await`, which works in a notebook
# cell (outside Jupyter the seed says to use `asyncio.run(generate_concurrently())`).

# %%
def generate_serially():
    llm = nbllm.LLM(temperature=0.9)
    for _ in range(10):
        resp = llm.generate(["Hello, how are you?"])
        print(resp.generations[0][0].text)


async def async_generate(llm):
    resp = await llm.agenerate(["Hello, how are you?"])
    print(resp.generations[0][0].text)


async def generate_concurrently():
    llm = nbllm.LLM(temperature=0.9)
    tasks = [async_generate(llm) for _ in range(10)]
    await asyncio.gather(*tasks)


s = time.perf_counter()
# If running this outside of Jupyter, use asyncio.run(generate_concurrently())
await generate_concurrently()
elapsed = time.perf_counter() - s
print("\033[1m" + f"Concurrent executed in {elapsed:0.2f} seconds." + "\033[0m")
concurrent_10 = elapsed

s = time.perf_counter()
generate_serially()
elapsed = time.perf_counter() - s
print("\033[1m" + f"Serial executed in {elapsed:0.2f} seconds." + "\033[0m")
serial_10 = elapsed

# %% [markdown]
# The simulator answers a given prompt deterministically, so the ten greetings are alike; a real model at
# `temperature=0.9` varies them, as in the seed's output.
#
# nbllm does not need the `asyncio.gather` wrapper: `agenerate` takes the whole list and runs it
# concurrently (by default as many in flight as your keys' limits and latency call for), returning one
# `LLMResult` with one generation per prompt, in order, and the summed token usage.

# %%
s = time.perf_counter()
result = await llm.agenerate(["Hello, how are you?"] * 10)
one_call_10 = time.perf_counter() - s

print(f"{len(result.generations)} generations in {one_call_10:.2f} s")
print(result.generations[0][0])
print(result.llm_output)

# %% [markdown]
# ## Timing table and chart

# %%
import pandas as pd

timings = pd.DataFrame(
    [
        ("serial: 10 × generate([...])", 10, serial_10, 5.77),
        ("concurrent: asyncio.gather of 10 agenerate", 10, concurrent_10, 1.39),
        ("concurrent: one agenerate([...] * 10)", 10, one_call_10, None),
    ],
    columns=["mode", "calls", "seconds", "seed (s)"],
)
timings["per call (s)"] = timings["seconds"] / timings["calls"]
timings["speedup"] = serial_10 / timings["seconds"]
timings["seed speedup"] = 5.77 / timings["seed (s)"]
timings.round(2)

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 2.8))
labels = ["serial", "gather", "one agenerate"]
seed_bars = ax.barh([l + "  (seed)" for l in labels[:2]], [5.77, 1.39], color="#bbbbbb")
ax.bar_label(seed_bars, fmt="%.2f s", padding=3, color="#666666")
bars = ax.barh([l + "  (nbllm)" for l in labels], timings["seconds"], color=["#d62728", "#1f77b4", "#2ca02c"])
ax.bar_label(bars, fmt="%.2f s", padding=3)
ax.invert_yaxis()
ax.set_xlabel("seconds for 10 × 'Hello, how are you?'")
ax.set_title(f"10 calls: {serial_10 / concurrent_10:.1f}× faster concurrently (seed: {5.77 / 1.39:.1f}×)")
ax.set_xlim(0, max(6.8, serial_10 * 1.25))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why concurrency helps: the calls are network-bound
#
# A call spends almost all of its time *waiting*: for the request to reach the provider, for the model to
# produce its first token (the time to first token), then for the rest of the answer at the model's pace.
# Python spends a millisecond or so of CPU on it. Serial code waits for each answer before sending the next
# question; concurrent code sends all ten, and the waits overlap. Nothing runs in parallel on the CPU — one
# thread and one event loop do it all — which is why `asyncio` fits (the table of seed 002, the key-pool
# article of notebook 03: "大量网络请求 → Async").
#
# Where the time of one call goes:

# %%
r = await nbllm.LLM(temperature=0.9, streaming=True).ainvoke("Hello, how are you?")
print(f"one call: {r.latency:.2f} s in total — {r.time_to_first_token:.2f} s until the first token, then "
      f"{r.usage.completion_tokens} tokens at ~{r.tokens_per_second:.0f} tokens/s")

# %% [markdown]
# ## 100 calls
#
# Same comparison, ten times more calls. `agenerate` keeps at most `concurrency` requests in flight (32 by
# default), so 100 calls go in about four waves.

# %%
prompts_100 = ["Hello, how are you?"] * 100

s = time.perf_counter()
for prompt in prompts_100:
    llm.generate([prompt])
serial_100 = time.perf_counter() - s

s = time.perf_counter()
result_100 = await llm.agenerate(prompts_100)
concurrent_100 = time.perf_counter() - s

s = time.perf_counter()
await llm.agenerate(prompts_100, concurrency=100)
all_at_once_100 = time.perf_counter() - s

print(f"serial:                     {serial_100:6.2f} s")
print(f"agenerate (adaptive):        {concurrent_100:6.2f} s  ({serial_100 / concurrent_100:4.1f}× faster)")
print(f"agenerate (concurrency=100): {all_at_once_100:6.2f} s  ({serial_100 / all_at_once_100:4.1f}× faster)")
print(f"token usage of the 100: {result_100.llm_output['token_usage']}")

# %% [markdown]
# ## What the speedup depends on
#
# With `L` the time of one call, `n` calls, at most `c` in flight, and a rate limit of `R` requests per
# second on your keys:
#
# * serial: `n × L`
# * concurrent: about `max(⌈n / c⌉ × L, n / R)`
#
# so the speedup is about `min(n, c, R × L)` — whichever runs out first:
#
# * **the number of calls `n`** — ten calls can be at most 10× faster; the seed got 4.2× against a real
#   provider, whose latencies vary more from call to call (the slowest call sets the concurrent time).
# * **the concurrency `c`** — how many requests are in flight. By default nbllm keeps as many as the keys'
#   limits and the observed latency call for (Little's law: rate × latency, shown as `in flight n/target`
#   in the progress line); `concurrency=` caps it. Below: the same 100 calls with `c` from 5 to 100.
# * **latency and pace (`L`)** — a longer answer or a slower model makes each call longer; that makes
#   *both* runs slower, but the waits still overlap, so the ratio stays. It is the absolute time saved that
#   grows with `L`.
# * **the limits (`R`)** — a provider answers only so many requests per minute per key. Once the rate limit
#   binds, more concurrency buys nothing: more keys (notebook 03) or a higher tier does.

# %%
sweep = []
for c in (5, 10, 20, 50, 100):
    s = time.perf_counter()
    await llm.agenerate(prompts_100, concurrency=c)
    sweep.append((c, time.perf_counter() - s))
sweep = pd.DataFrame(sweep, columns=["concurrency", "seconds"])
one_call = serial_100 / 100
sweep["predicted ⌈100/c⌉ × L"] = [-(-100 // c) * one_call for c in sweep["concurrency"]]
sweep["speedup"] = serial_100 / sweep["seconds"]
sweep.round(2)

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(sweep["concurrency"], sweep["seconds"], "o-", label="measured")
ax.plot(sweep["concurrency"], sweep["predicted ⌈100/c⌉ × L"], "--", color="gray", label="⌈n/c⌉ × L")
ax.set_xscale("log")
ax.set_xticks(sweep["concurrency"], [str(c) for c in sweep["concurrency"]])
ax.set_xlabel("concurrency (requests in flight)")
ax.set_ylabel("seconds for 100 calls")
ax.set_title(f"100 calls; serial takes {serial_100:.0f} s")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **A rate limit caps it.** The next cell starts a second simulator with one key limited to 1 200 requests
# per minute (20 per second, as a low provider tier would be) and sends it the same 100 calls with
# `concurrency=100`. nbllm learns the limit from the `x-ratelimit-*` headers of the first answer and paces
# the requests instead of collecting 429 errors, so the batch takes about `100 / 20 = 5` seconds however
# much concurrency you give it — here `R × L ≈ 20 × 0.45 ≈ 9` calls in flight are all the limit allows.
# (This cell always uses a local simulator, also when you have keys: it needs a key with a known, small
# limit.)

# %%
import secrets

from nbllm.sim import KeyProfile, SimConfig, Simulator

limited_key = "sk-limited-" + secrets.token_hex(16)     # made up here; never printed
with Simulator(SimConfig(keys={limited_key: KeyProfile(alias="limited", rpm=1200)}, window_seconds=1)) as sim:
    limited = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key=limited_key, store=False)
    await limited.ainvoke("Hello, how are you?")     # the first answer tells nbllm the key's limit
    s = time.perf_counter()
    await limited.agenerate(prompts_100, concurrency=100)
    limited_100 = time.perf_counter() - s
    sim_stats = sim.stats()["limited"]

print(f"100 calls on a 1 200 rpm key: {limited_100:.2f} s (unlimited: {all_at_once_100:.2f} s)")
print(f"429 answers from the provider: {sim_stats['rate_limited']}; most requests admitted in any minute: {sim_stats['peak_rpm']}")
limited.pool.status()

# %% [markdown]
# ## Summary
#
# Concurrency turns `n` waits into about one wait — up to the concurrency you allow and the rate your keys
# allow. Ten calls reproduce the seed's finding (serial vs concurrent: see the table above; the seed had
# 5.77 s vs 1.39 s); with 100 calls the gap grows to what the limits let it be. `await llm.agenerate(prompts)`
# (or `llm.amap`, notebook 03) gives the concurrency without the `asyncio.gather` plumbing; `llm.generate`
# in a loop is the serial baseline.
#
# The last cell prints this run's numbers as one JSON line (the test suite reads it).

# %%
summary = {
    "simulated": SIMULATED,
    "serial_10": round(serial_10, 3),
    "concurrent_10": round(concurrent_10, 3),
    "one_call_10": round(one_call_10, 3),
    "speedup_10": round(serial_10 / concurrent_10, 2),
    "serial_100": round(serial_100, 3),
    "concurrent_100": round(concurrent_100, 3),
    "all_at_once_100": round(all_at_once_100, 3),
    "speedup_100": round(serial_100 / all_at_once_100, 2),
    "limited_100": round(limited_100, 3),
}
print(json.dumps(summary))
