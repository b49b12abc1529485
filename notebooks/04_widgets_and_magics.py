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
# # 04 · Magics and the prompt panel
#
# > **Runs offline, or on your keys.** With no API key configured, nbllm answers from its embedded
# > simulator — a real OpenAI/Anthropic-compatible HTTP server on a loopback port, with realistic latency,
# > streaming pace and rate limits — and says so once. Set `OPENAI_API_KEY` (or `API_KEY=sk-a,sk-b,sk-c` plus
# > `BASE_URL` in a `.env`, as the key-pool seed of notebook 03 does) and the same cells run unchanged
# > against your provider. The outputs saved in this notebook come from a simulator run (`make notebooks`).
#
# `%load_ext nbllm` adds three magics:
#
# * `%%llm` — the cell is the prompt; the answer streams into the cell's output and is rendered when complete;
# * `%llm PROMPT` — the same for a one-line prompt, plus the commands `%llm status`, `%llm chat`,
#   `%llm chat reset`;
# * `%llm_config` — shows and changes the defaults of both.
#
# and `nbllm.PromptPanel()` is a prompt box with Send / Stop / Clear whose answer streams in below it.
#
# A `%%llm` cell runs as a top-level `await` on the kernel's own event loop, so while an answer streams the
# kernel still handles widget clicks, ■ (interrupt) stops the answer and keeps the partial text, and "Run
# All" keeps the cells in order.

# %%
import nbllm

# %load_ext nbllm
SIMULATED = nbllm.LLM().pool.simulated
print("answers come from", "nbllm's embedded simulator" if SIMULATED else "your provider")

# %% [markdown]
# ## `%%llm`
#
# The simplest cell: the body is the prompt, the answer streams in as plain text (at most ten updates a
# second) and is rendered as Markdown when it is complete.

# %% language="llm"
# Write me a 1 verse song about sparkling water.

# %% [markdown]
# ## Every option
#
# | option | meaning |
# |---|---|
# | `-m`, `--model MODEL` | model for this cell, e.g. `gpt-4o`, `anthropic:claude-haiku-4-5` |
# | `-s`, `--system TEXT` | system prompt for this cell (quote it: `-s "Be brief."`) |
# | `-t`, `--temperature T` | sampling temperature |
# | `--max-tokens N` | most tokens in the answer |
# | `-f`, `--format {markdown,text,code,json,html}` | how the finished answer is rendered (default markdown) |
# | `-o`, `--output NAME` | keep the `Response` in the variable `NAME` |
# | `--no-stream` | show the answer only when it is complete |
# | `-c`, `--chat` | continue the conversation of earlier `--chat` cells |
# | `--reset` | start a new conversation first |
# | `--no-interpolate` | send `{braces}` as written |
#
# `{name}` (or `{expr}`, `{items[0]}`, `{x!r}`) in the prompt is filled from your variables; anything else in
# braces — JSON, `{}` — is left alone, and `{{`/`}}` are literal braces.

# %% [markdown]
# ### `-m` model, `-s` system prompt, `-t` temperature, `-o` output
#
# (The simulator answers every model name and ignores the system prompt; a real model would follow it.)

# %% magic_args="-m gpt-4o -s \"You are a concise assistant. Answer in one sentence.\" -t 0 -o greeting" language="llm"
# Hello, how are you?

# %%
print(repr(greeting.text))
print(f"model={greeting.model}, usage={greeting.usage}, latency={greeting.latency:.2f} s, "
      f"first token after {greeting.time_to_first_token:.2f} s")

# %% [markdown]
# ### `--max-tokens`
#
# The answer stops after 12 tokens; `finish_reason` says why.

# %% magic_args="--max-tokens 12 -o short" language="llm"
# Write a few paragraphs about rivers.

# %%
print(short.usage.completion_tokens, "tokens, finish_reason =", repr(short.finish_reason))

# %% [markdown]
# ### `-f`: markdown, text, code, json, html
#
# `-f text` shows the answer as it is, without rendering:

# %% magic_args="-f text" language="llm"
# Write me a 1 verse song about sparkling water.

# %% [markdown]
# `-f json` parses the answer (bare, or inside a fenced block) and shows it as collapsible JSON. The prompt
# is the arithmetic template of seed 002 (notebook 03) — written with plain braces: `{question}` is filled
# from the variable, the JSON braces around it are left alone.

# %%
question = "37 + 12 x 5"

# %% magic_args="-f json -o arithmetic" language="llm"
# 请将以下表达式的计算结果返回为 JSON 格式：
# {
#   "expression": "{question}",
#   "result": ?
# }

# %%
import json
import re

answer = json.loads(re.search(r"\{.*?\}", arithmetic.text, re.DOTALL).group(0))
print(answer, "— right" if answer["result"] == 37 + 12 * 5 else "— wrong")

# %% [markdown]
# `-f code` shows the answer's first fenced code block (or the whole answer) as code, and in JupyterLab
# offers it as the next cell. `-f html` renders the answer as HTML. (The simulator writes prose, not
# programs or markup — with a real model these two look like what they are meant for.)

# %% magic_args="-f code" language="llm"
# Write a Python function that returns the square of a number.

# %% magic_args="-f html" language="llm"
# Write a short paragraph about rivers.

# %% [markdown]
# ### `--no-stream`
#
# The output stays empty (`…`) until the whole answer is there, then shows it at once.

# %% magic_args="--no-stream" language="llm"
# Hello, how are you?

# %% [markdown]
# ### `-c` / `--chat`: a conversation over several cells
#
# Each `--chat` cell sends the earlier `--chat` turns along with its own prompt. `%llm chat` shows the
# conversation, `%llm chat reset` (or `--reset` on a cell) starts over.

# %% magic_args="--chat --reset" language="llm"
# Hello, how are you?

# %% magic_args="--chat" language="llm"
# Write me a 1 verse song about the question I asked you.

# %%
# %llm chat

# %%
# %llm chat reset

# %% [markdown]
# ### `--no-interpolate`
#
# Send the prompt exactly as written, braces and all:

# %% magic_args="--no-interpolate -f text" language="llm"
# What does {question} mean in a Python format string? Answer in one sentence.

# %% [markdown]
# ## `%llm`: one line
#
# `%llm PROMPT` asks a one-line prompt; with options, put `--` between them and the prompt.

# %%
# %llm Hello, how are you?

# %%
# %llm -f text -o line_answer -- What is 6 x 7?

# %% [markdown]
# `%llm status` shows the key pool the magics use: each key by alias and masked form, its state, requests in
# flight and done, 429s, tokens, and its limits (given, or learned from the provider — marked `~`).

# %%
# %llm status

# %% [markdown]
# ## `%llm_config`
#
# Without arguments it shows the settings; `NAME=VALUE` changes them for the session (`none` clears one). The
# same names work in `ipython_config.py` as `c.NbllmMagics.<name>`. Keys are never typed into a cell:
# `api_key_env=NAME` names the environment variable that holds one (`%llm_config api_key=…` is refused,
# since the key would be saved with the notebook).

# %%
# %llm_config

# %%
# %llm_config model=gpt-4o-mini temperature=0 max_tokens=200 format=markdown

# %% language="llm"
# Hello, how are you?

# %%
# %llm_config temperature=none max_tokens=none

# %% [markdown]
# ## `nbllm.PromptPanel`
#
# A prompt box, the model settings (model, temperature, max tokens, system prompt), Send / Stop / Clear, the
# streamed answer with its numbers (tokens, tokens/s, time to first token, key) and the conversation so far.
# Run the next cell in Jupyter to get the panel; type and click Send.

# %%
panel = nbllm.PromptPanel(system="Answer in one paragraph.")
panel

# %% [markdown]
# A notebook run without a browser (like the one that saved these outputs) cannot click, so the next cells
# drive the panel from code. `panel.send(prompt)` does what Send does and returns the running answer, an
# `asyncio.Task`: `await` it for the `Response`. The answer streams into the panel above, and the panel keeps
# the conversation: the second question is asked after the first exchange. `on_answer` registers a callback.

# %%
answers = []
panel.on_answer(answers.append)

first = await panel.send("Hello, how are you?")
print(repr(first.text))

panel.prompt = "Write me a 1 verse song about sparkling water."  # what typing in the box does
second = await panel.send()                                      # Send, with the box's text
print(second.text)
print(f"\n{len(panel.history)} messages in panel.history; on_answer was called {len(answers)} times")

# %%
for message in panel.history:
    print(f"{message['role']:>9}: {message['content'][:70]!r}")

# %% [markdown]
# This run's results, as one JSON line (the test suite reads it):

# %%
print(json.dumps({
    "simulated": SIMULATED,
    "greeting_usage": greeting.usage.as_dict(),
    "short_finish_reason": short.finish_reason,
    "arithmetic": answer,
    "line_answer": line_answer.text,
    "panel_messages": len(panel.history),
    "panel_answer": panel.answer,
}, ensure_ascii=False))
