"""Batches: ``amap``/``map`` run many prompts with bounded concurrency and never lose a finished answer.

    results = await llm.amap(prompts)              # input order; a failed item is a Failure, not a raise
    async for i, result in llm.amap(prompts):       # as they complete
        ...
    results = llm.map(prompts)                      # blocking
    batch = llm.amap(prompts, budget=0.50)          # a spend guard: pauses before it would exceed $0.50
    await batch                                     # raises BatchPaused (with .results) if it paused
    await batch.resume(budget=1.00)                 # continues; nothing finished is sent again

Every answer is written to the store as it finishes; with the cache on (the default for batches) a rerun
after an interrupt, a crash or ``kill -9`` sends only what is missing. One aggregate progress bar and a
per-key table are shown on the caller's side, refreshed a few times a second at most. With a budget,
each request's worst-case cost is reserved before it is sent (``budget.SpendGuard``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, NoReturn

from .. import _engine
from .._call import CallRunner, PreparedCall
from .._exceptions import BatchInterrupted, BatchPaused, ConfigurationError, NoKeyAvailableError
from .._format import format_cost, format_count, format_tokens
from .._pricing import Rates, rates
from .._progress import BatchProgress, ProgressDisplay
from .._tokens import count_message_tokens, tokenizer_for
from .._types import Failure, MessagesInput, Response
from .budget import APPROXIMATION_MARGIN, OutputGuess, SpendGuard, Ticket
from .estimate import Estimate, build_estimate

__all__ = ["Batch"]

_REFRESH_SECONDS = 0.25  # also keeps the caller's loop awake, so a kernel interrupt lands promptly


class Batch:
    """A running (or not yet started) batch; await it for the results list, or iterate it.

    Made by ``LLM.amap``: ``runner`` makes each call; ``streaming`` sends stream requests (tokens are
    not shown, so a broken stream is retried); ``on_results`` receives the results list when the batch
    ends, also when it was interrupted (``LLM.last_results``). ``budget`` (USD) and ``budget_tokens``:
    the spend guard; ``desc``: the progress bar's label.
    """

    def __init__(self, runner: CallRunner, prompts: Sequence[MessagesInput], *, cache: bool, progress: str,
                 concurrency: int, streaming: bool = False, overrides: dict[str, Any] | None = None,
                 on_results: Callable[[list[Any]], None] | None = None, budget: float | None = None,
                 budget_tokens: int | None = None, desc: str = "nbllm") -> None:
        self.runner, self.prompts, self.cache = runner, list(prompts), cache
        self.concurrency, self.streaming, self.overrides = concurrency, streaming, dict(overrides or {})
        self.on_results, self.progress_mode, self.desc = on_results, progress, desc
        self.id = uuid.uuid4().hex[:12]
        self.results: list[Response | Failure | None] = [None] * len(self.prompts)
        self.price_model = runner.settings.model or runner.model  # with its prefix: "anthropic:…", "deepseek:…"
        self.guard = SpendGuard(budget, budget_tokens)
        # looked up here, on the caller's side: the first price imports genai-prices (~0.2 s), which must
        # not stall the engine loop when the progress counts the first item's cost there
        self.rates: Rates | None = rates(self.price_model)
        if budget is not None and self.rates is None:
            raise ConfigurationError(
                f"budget= needs a price for {self.price_model!r}, and none is known. Set one with "
                f"nbllm.set_price({self.price_model!r}, input=…, output=…), or limit tokens with budget_tokens=.")
        self.progress = BatchProgress(len(self.prompts), model=self.price_model)
        self.progress.budget, self.progress.budget_tokens = budget, budget_tokens
        self.display = ProgressDisplay(self.progress, runner.pool.status_rows, mode=progress, desc=desc)
        self.stopped_by: BaseException | None = None
        self._calls: list[PreparedCall] | None = None
        self._guess: OutputGuess | None = None

    def __repr__(self) -> str:
        return f"<nbllm Batch {self.id}: {self.progress.format_line()}>"

    # ---- engine side ------------------------------------------------------------------------------
    async def _run(self, emit: Callable[[int, Any], None] | None = None) -> None:
        """On the engine: answer cached items, then run the rest with ``concurrency`` workers."""
        calls = self._prepared()
        pending = self._serve_cached(calls, emit)
        if self.guard.active and self._guess is None:
            self._guess = self._output_guess(calls, pending)
        todo = iter(pending)
        workers = [asyncio.create_task(self._worker(todo, calls, emit)) for _ in range(min(self.concurrency, len(pending)))]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:
            await _settle(workers)  # count only once nothing can finish any more
            self._report_interrupt()
            raise
        finally:
            await _settle(workers)

    def _report_interrupt(self) -> None:
        done, missing = self._kept()
        print(
            f"nbllm: batch interrupted: {done}/{len(self.results)} finished and kept in llm.last_results and the "
            f"store; rerun the same call to send only the {missing} missing.",
            file=sys.stderr,
        )

    def _prepared(self) -> list[PreparedCall]:
        if self._calls is None:
            self._calls = self._prepare()
        return self._calls

    def _prepare(self) -> list[PreparedCall]:
        """Every prompt as a call; identical prompts in one batch are distinct samples (the n-th copy
        gets sample n), so a rerun finds each copy's own answer."""
        store = self.runner.store
        seen: dict[str, int] = {}
        calls = []
        for prompt in self.prompts:
            sample = 0
            if store is not None:
                text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
                sample = seen.get(text, 0)
                seen[text] = sample + 1
            calls.append(self.runner.prepare(prompt, stream=self.streaming, overrides=self.overrides,
                                             sample=sample, fingerprint=store is not None))
        return calls

    def _serve_cached(self, calls: list[PreparedCall], emit: Callable[[int, Any], None] | None) -> list[int]:
        """Finish every item the store already answered; return the indexes still to send."""
        missing = [i for i, result in enumerate(self.results) if result is None]  # all, unless resumed
        hits = self._hits([calls[i] for i in missing])
        pending = []
        for i in missing:
            hit = hits.get(calls[i].fingerprint)  # type: ignore[arg-type]
            if hit is None:
                pending.append(i)
            else:
                self._finish(i, hit, emit)
        return pending

    def _hits(self, calls: list[PreparedCall]) -> dict[str, Response]:
        store = self.runner.store
        if store is None or not self.cache:
            return {}
        return store.lookup_many(call.fingerprint for call in calls)  # type: ignore[misc]

    async def _worker(self, todo: Any, calls: list[PreparedCall], emit: Callable[[int, Any], None] | None) -> None:
        for i in todo:
            ticket = self._reserve(calls[i]) if self.guard.active else None
            if self.guard.paused:
                return  # this item and the rest wait for resume(); in-flight ones still finish
            try:
                result: Response | Failure = await self.runner.answer(calls[i], cache=False, batch=self.id, index=i)
            except NoKeyAvailableError as error:
                self.stopped_by = error
                self._finish(i, Failure(error, self.prompts[i]), emit, ticket)
                raise
            except Exception as error:  # noqa: BLE001 - a failed item is recorded, the batch goes on
                result = Failure(error, self.prompts[i])
            self._finish(i, result, emit, ticket)

    # ---- the spend guard ----------------------------------------------------------------------------
    def _output_guess(self, calls: list[PreparedCall], pending: list[int]) -> OutputGuess:
        """Answer lengths seen for these prompts: this batch's stored items, else the model's recent answers."""
        seen = [r.usage.completion_tokens for r in self.results if isinstance(r, Response)]
        store = self.runner.store
        if not seen and store is not None:
            seen = store.completion_tokens(calls[0].spec.model) if calls else []
        max_tokens = calls[pending[0]].spec.max_tokens if pending else None
        return OutputGuess(seen, max_tokens)

    def _worst_case(self, call: PreparedCall) -> tuple[int, int]:
        """(prompt tokens, output tokens) a request may use at most, as reserved before sending it."""
        prompt = count_message_tokens(call.spec.messages, self.price_model)
        if tokenizer_for(self.price_model) == "approximation":
            prompt = int(prompt * APPROXIMATION_MARGIN) + 1
        assert self._guess is not None
        return prompt, self._guess.worst

    def _reserve(self, call: PreparedCall) -> Ticket | None:
        prompt, output = self._worst_case(call)
        cost = self.rates.cost(prompt, output) if self.rates is not None else 0.0
        return self.guard.reserve(cost, prompt + output)

    def _settle(self, ticket: Ticket | None, result: Response | Failure) -> None:
        usage = getattr(result, "usage", None)
        if usage is not None and self._guess is not None:
            self._guess.add(usage.completion_tokens)
        if ticket is None:
            return
        cost = self.rates.cost(usage.prompt_tokens, usage.completion_tokens) if usage and self.rates else 0.0
        self.guard.settle(ticket, cost, usage.total_tokens if usage else 0)

    def _finish(self, i: int, result: Response | Failure, emit: Callable[[int, Any], None] | None,
                ticket: Ticket | None = None) -> None:
        self.results[i] = result
        self._settle(ticket, result)
        usage = getattr(result, "usage", None)
        self.progress.item_done(
            ok=result.ok, cached=bool(getattr(result, "cached", False)),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            key_alias=getattr(result, "key_alias", None),
        )
        if emit is not None:
            emit(i, result)

    # ---- caller side ------------------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, list[Response | Failure]]:
        return self._await_all().__await__()

    async def _await_all(self) -> list[Response | Failure]:
        self.display.start()
        try:
            await _engine.run(self._run(), tick=self.display.refresh, interval=_REFRESH_SECONDS)
        except BaseException as error:
            self._raise_stopped(error)
        finally:
            self.display.close(final=not self.guard.paused)
        return self._complete()

    def run_blocking(self) -> list[Response | Failure]:
        """Run the batch while this thread blocks (``LLM.map``); same results as awaiting it."""
        self.display.start()
        try:
            _engine.run_sync(self._run(), tick=self.display.refresh, interval=_REFRESH_SECONDS)
        except BaseException as error:
            self._raise_stopped(error)
        finally:
            self.display.close(final=not self.guard.paused)
        return self._complete()

    def resume(self, budget: float | None = None, budget_tokens: int | None = None) -> Batch:
        """Continue a paused (or interrupted) batch; await it as before. Finished items are not sent again.

        ``budget``/``budget_tokens``: the new limit for the whole batch, what it already spent included.
        """
        self.guard.raise_to(budget, budget_tokens)
        self.progress.budget, self.progress.budget_tokens = self.guard.budget, self.guard.budget_tokens
        # a new display for the rest (the last one was closed); the counters carry on
        self.display = ProgressDisplay(self.progress, self.runner.pool.status_rows, mode=self.progress_mode,
                                       desc=self.desc)
        return self

    def estimate(self) -> Estimate:
        """What running this batch would cost and take (nothing is sent); see ``LLM.estimate``."""
        calls = self._prepared()
        hits = self._hits(calls)
        pending = [call for call in calls if call.fingerprint not in hits]
        seen = [hit.usage.completion_tokens for hit in hits.values()]
        store = self.runner.store
        if not seen and store is not None and calls:
            seen = store.completion_tokens(calls[0].spec.model)
        guess = OutputGuess(seen, calls[0].spec.max_tokens if calls else None)
        prompt_tokens = [count_message_tokens(call.spec.messages, self.price_model) for call in pending]
        return build_estimate(self.price_model, prompt_tokens, len(calls) - len(pending), guess,
                              rates(self.price_model), tokenizer_for(self.price_model), self.runner.pool.status_rows())

    async def __aiter__(self) -> AsyncIterator[tuple[int, Response | Failure]]:
        self.display.start()
        try:
            async for i, result in _engine.aiter_on_engine(self._completed_stream()):
                self.display.refresh()
                yield i, result
        finally:
            self._keep()
            self.display.close(final=not self.guard.paused)
        if self.guard.paused and any(result is None for result in self.results):
            raise self._paused()

    async def _completed_stream(self) -> AsyncIterator[tuple[int, Any]]:
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        task = asyncio.create_task(self._run(lambda i, r: queue.put_nowait((i, r))))
        try:
            for _ in range(len(self.prompts)):
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    task.result()  # the batch ended early: raise why
                    break
                yield getter.result()
        finally:
            task.cancel()

    def _kept(self) -> tuple[int, int]:
        """(finished, missing) items right now."""
        done = sum(r is not None for r in self.results)
        return done, len(self.results) - done

    def _raise_stopped(self, error: BaseException) -> NoReturn:
        """Keep what finished; turn 'no key left' into BatchInterrupted, re-raise interrupts as they are."""
        self._keep()
        if not isinstance(error, NoKeyAvailableError):
            raise error  # an interrupt stays an interrupt; the engine side reports what was kept
        done, missing = self._kept()
        raise BatchInterrupted(
            f"The batch stopped: {error} {done}/{len(self.results)} items finished and are kept "
            f"(error.results, llm.last_results, and the store); rerun the same call to send only the {missing} missing.",
            results=self.results,
        ) from error

    def _complete(self) -> list[Response | Failure]:
        self._keep()
        if self.guard.paused and any(result is None for result in self.results):
            raise self._paused()
        return self.results  # type: ignore[return-value]

    def _paused(self) -> BatchPaused:
        done, missing = self._kept()
        spent, limit = self.guard.describe()
        show = format_cost if self.guard.budget is not None else (lambda n: f"{format_tokens(n)} tokens")
        key = "budget" if self.guard.budget is not None else "budget_tokens"
        return BatchPaused(
            f"paused before exceeding the {key} of {show(limit)}: {format_count(done)}/{format_count(len(self.results))} "
            f"done, {show(spent)} spent. The finished items are kept (error.results, llm.last_results and the store). "
            f"To send the {format_count(missing)} left: await llm.last_batch.resume({key}=…) with a higher limit, "
            f"or rerun the same call with a higher {key}.",
            results=self.results, batch=self, spent=spent, budget=limit,
        )

    def _keep(self) -> None:
        if self.on_results is not None:
            self.on_results(self.results)


async def _settle(workers: list[asyncio.Task[None]]) -> None:
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
