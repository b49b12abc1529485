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
# # 05 · Provider batch APIs: half the price, and a kernel restart that loses nothing
#
# > **Runs offline, or on your keys.** With no API key configured, this notebook starts nbllm's simulator
# > in a separate process (`python -m nbllm sim`), which serves OpenAI's Files + Batches API and Anthropic's
# > Message Batches API as well as chat. With `OPENAI_API_KEY` set (or `API_KEY` + `BASE_URL` in a `.env`)
# > the same cells submit real batches, billed to you. The saved outputs come from a simulator run.
#
# For 5 000 prompts nobody needs the answers within a minute. OpenAI and Anthropic both sell a batch
# interface: you upload every request at once, the provider answers them within 24 hours, and charges
# **half the list price**, with rate limits far above the online ones. In nbllm it is one word:
#
# ```python
# rows = await llm.amap(prompts)                  # online: one request per prompt, as fast as the keys allow
# rows = await llm.amap(prompts, mode="batch")    # the same results, in the same order, at half the price
# ```
#
# Behind `mode="batch"`: the requests become batch lines (the body an online call would send), split by the
# providers' limits; the store records the job — which prompts, which provider batch, which key alias — before
# anything is sent; nbllm polls with backoff, then reads the result lines into the same `Response` and
# `Failure` objects as online mode, and into the same store. So a rerun after an interrupt, a kernel restart
# or `kill -9` re-attaches to the batches already submitted instead of paying again.

# %% [markdown]
# ## Parameters
#
# `N` prompts (set `NBLLM_TUTORIAL_N` for a quicker run; the test suite uses 1 000), and how long the
# simulator takes per batch. A real batch takes minutes to hours; the simulator compresses that.

# %% tags=["parameters"]
import os

N = int(os.environ.get("NBLLM_TUTORIAL_N", 5_000))
N_RESTART = min(N, 1_000)  # prompts of the kernel-restart demo
BATCH_SECONDS = 15

# %% [markdown]
# ## A provider: your keys, or the simulator in another process
#
# The simulator runs as a separate process, like a provider: batches live there, not in this kernel, so
# they survive when a kernel dies. The keys go into a `.env` in a scratch folder (the working directory
# from here on), which `nbllm.KeyPool.from_env()` reads — here and in the second kernel started below.

# %%
import json
import pathlib
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request

import nbllm

notebook_dir = os.getcwd()
workdir = pathlib.Path(tempfile.mkdtemp(prefix="nbllm-batches-"))
REAL_KEYS = bool(os.environ.get("API_KEY") or os.environ.get("OPENAI_API_KEY"))
server = sim_url = None
if REAL_KEYS:
    print(f"Using YOUR keys: about {N + N_RESTART:,} requests go into real batches, billed at the batch price.")
else:
    server = subprocess.Popen(
        [sys.executable, "-m", "nbllm", "sim", "--port", "0", "--ttft", "0.15", "--tps", "100",
         "--batch-seconds", str(BATCH_SECONDS)],
        stdout=subprocess.PIPE, text=True,
    )
    sim_url = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
    (workdir / ".env").write_text(f"API_KEY=sk-sim-{secrets.token_hex(16)}\nBASE_URL={sim_url}/v1\n")
    print(f"No key configured: the simulator runs in process {server.pid} at {sim_url}; "
          f"its batches take {BATCH_SECONDS} s.")
os.chdir(workdir)


def batches_created() -> int | None:
    """How many provider batches the simulator has been asked to create (None on real keys)."""
    if sim_url is None:
        return None
    with urllib.request.urlopen(sim_url + "/sim/stats") as answer:
        return json.load(answer)["batches"]["batches_created"]


pool = nbllm.KeyPool.from_env()
pool.status()

# %% [markdown]
# ## 5 000 prompts, online
#
# Online first, with a store of its own, so that the batch run below finds nothing cached. `Batch.progress`
# keeps the counts, tokens and the estimated cost.

# %%
prompts = [f"What is {i % 97} + {i % 89} x {i % 13}? Answer as JSON {{\"result\": ?}}" for i in range(N)]
online_llm = nbllm.LLM("gpt-4o-mini", pool=pool, store=workdir / "online.sqlite3", concurrency=128)

started = time.perf_counter()
online_run = online_llm.amap(prompts)
online = await online_run
online_seconds = time.perf_counter() - started
print(f"online: {sum(r.ok for r in online):,}/{N:,} answered in {online_seconds:.1f} s")

# %% [markdown]
# ## The same prompts, as a provider batch
#
# `mode="batch"` is the only change. The simulator's batches take seconds, so polling starts at 1 s and, for
# this notebook, never waits longer than 5 s; against a provider the default backs off to every 3 minutes.
# The bar shows the provider's own counts — validating, in progress, completed, failed — and moves as the
# provider finishes lines; the answers arrive when the batch ends.

# %%
from nbllm import BatchAPIOptions, PollSchedule

STORE = workdir / "batches.sqlite3"
llm = nbllm.LLM("gpt-4o-mini", pool=pool, store=STORE)
poll = BatchAPIOptions(poll=PollSchedule(first=1.0, longest=5.0))

started = time.perf_counter()
batch_run = llm.amap(prompts, mode="batch", batch_api=poll)
batch = await batch_run
batch_seconds = time.perf_counter() - started
same = sum(a.text == b.text for a, b in zip(online, batch))
print(f"batch: {sum(r.ok for r in batch):,}/{N:,} answered in {batch_seconds:.1f} s; "
      f"{same:,} of {N:,} answers identical to the online ones")

# %% [markdown]
# ### Time and cost
#
# Costs are **estimates at list prices** (nbllm's price table for `gpt-4o-mini`), not a bill; the batch
# price is half the list price on both providers. On the simulator the batch takes as long as
# `--batch-seconds` says; a real one takes minutes to hours, which is the trade.

# %%
online_cost, batch_cost = online_run.progress.cost, batch_run.progress.cost
print(f"{'':8}{'time':>10}{'cost (est., list prices)':>28}")
print(f"{'online':8}{online_seconds:>9.1f}s{online_cost:>27.4f}$")
print(f"{'batch':8}{batch_seconds:>9.1f}s{batch_cost:>27.4f}$")
print(f"the batch costs {batch_cost / online_cost:.0%} of the online run")

# %% [markdown]
# ## A kernel restart in the middle
#
# A second kernel — started here through `jupyter_client`, as JupyterLab starts one — sends a new batch
# and waits for it. Once the batch is submitted, the kernel is **restarted** (`restart_kernel(now=True)`
# kills its process, like *Kernel → Restart* or a crash), in the middle of the wait.

# %%
from jupyter_client.manager import start_new_kernel

restart_prompts = [f"What is {i} x 3? Answer as JSON {{\"result\": ?}}" for i in range(N_RESTART)]
(workdir / "restart_prompts.json").write_text(json.dumps(restart_prompts))
WAITING_CELL = f"""
import json, nbllm
llm = nbllm.LLM("gpt-4o-mini", pool=nbllm.KeyPool.from_env(), store={str(STORE)!r})
prompts = json.load(open("restart_prompts.json"))
rows = await llm.amap(prompts, mode="batch", progress="none")
"""
km, kc = start_new_kernel(kernel_name="python3", cwd=str(workdir), stderr=subprocess.DEVNULL)  # its log: not here
before = batches_created()
kc.execute(WAITING_CELL)
deadline = time.monotonic() + 120
while not any(b.id for b in nbllm.provider_batches(store=llm.store) if b.open) and time.monotonic() < deadline:
    time.sleep(0.2)
time.sleep(1.0)  # it is now waiting for the provider
km.restart_kernel(now=True)
print(f"restarted the other kernel while it waited; provider batches created: {before} -> {batches_created()}")
kc.stop_channels()
km.shutdown_kernel(now=True)

# %% [markdown]
# The job record in the store still knows the batch: `nbllm.provider_batches()` lists what was submitted —
# provider, id, status as last seen, counts, when, and which key alias created it (never the key). A batch
# can be cancelled from here (`.cancel()`, or `nbllm.cancel_provider_batch(id)`); a restart or an interrupt
# never cancels one.

# %%
nbllm.provider_batches(store=llm.store, open_only=True)

# %% [markdown]
# ## The re-attach
#
# Running the same call again — here, or in the restarted kernel — finds those prompts in the job record,
# polls the existing batch with the key alias that created it, and collects its answers. Nothing is
# submitted again: the simulator's count of created batches does not move.

# %%
before = batches_created()
rerun = await llm.amap(restart_prompts, mode="batch", batch_api=poll)
after = batches_created()
print(f"{sum(r.ok for r in rerun):,}/{N_RESTART:,} answered; provider batches created during the rerun: "
      f"{None if before is None else after - before}")
nbllm.provider_batches(store=llm.store)

# %% [markdown]
# ## What else `mode="batch"` does
#
# * **Failures.** Errored lines (5xx, 429) and expired ones go into a follow-up batch (up to
#   `BatchAPIOptions(max_rounds=3)`), or online at once with `fallback="online"`; a request the provider
#   rejects fails at once. Each item's final `Failure` says what happened (`ProviderBatchError.fate`:
#   expired, cancelled, …).
# * **Limits.** A job over the providers' limits (OpenAI: 50 000 requests or 200 MB per file, one model per
#   file; Anthropic: 100 000 requests or 256 MB) is split into several batches.
# * **The cache.** Batch answers go into the same results table as online ones: a later online run is
#   served from the store, and a batch run sends nothing the store already holds.
#
# Tidy up: back to the notebook's folder, the simulator stopped.

# %%
os.chdir(notebook_dir)
if server is not None:
    server.terminate()
    server.wait(10)
    server.stdout.close()
summary = {
    "simulated": not REAL_KEYS, "N": N, "N_restart": N_RESTART,
    "online_ok": sum(r.ok for r in online), "batch_ok": sum(r.ok for r in batch), "same_answers": same,
    "online_seconds": round(online_seconds, 2), "batch_seconds": round(batch_seconds, 2),
    "online_cost": online_cost, "batch_cost": batch_cost,
    "rerun_ok": sum(r.ok for r in rerun), "rerun_cached": sum(r.cached for r in rerun),
    "batches_created_by_rerun": None if before is None else after - before,
    "batches_recorded": len(nbllm.provider_batches(store=llm.store)),
}

# %% [markdown]
# This run's numbers, as one JSON line (the test suite reads it):

# %%
print(json.dumps(summary))
