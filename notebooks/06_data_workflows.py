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
# # 06 · Data workflows: a table through a prompt, within a budget
#
# > **Runs offline, or on your keys.** With no API key configured, nbllm answers from its embedded
# > simulator, and says so once. Its answers are placeholder prose (except arithmetic, which it computes,
# > and greetings); with `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` set, the same cells return real labels.
# > The outputs saved here come from a simulator run (`make notebooks`).
#
# What a data scientist mostly does with an LLM: run one template over the rows of a table, look at the
# answers as a column, compare models, and not overspend. Here, each of these is one cell:
#
# * `%llm context {expr}` — what a variable becomes in a prompt (a DataFrame as its shape, dtypes and
#   first rows, within a token budget);
# * `%%llm --over reviews --to sentiment` — the cell's prompt once per row, the answers into a column;
# * `--estimate` — what that would cost and take, before sending anything;
# * `--budget 0.002` — pause before spending more; rerun with a higher budget to continue;
# * `-m a,b` — two models side by side.
#
# The Python equivalents: `await llm.afill(df, template, to=...)`, `llm.estimate(prompts)`,
# `llm.amap(prompts, budget=...)`, `await llm.last_batch.resume(budget=...)`, `nbllm.prices()`.

# %%
import json

import pandas as pd

import nbllm

# %load_ext nbllm
SIMULATED = nbllm.LLM().pool.simulated
print("answers come from", "nbllm's embedded simulator" if SIMULATED else "your provider")

# %% [markdown]
# A table of 200 product reviews:

# %%
PRODUCTS = ["kettle", "headphones", "desk lamp", "backpack", "coffee grinder"]
OPENINGS = ["Works exactly as described,", "Stopped working after a week,", "Decent for the price,",
            "Honestly the best purchase this year,", "Arrived scratched,"]
ENDINGS = ["and it looks great on my desk.", "and support never answered my emails.", "though a bit loud.",
           "and I would buy it again.", "the replacement took a month."]
reviews = pd.DataFrame({
    "product": [PRODUCTS[i % 5] for i in range(200)],
    "stars": [1 + (i * 7) % 5 for i in range(200)],
    "text": [f"{OPENINGS[i % 5]} {ENDINGS[(i // 5) % 5]}" for i in range(200)],
})
reviews.head()

# %% [markdown]
# ## What `{reviews}` becomes in a prompt
#
# `str(df)` of a large table is a wall of padded columns — and of a million-row one, far too many
# tokens. In a `%%llm` prompt, `{reviews}` becomes its shape, dtypes and as many first rows as fit the
# budget (`--context-tokens`, default 3000 per variable), with a note of what was left out. Long text,
# lists and dicts are cut the same way. `%llm context` shows exactly what would be sent:

# %%
# %llm_config context_tokens=300
# %llm context reviews

# %% [markdown]
# ## Before sending: `--estimate`
#
# Prompt tokens are counted (tiktoken where its encoding is at hand, otherwise an approximation measured
# against it), output tokens are bounded by `--max-tokens` (or guessed from earlier answers in the store),
# prices come from the `genai-prices` data with its date, and the time from the keys' known limits.
# Nothing is sent:

# %% magic_args="--over reviews --to sentiment --max-tokens 20 --estimate" language="llm"
# Classify the sentiment of this review as positive, negative or neutral. Answer with one word.
# Review: {text}

# %% [markdown]
# ## A budget that pauses
#
# `--budget 0.002` (dollars): before each request, its worst case (prompt tokens plus `max_tokens`) is
# reserved, so even with 32 requests in flight the batch pauses *before* it could spend more. Paused, not
# failed: the finished rows are in the table, and the cell says how to continue.

# %% magic_args="--over reviews --to sentiment --max-tokens 20 --budget 0.002" language="llm"
# Classify the sentiment of this review as positive, negative or neutral. Answer with one word.
# Review: {text}

# %%
paused_rows = int(reviews["sentiment"].notna().sum())
print(f"{paused_rows} of {len(reviews)} rows answered before the pause")
reviews[["product", "stars", "sentiment"]].head()

# %% [markdown]
# ## Continue: the same cell with a higher budget
#
# Every answer went to nbllm's store as it arrived, so rerunning the cell sends only the rows still
# missing — the budget applies to what is spent now. (An interrupted cell — ■ — continues the same way.)

# %% magic_args="--over reviews --to sentiment --max-tokens 20 --budget 0.01" language="llm"
# Classify the sentiment of this review as positive, negative or neutral. Answer with one word.
# Review: {text}

# %%
print(f"{int(reviews['sentiment'].notna().sum())} of {len(reviews)} rows answered")

# %% [markdown]
# ## The same in Python: `afill`, and `resume`
#
# `llm.afill` is what `--over` is built on. Here the model computes each order's total as JSON, and pandas
# checks its work — the simulator computes arithmetic, deliberately wrong a few percent of the time, as
# models are. With `budget=`, a paused batch raises `BatchPaused` (holding everything finished), and
# `await llm.last_batch.resume(budget=…)` continues it without resending anything.

# %%
orders = pd.DataFrame({"qty": [1 + i % 7 for i in range(200)], "price": [5 + (i * 13) % 40 for i in range(200)]})
llm = nbllm.LLM("gpt-4o-mini", max_tokens=40)
template = 'Return the result as JSON: {"expression": "{qty} * {price}", "result": ?}'
print(llm.estimate([template.replace("{qty}", "3").replace("{price}", "12")] * len(orders)))
try:
    await llm.afill(orders, template, to="total", budget=0.002, progress="none")
except nbllm.BatchPaused as paused:
    print(f"\n{paused}\n")
    kept_at_pause = int(orders["total"].notna().sum())
await llm.last_batch.resume(budget=0.01)

# %%
def result_of(text: str) -> float | None:
    """The "result" of a JSON answer (also inside a ```json fence), or None when it is not the JSON asked for."""
    try:
        return json.loads(text.strip().removeprefix("```json").removesuffix("```"))["result"]
    except (ValueError, KeyError, TypeError):
        return None


orders["model_total"] = orders["total"].map(result_of)
orders["right"] = orders["model_total"] == orders["qty"] * orders["price"]
print(f"the model's totals are right for {orders['right'].mean():.0%} of the orders; "
      f"{orders['model_total'].isna().sum()} answers were not the JSON asked for")
orders[~orders["right"]].head()

# %% [markdown]
# ## Two models side by side
#
# `-m a,b` streams both answers at once into one output, one column per model, each with its time to first
# token, tokens, tokens/s and cost; `-o NAME` holds `{model: Response}`. The PromptPanel has the same as
# its "Compare" toggle.

# %% magic_args="-m gpt-4o-mini,anthropic:claude-haiku-4-5 -o both" language="llm"
# Here are customer reviews: {reviews}
# What is the most common complaint? Answer in two sentences.

# %%
for model, response in both.items():
    print(f"{model:>28}: {response.usage.completion_tokens} tokens, first token after "
          f"{response.time_to_first_token:.2f} s, prompt {response.usage.prompt_tokens} tokens")

# %% [markdown]
# With `--over`, each model gets its own column (`label[model]`):

# %%
sample = reviews.head(12).copy()

# %% magic_args="--over sample --to label -m gpt-4o-mini,anthropic:claude-haiku-4-5 --max-tokens 10" language="llm"
# One word for the mood of this review: {text}

# %% [markdown]
# ## Prices
#
# Costs come from the `genai-prices` data (maintained by the pydantic team; read from the installed
# package, never fetched) with cached-input and batch rates; `nbllm.set_price` overrides a model's price
# (a fine-tune, a local model, a negotiated rate).

# %%
nbllm.prices("gpt-4o-mini", "gpt-4o", "anthropic:claude-haiku-4-5")

# %% [markdown]
# This run's results, as one JSON line (the test suite reads it):

# %%
print(json.dumps({
    "simulated": SIMULATED,
    "rows": len(reviews),
    "paused_rows": paused_rows,
    "answered_rows": int(reviews["sentiment"].notna().sum()),
    "kept_at_pause": kept_at_pause,
    "orders_answered": int(orders["total"].notna().sum()),
    "orders_right": float(orders["right"].mean()),
    "compared": sorted(both),
    "sample_columns": list(sample.columns),
}))
