"""``amap(prompts, mode="batch")``: the same batch, sent through the provider's batch API at half the price.

    results = await llm.amap(prompts, mode="batch")                    # same results, same order
    results = llm.map(prompts, mode="batch", fallback="online")        # errored/expired items online

A ``ProviderBatchRun`` is a ``Batch`` (await it, iterate it, or run it blocking) whose items are
answered by provider batches instead of one request each. Answers already in the store are not sent;
prompts that an earlier run (interrupted, restarted, killed) already submitted are re-attached through
the job record; the rest go out as new batches. Errored and expired items go into a follow-up batch,
up to ``max_rounds`` batches per item, or online at once with ``fallback="online"``. Every answer is
checked by ``check_answer``: with ``schema=`` it is judged like a stored answer, and one that does not
fit is repaired online — re-asked from the batch's answer, since a batch cannot re-ask.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._batchapi import (
    BatchAPIOptions,
    BatchItem,
    Counts,
    LineOutcome,
    ProviderBatchJob,
)
from .._call import CallRunner, PreparedCall, accept_answer
from .._exceptions import ConfigurationError
from .._progress import BatchProgress, ProgressDisplay
from .._store import Store
from .._types import Failure, MessagesInput, Response
from .batch import Batch
from .workers import Workers

__all__ = ["ProviderBatchRun", "keep_answer"]

Emit = Callable[[int, Any], None] | None
# Decides whether a batch answer stands: the answer to keep, or None to repair the item online.
AnswerCheck = Callable[[PreparedCall, Response], Response | None]


def keep_answer(call: PreparedCall, response: Response) -> Response | None:
    """The default check: an answer stands; with a schema only if it parses and validates."""
    return response if call.schema is None else accept_answer(call, response)


class ProviderBatchRun(Batch):
    """Many prompts through provider batches (see module docstring); made by ``LLM.amap(mode="batch")``.

    ``fallback="online"``: errored and expired items are answered online at once instead of in a
    follow-up batch. ``options``: limits, rounds and the poll schedule (``BatchAPIOptions``).
    """

    needs_fingerprints = True  # they are the requests' custom_ids, with a store or without

    def __init__(self, runner: CallRunner, prompts: Sequence[MessagesInput], *, cache: bool, progress: str,
                 concurrency: int | None, overrides: dict[str, Any] | None = None,
                 on_results: Callable[[list[Any]], None] | None = None, fallback: str | None = None,
                 options: BatchAPIOptions | None = None, check_answer: AnswerCheck = keep_answer) -> None:
        if fallback not in (None, "online"):
            raise ConfigurationError(f"fallback must be None (follow-up batches) or 'online', not {fallback!r}.")
        super().__init__(runner, prompts, cache=cache, progress=progress, concurrency=concurrency,
                         streaming=False, overrides=overrides, on_results=on_results)
        self.fallback, self.options, self.check_answer = fallback, options or BatchAPIOptions(), check_answer
        self.progress = BatchProgress(len(self.prompts), model=self.spending.price_model, batch_prices=True,
                                      structured=self.schema is not None)
        self.display = ProgressDisplay(self.progress, None, mode=progress, desc="nbllm batch API")

    def __repr__(self) -> str:
        return f"<nbllm provider batch run {self.id}: {self.progress.format_line()}>"

    # ---- engine side ------------------------------------------------------------------------------
    async def _run(self, emit: Emit = None) -> None:
        calls = self._prepared(emit)
        pending = self._serve_cached(calls, emit)
        store = self.runner.store
        scratch = Store(":memory:") if store is None else None  # without a store nothing can be re-attached
        try:
            online = await self._rounds(calls, pending, store or scratch, emit)  # type: ignore[arg-type]
            await self._answer_online(list(online), calls, emit)
        except asyncio.CancelledError:
            self._report_interrupt()
            raise
        finally:
            if scratch is not None:
                scratch.close()
        await self._report_storage()

    async def _rounds(self, calls: list[PreparedCall | None], todo: list[int], store: Store, emit: Emit) -> dict[int, None]:
        """Send ``todo`` through provider batches, round after round; return what goes online (in order)."""
        route = self.runner.route
        job = ProviderBatchJob(route.target, store, job_id=self.id, endpoint=route.endpoint, options=self.options,
                               on_counts=self._show_counts)
        online: dict[int, None] = {}  # an ordered set
        rounds = self.options.max_rounds
        for number in range(1, rounds + 1):
            if not todo:
                break
            items = [BatchItem(i, calls[i].fingerprint or "", calls[i].spec, calls[i].stored_request()) for i in todo]
            outcomes = await job.run(items, lambda item, outcome: self._collected(item, outcome, calls, online, emit))
            retry = []
            for i in todo:
                if self.results[i] is not None or i in online:
                    continue
                outcome = outcomes[calls[i].fingerprint or ""]
                if outcome.retryable and self.fallback == "online":
                    online[i] = None
                elif outcome.retryable and number < rounds:
                    retry.append(i)
                else:
                    self._finish(i, Failure(outcome.error or RuntimeError(outcome.fate), self.prompts[i],
                                             batch_rounds=number), emit)
            todo = retry
        return online

    def _collected(self, item: BatchItem, outcome: LineOutcome, calls: list[PreparedCall | None],
                   online: dict[int, None], emit: Emit) -> None:
        """An answer arrived from a batch: keep it, or send the item online when the check rejects it."""
        if outcome.response is None or self.results[item.index] is not None:
            return
        call = calls[item.index]
        kept = self.check_answer(call, outcome.response)
        if kept is None:
            if call.schema is not None:  # re-ask from the batch's answer: one request saved per repair
                calls[item.index] = dataclasses.replace(call, previous=outcome.response)
            online[item.index] = None
        else:
            self._finish(item.index, kept, emit)

    def _show_counts(self, counts: Counts, waiting: int) -> None:
        self.progress.set_provider_counts(counts.as_dict(), waiting)

    async def _answer_online(self, indexes: list[int], calls: list[PreparedCall | None], emit: Emit) -> None:
        """The fallback and the repairs: these items as online calls, as many at a time as a batch's."""
        if not indexes:
            return
        self.progress.provider_waiting = 0
        self._workers = Workers(indexes, lambda todo: self._worker(todo, calls, emit), self._admission(calls, indexes))
        await self._workers.run()

    def _report_interrupt(self) -> None:
        done, missing = self._kept()
        print(
            f"nbllm: stopped waiting: {done}/{len(self.results)} finished and kept in llm.last_results and the "
            f"store. The provider batches keep running (nbllm.provider_batches() lists them); rerun the same call "
            f"to re-attach to them and collect the {missing} missing — nothing is sent twice.",
            file=sys.stderr,
        )
