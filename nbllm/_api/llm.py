"""``LLM``: the one object users hold — settings plus every way to call the model.

    llm = nbllm.LLM("openai:gpt-4o-mini", temperature=0)
    print(llm.invoke("Hello, how are you?").text)
    async for chunk in llm.astream("Write me a 1 verse song about sparkling water."):
        print(chunk, end="|", flush=True)
    results = await llm.amap(prompts)
    r = llm.invoke(prompt, schema=Result)       # r.parsed: a validated Result (re-asked until it fits)
    df = await llm.afill(df, "Classify the sentiment of this review: {text}", to="sentiment")
    llm.estimate(prompts)                                  # cost and time before sending anything

Single calls go through ``self.runner`` (a ``CallRunner``: cache lookup → key lease → request → stream →
store), batches through ``Batch`` on the same runner. Every call runs on the engine loop; the async
methods await it from any loop and the sync methods block on it. Callbacks run in the caller's thread.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .. import _engine
from .._batchapi import BatchAPIOptions
from .._call import CallRunner, LLMSettings, check_concurrency
from .._exceptions import ConfigurationError
from .._keys import KeyPool
from .._pricing import prefetch as prefetch_prices
from .._prompts import DEFAULT_CONTEXT_TOKENS
from .._store import Store
from .._types import LLMResult, MessagesInput, Response, StreamEvent
from .batch import Batch
from .estimate import Estimate
from .fill import Fill, fill_prompts
from .hedging import hedge_share
from .provider_batch import ProviderBatchRun
from .results import Results

__all__ = ["LLM"]


class LLM(LLMSettings):
    """A model plus settings plus the keys to call it with.

    ``model``: ``"openai:gpt-4o-mini"``, ``"anthropic:claude-haiku-4-5"``, ``"ollama:llama3"``… or a bare
    name (with ``base_url`` for any OpenAI-compatible server). Keys: ``api_key=``, ``keys=[...]``,
    ``pool=KeyPool(...)``, or (default) the environment / ``.env`` — and the embedded simulator if none.
    ``store``: a path or Store to record every answer to, ``False`` for none (default: the shared store).
    ``cache``: read answers back from the store (default: only in batches, see ``amap``).
    ``schema``: a Pydantic model class or a JSON Schema dict; every answer is then parsed and validated
    into ``Response.parsed``, and re-asked with the errors up to ``max_reasks`` times (default 2). Both
    are also accepted per call: ``invoke(prompt, schema=Result)``, ``amap(prompts, schema=Result)``…
    ``concurrency``: the most requests a batch keeps in flight; None (default): as many as the keys'
    limits and latency call for (Little's law, at most 1024; see ``nbllm._keys.admission``).
    Extra keyword arguments are sent to the provider as they are (``top_p=…``, ``seed=…``…).
    """

    last_results: list[Any] | None = None  # the latest batch's results, also when it was interrupted
    last_batch: Batch | Fill | None = None  # the latest batch or fill: ``await llm.last_batch.resume(budget=…)``

    def __repr__(self) -> str:
        model = self.model or "(default model)"
        return f"LLM({model!r}, keys={'custom' if self.explicit_pool else 'from environment'})"

    @functools.cached_property
    def runner(self) -> CallRunner:
        """The ``CallRunner`` that makes this LLM's calls (created on first use; it reads these settings)."""
        prefetch_prices()  # a batch's first price lookup then finds the table imported
        return CallRunner(self)

    @property
    def pool(self) -> KeyPool:
        """The keys this LLM's calls use (resolved on first use)."""
        return self.runner.pool

    @property
    def store(self) -> Store | None:
        """Where answers are recorded (None with ``store=False``)."""
        return self.runner.store

    # ---- single calls -------------------------------------------------------------------------------
    async def ainvoke(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Response:
        """Ask once and return the finished Response (text, usage, model, finish_reason, latency).

        With ``schema=`` (here or on the LLM): ``.parsed`` holds the validated answer; an answer that
        never fits raises ``StructuredOutputError`` (with every raw answer in ``.attempts``).
        """
        return await self.runner.ainvoke(prompt, cache=cache, overrides=overrides)

    def invoke(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Response:
        """Blocking ``ainvoke``; works in scripts, threads and notebook cells alike."""
        return _engine.run_sync(self.ainvoke(prompt, cache=cache, **overrides))

    __call__ = invoke

    async def astream(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> AsyncIterator[str]:
        """Yield the answer's text chunks as they arrive (a cached answer comes as one chunk)."""
        self._refuse_schema(overrides, "astream")
        async for item in self.runner.events(prompt, stream=True, cache=cache, overrides=overrides):
            if isinstance(item, str):
                yield item
            elif item.cached:
                yield item.text

    def stream(self, prompt: MessagesInput, *, cache: bool | None = None, **overrides: Any) -> Iterator[str]:
        """Blocking ``astream``: a plain iterator of text chunks."""
        return _engine.iter_on_engine(self.astream(prompt, cache=cache, **overrides))

    async def astream_events(self, prompt: MessagesInput, version: str = "v1", **overrides: Any) -> AsyncIterator[StreamEvent]:
        """``on_llm_start``, one ``on_llm_stream`` per chunk, then ``on_llm_end`` (or ``on_llm_error``)."""
        self._refuse_schema(overrides, "astream_events")
        run_id, name = str(uuid.uuid4()), "nbllm.LLM"
        cache = overrides.pop("cache", None)
        yield StreamEvent("on_llm_start", name, {"input": prompt}, run_id)
        try:
            async for item in self.runner.events(prompt, stream=True, cache=cache, overrides=overrides):
                if isinstance(item, str):
                    yield StreamEvent("on_llm_stream", name, {"chunk": item}, run_id)
                else:
                    yield StreamEvent("on_llm_end", name, {"output": item}, run_id)
        except Exception as error:
            yield StreamEvent("on_llm_error", name, {"error": error}, run_id)
            raise

    def _refuse_schema(self, overrides: dict[str, Any], method: str) -> None:
        if overrides.get("schema", self.schema) is not None:
            raise ConfigurationError(
                f"{method}() streams raw text, which a structured answer cannot promise: an answer that fails "
                "validation is re-asked. Use invoke()/ainvoke() or amap() with schema=, or pass schema=None."
            )

    def panel(self, **kwargs: Any) -> Any:
        """A PromptPanel widget that sends its prompts through this LLM (its keys, limits and store)."""
        from .._widgets import (
            PromptPanel,  # imports ipywidgets: only when a panel is asked for
        )

        return PromptPanel(llm=self, **kwargs)

    # ---- many calls ---------------------------------------------------------------------------------
    def amap(self, prompts: Sequence[MessagesInput], *, cache: bool | None = None, progress: str | None = None,
             concurrency: int | None = None, mode: str = "online", fallback: str | None = None,
             batch_api: BatchAPIOptions | None = None, budget: float | None = None,
             budget_tokens: int | None = None, desc: str = "nbllm", hedge: bool | float | None = None,
             **overrides: Any) -> Batch:
        """Run many prompts; ``await`` the result for a list in input order, or ``async for i, r in ...``.

        Every answer is stored as it finishes; with ``cache`` (default on for batches) a rerun sends only
        what is missing. A failed item is a ``Failure`` in the list, not an exception. The awaited list is
        a ``Results``: ``.to_dataframe()`` and ``.summary()``. With ``schema=`` every item is parsed and
        validated (``.parsed``), re-asked up to ``max_reasks`` times; a stored answer is judged again
        offline, so a rerun with a changed schema re-asks only what no longer fits.

        ``budget`` (USD) or ``budget_tokens``: the batch pauses before it would spend more, raising
        ``BatchPaused`` with everything finished; ``await llm.last_batch.resume(budget=…)`` (or a rerun)
        continues.

        ``mode="batch"`` sends them through the provider's batch API instead: half the price, answers
        within 24 hours, the same results. A rerun after an interrupt, a kernel restart or ``kill -9``
        re-attaches to the batches already submitted. Errored and expired items go into a follow-up
        batch, or online with ``fallback="online"``; ``batch_api=BatchAPIOptions(...)`` sets limits,
        rounds and polling. With a schema, answers that do not fit are repaired online (a provider
        batch cannot re-ask).

        ``hedge`` (online batches): once nothing is left to start, a request that has run longer than the
        95th percentile of its key's answers is raced on another key; the first answer wins, the other is
        cancelled, and at most 5 % of the batch (at least one) is sent twice. On by default, except with a
        spend guard (``budget=``: hedges are not reserved) or ``schema=``; ``hedge=False`` turns it off,
        ``True`` on, a number in (0, 1] sets the share. Exactly one answer per item is kept and stored.
        """
        if concurrency is not None:
            check_concurrency(concurrency)
        _check_mode(mode, fallback, batch_api, budget, budget_tokens, hedge)
        self.runner.check_overrides(overrides)  # wrong for every item: say so once, send nothing
        limit = concurrency if concurrency is not None else self.concurrency  # None: as the keys allow
        common = dict(cache=True if cache is None else cache, progress=progress or self.progress,
                      concurrency=limit, overrides=overrides, on_results=self._keep_results)
        if mode == "batch":
            batch: Batch = ProviderBatchRun(self.runner, prompts, fallback=fallback, options=batch_api, **common)
        else:
            batch = Batch(self.runner, prompts, streaming=self.streaming, budget=budget, budget_tokens=budget_tokens,
                          desc=desc, hedge=hedge, **common)
        self.last_batch = batch
        return batch

    def map(self, prompts: Sequence[MessagesInput], *, cache: bool | None = None, progress: str | None = None,
            concurrency: int | None = None, mode: str = "online", fallback: str | None = None,
            batch_api: BatchAPIOptions | None = None, budget: float | None = None,
            budget_tokens: int | None = None, hedge: bool | float | None = None, **overrides: Any) -> Results:
        """Blocking ``amap``: returns the list of results in input order (a ``Results``)."""
        return self.amap(prompts, cache=cache, progress=progress, concurrency=concurrency, mode=mode,
                         fallback=fallback, batch_api=batch_api, budget=budget, budget_tokens=budget_tokens,
                         hedge=hedge, **overrides).run_blocking()

    def estimate(self, prompts: Sequence[MessagesInput], **overrides: Any) -> Estimate:
        """What ``amap(prompts, **overrides)`` would cost and take; nothing is sent (see ``Estimate``)."""
        return self.amap(prompts, progress="none", **overrides).estimate()

    def afill(self, data: Any, template: str, *, to: str, namespace: Mapping[str, Any] | None = None,
              context_tokens: int = DEFAULT_CONTEXT_TOKENS, cache: bool | None = None, progress: str | None = None,
              concurrency: int | None = None, budget: float | None = None, budget_tokens: int | None = None,
              **overrides: Any) -> Fill:
        """Ask ``template`` once per row of ``data`` and write the answers into column ``to``; await it.

        ``data``: a DataFrame (written in place and returned), a list of dicts or of strings (each string
        is the column ``text``; a new DataFrame is returned). ``{column}`` is filled from the row
        (``{row["a column"]}`` for any name), other ``{names}`` from ``namespace``, with the brace rules
        of ``%%llm`` and each value kept within ``context_tokens``. Failed rows stay empty, their error in
        ``to + "_error"``; with ``schema=``, parsed fields become columns ``to.field``. A batch: resumable,
        stored, a rerun sends only the missing rows.
        """
        rows, prompts = fill_prompts(data, template, namespace, context_tokens)
        batch = self.amap(prompts, cache=cache, progress=progress, concurrency=concurrency, budget=budget,
                          budget_tokens=budget_tokens, desc=to, **overrides)
        self.last_batch = fill = Fill(batch, data, rows, to)
        return fill

    def fill(self, data: Any, template: str, *, to: str, **options: Any) -> Any:
        """Blocking ``afill``: returns the table."""
        return self.afill(data, template, to=to, **options).run_blocking()

    def _keep_results(self, results: list[Any]) -> None:
        self.last_results = results

    async def agenerate(self, prompts: Sequence[MessagesInput], **overrides: Any) -> LLMResult:
        """LangChain's ``agenerate``: all prompts concurrently, one LLMResult. Raises the first error.

        With callbacks, each prompt streams through them (``on_llm_new_token`` sees every token), as
        LangChain does with ``streaming=True``; otherwise the prompts run as one batch.
        """
        cache = overrides.pop("cache", False)
        if self.callbacks:
            responses = await asyncio.gather(*(self.ainvoke(p, cache=cache, **dict(overrides)) for p in prompts))
            return LLMResult.from_responses(responses, self.runner.model)
        results = await self.amap(list(prompts), cache=cache, progress="none", **overrides)
        for result in results:
            if not result.ok:
                raise result.error
        return LLMResult.from_responses(results, self.runner.model)

    def generate(self, prompts: Sequence[MessagesInput], **overrides: Any) -> LLMResult:
        """Blocking ``agenerate``."""
        return _engine.run_sync(self.agenerate(prompts, **overrides))


def _check_mode(mode: str, fallback: str | None, batch_api: Any, budget: float | None,
                budget_tokens: int | None, hedge: bool | float | None = None) -> None:
    """``amap``'s mode and the options that belong to one mode only."""
    if mode not in ("online", "batch"):
        raise ConfigurationError(f"mode must be 'online' or 'batch', not {mode!r}.")
    hedge_share(hedge)  # a wrong value fails here, in either mode
    if mode == "batch" and hedge:
        raise ConfigurationError(
            "hedge= races slow online requests; a provider batch (mode='batch') has no requests to race. "
            "Leave hedge unset (or False) with mode='batch'."
        )
    if mode == "online" and (fallback is not None or batch_api is not None):
        raise ConfigurationError("fallback= and batch_api= apply to mode='batch' only.")
    if mode == "batch" and (budget is not None or budget_tokens is not None):
        raise ConfigurationError(
            "budget= guards online batches, which pause before a request would exceed it; a provider batch is "
            "submitted whole. Check its cost first with llm.estimate(prompts) (the batch price is half of it)."
        )
