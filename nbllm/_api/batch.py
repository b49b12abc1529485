"""Batches: ``amap``/``map`` run many prompts, as many in flight as the keys allow, and never lose a finished answer.

    results = await llm.amap(prompts)              # input order; a failed item is a Failure, not a raise
    rows = await llm.amap(prompts, schema=Result)   # each answer parsed and validated (re-asked if needed)
    rows.to_dataframe(), rows.summary()             # the awaited list is a ``Results``
    async for i, result in llm.amap(prompts):       # as they complete
        ...
    results = llm.map(prompts)                      # blocking
    results = await llm.amap(prompts, hedge=False)  # no hedging (default: the slowest requests are raced)
    batch = llm.amap(prompts, budget=0.50)          # a spend guard: pauses before it would exceed $0.50
    await batch                                     # raises BatchPaused (with .results) if it paused
    await batch.resume(budget=1.00)                 # continues; nothing finished is sent again

Every answer is written to the store as it finishes; with the cache on (the default for batches) a rerun
after an interrupt, a crash or ``kill -9`` sends only what is missing. One aggregate progress bar and a
per-key table are shown on the caller's side, refreshed a few times a second at most. With a budget,
each request's worst-case cost is reserved before it is sent (``spending.BatchSpending``). Once nothing
is left to start, a request stuck in its key's latency tail is raced on another key (``hedging.Hedger``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, NoReturn

from .. import _engine
from .._call import CallRunner, PreparedCall, accept_answer
from .._exceptions import (
    BatchInterrupted,
    NbllmError,
    NoKeyAvailableError,
    StructuredOutputError,
)
from .._progress import BatchProgress, ProgressDisplay
from .._structured import as_schema
from .._types import Failure, MessagesInput, Response
from .budget import Ticket
from .estimate import Estimate
from .hedging import HedgeBudget, Hedger, hedge_share
from .results import Results
from .spending import BatchSpending
from .workers import Workers

__all__ = ["Batch"]

Emit = Callable[[int, Any], None] | None

_REFRESH_SECONDS = 0.25  # also keeps the caller's loop awake, so a kernel interrupt lands promptly
_STORE_REPORT_SECONDS = 5.0


class Batch:
    """A running (or not yet started) batch; await it for the results list, or iterate it.

    Made by ``LLM.amap``: ``runner`` makes each call; ``streaming`` sends stream requests (tokens are
    not shown, so a broken stream is retried); ``on_results`` receives the results list when the batch
    ends, also when it was interrupted (``LLM.last_results``). ``budget`` (USD) and ``budget_tokens``:
    the spend guard; ``desc``: the progress bar's label. ``hedge``: race requests in the latency tail on
    another key (``hedging.hedge_share``: None is on unless there is a spend guard; False is off).
    """

    # compute every item's store fingerprint even without a store (provider batches name requests by it)
    needs_fingerprints = False

    def __init__(self, runner: CallRunner, prompts: Sequence[MessagesInput], *, cache: bool, progress: str,
                 concurrency: int | None = None, streaming: bool = False, overrides: dict[str, Any] | None = None,
                 on_results: Callable[[list[Any]], None] | None = None, budget: float | None = None,
                 budget_tokens: int | None = None, desc: str = "nbllm", hedge: bool | float | None = None) -> None:
        self.runner, self.prompts, self.cache = runner, list(prompts), cache
        self.concurrency, self.streaming, self.overrides = concurrency, streaming, dict(overrides or {})
        self.on_results, self.progress_mode, self.desc = on_results, progress, desc
        self.id = uuid.uuid4().hex[:12]
        self.results: list[Response | Failure | None] = [None] * len(self.prompts)
        schema = self.overrides.get("schema", runner.settings.schema)
        self.schema = None if schema is None else as_schema(schema)  # a wrong schema fails here, not per item
        self.spending = BatchSpending(runner, budget, budget_tokens)
        self.progress = BatchProgress(len(self.prompts), model=self.spending.price_model,
                                      structured=self.schema is not None)
        self.progress.budget, self.progress.budget_tokens = budget, budget_tokens
        self.display = ProgressDisplay(self.progress, runner.pool.status_rows, mode=progress, desc=desc)
        self.stopped_by: BaseException | None = None
        self.not_stored = 0  # answers the store could not write: they are in the results, a rerun resends them
        self.hedge_share = hedge_share(hedge, guarded=budget is not None or budget_tokens is not None)
        self.hedger: Hedger | None = None  # made per run, on the engine loop (structured items are not hedged)
        self._calls: list[PreparedCall | None] | None = None
        self._workers: Workers | None = None  # while running: how many items are in flight

    def __repr__(self) -> str:
        return f"<nbllm Batch {self.id}: {self.progress.format_line()}>"

    # ---- engine side ------------------------------------------------------------------------------
    async def _run(self, emit: Emit = None) -> None:
        """On the engine: answer cached items, then run the rest with as many workers as the keys call
        for (``_admission``)."""
        calls = self._prepared(emit)
        pending = self._serve_cached(calls, emit)
        self.spending.start(calls, pending, self.results)
        self.hedger = self._make_hedger(len(pending))
        self._workers = Workers(pending, lambda todo: self._worker(todo, calls, emit),
                                self._admission(calls, pending))
        try:
            await self._workers.run()  # every worker has ended when this returns or raises
        except asyncio.CancelledError:
            self._report_interrupt()  # counted once nothing can finish any more
            raise
        finally:
            if self.hedger is not None:
                self.hedger.close()
        await self._report_storage()

    def _admission(self, calls: list[PreparedCall | None], pending: list[int]) -> Callable[[], int]:
        """How many items to keep in flight, read after every answer: the pool's admission target for
        this batch's model (Little's law on the keys' limits and latency), capped by ``concurrency``."""
        first = calls[pending[0]] if pending else None
        if first is None:
            return lambda: 1
        try:
            pool, wire_format = self.runner.pool, self.runner.route.target.wire_format
        except NbllmError:  # no keys, no route: each item fails with the reason, as it would anyway
            return lambda: self.concurrency or 1
        spec, progress = first.spec, self.progress
        # the rate of a TPM-limited key is tpm / tokens per request; leaving out the answer's share
        # overestimates it, which only queues more requests in the pool
        tokens = spec.estimated_prompt_tokens() + (spec.max_tokens or 0)

        def target() -> int:
            goal = pool.in_flight_target(spec.model, tokens, limit=self.concurrency, wire_format=wire_format)
            progress.in_flight_target = goal
            if self._workers is not None:
                progress.in_flight = self._workers.active
            return goal

        return target

    async def _report_storage(self) -> None:
        """Say which answers did not reach the store (a rerun would send them again)."""
        store = self.runner.store
        if store is None:
            return
        # this batch's rows are all recorded by now: wait for those, not for other batches' rows
        written = await store.settled(store.recorded, _STORE_REPORT_SECONDS)
        self.not_stored = self.progress.not_stored = store.unstored(self.id)
        if self.not_stored:
            print(
                f"nbllm: {self.not_stored} answer(s) of this batch could not be written to the store {store.path} "
                f"({store.last_write_error}); they are in the results, but a rerun will send them again.",
                file=sys.stderr,
            )
        if not written:
            print(
                f"nbllm: {store.pending()} answer(s) are still waiting to be written to the store {store.path}, "
                "which another process keeps locked; they are written when it lets go (keep this process running).",
                file=sys.stderr,
            )

    def _report_interrupt(self) -> None:
        done, missing = self._kept()
        print(
            f"nbllm: batch interrupted: {done}/{len(self.results)} finished and kept in llm.last_results and the "
            f"store; rerun the same call to send only the {missing} missing.",
            file=sys.stderr,
        )

    def _prepared(self, emit: Emit = None) -> list[PreparedCall | None]:
        """The calls, prepared once (a resumed batch sends the same calls)."""
        if self._calls is None:
            self._calls = self._prepare(emit)
        return self._calls

    def _prepare(self, emit: Emit = None) -> list[PreparedCall | None]:
        """Every prompt as a call; identical prompts in one batch are distinct samples (the n-th copy
        gets sample n), so a rerun finds each copy's own answer. A prompt that cannot be sent (a lone
        surrogate, a malformed message) is that item's Failure at once, and None in the list."""
        fingerprints = self.needs_fingerprints or self.runner.store is not None
        try:
            prepare = self.runner.preparer(stream=self.streaming, overrides=self.overrides, fingerprint=fingerprints)
        except NbllmError as error:  # settings no call could be sent with: every item fails alike
            for i, prompt in enumerate(self.prompts):
                self._finish(i, Failure(error, prompt), emit)
            return [None] * len(self.prompts)
        seen: dict[str, int] = {}
        calls: list[PreparedCall | None] = []
        for i, prompt in enumerate(self.prompts):
            sample = 0
            if fingerprints:
                text = _identity(prompt)
                sample = seen.get(text, 0)
                seen[text] = sample + 1
            try:
                calls.append(prepare(prompt, sample))
            except NbllmError as error:
                calls.append(None)
                self._finish(i, Failure(error, prompt), emit)
        return calls

    def _serve_cached(self, calls: list[PreparedCall | None], emit: Emit) -> list[int]:
        """Finish every item the store already answered; return the indexes still to send.

        Only items without a result are looked at (all of them, unless the batch is resumed). With a
        schema each stored answer is judged offline: one that fits is finished, one that no longer fits is
        re-asked from that answer (it goes out with the call as ``previous``).
        """
        missing = [i for i, result in enumerate(self.results) if result is None]  # a call that is None has one
        hits = self._hits([calls[i] for i in missing])  # type: ignore[misc]
        pending = []
        for i in missing:
            call = calls[i]
            assert call is not None
            hit = hits.get(call.fingerprint)  # type: ignore[arg-type]
            if hit is not None and call.schema is not None:
                accepted = accept_answer(call, hit)
                if accepted is None:
                    calls[i] = dataclasses.replace(call, previous=hit)
                hit = accepted
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

    def _make_hedger(self, items: int) -> Hedger | None:
        """This run's hedging, or None: off, or a structured batch (each round's re-ask depends on the
        answer judged, so a race of whole rounds would double the rounds, not cut the tail)."""
        budget = HedgeBudget.for_items(items, self.hedge_share)
        if not budget.limit or self.schema is not None:
            return None
        return Hedger(self.runner.pool, self.runner.model, self.streaming, budget, items,
                      on_sent=self.progress.hedge_sent)

    def _answer(self, call: PreparedCall, i: int) -> Awaitable[Response]:
        # returns the awaitable rather than awaiting it: one coroutine fewer per item in flight (each is
        # an object the garbage collector walks; docs/ARCHITECTURE.md, "Client CPU")
        if self.hedger is None:
            return self.runner.answer(call, cache=False, batch=self.id, index=i)
        return self.hedger.answer(functools.partial(self.runner.answer, call, cache=False, batch=self.id, index=i))

    async def _worker(self, todo: Any, calls: list[PreparedCall | None], emit: Emit) -> None:
        for i in todo:
            call = calls[i]
            assert call is not None
            ticket = self.spending.reserve(call) if self.spending.active else None
            if self.spending.paused:
                return  # this item and the rest wait for resume(); in-flight ones still finish
            if self.hedger is not None:
                self.hedger.item_started()
            try:
                result: Response | Failure = await self._answer(call, i)
            except NoKeyAvailableError as error:
                self.stopped_by = error
                self._finish(i, Failure(error, self.prompts[i]), emit, ticket)
                raise
            except StructuredOutputError as error:  # no answer fit: keep every raw answer and its errors
                result = Failure(error, self.prompts[i], attempts=error.attempts, text=error.text)
            except Exception as error:  # noqa: BLE001 - a failed item is recorded, the batch goes on
                result = Failure(error, self.prompts[i])
            self._finish(i, result, emit, ticket)
            if self._workers is not None and not self._workers.keep_going():
                return  # more workers than the keys call for now

    def _finish(self, i: int, result: Response | Failure, emit: Emit, ticket: Ticket | None = None) -> None:
        self.results[i] = result
        self.spending.settle(ticket, result)
        usage = getattr(result, "usage", None)
        self.progress.item_done(
            ok=result.ok, cached=bool(getattr(result, "cached", False)),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            key_alias=getattr(result, "key_alias", None),
            repaired=len(result.attempts) > 1,
        )
        if emit is not None:
            emit(i, result)

    # ---- caller side ------------------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, Results]:
        return self._await_all().__await__()

    async def _await_all(self) -> Results:
        self.display.start()
        try:
            await _engine.run(self._run(), tick=self.display.refresh, interval=_REFRESH_SECONDS)
        except BaseException as error:
            self._raise_stopped(error)
        finally:
            self.display.close(final=not self.spending.paused)
        return self._complete()

    def run_blocking(self) -> Results:
        """Run the batch while this thread blocks (``LLM.map``); same results as awaiting it."""
        self.display.start()
        try:
            _engine.run_sync(self._run(), tick=self.display.refresh, interval=_REFRESH_SECONDS)
        except BaseException as error:
            self._raise_stopped(error)
        finally:
            self.display.close(final=not self.spending.paused)
        return self._complete()

    def resume(self, budget: float | None = None, budget_tokens: int | None = None) -> Batch:
        """Continue a paused (or interrupted) batch; await it as before. Finished items are not sent again.

        ``budget``/``budget_tokens``: the new limit for the whole batch, what it already spent included.
        """
        self.spending.raise_to(budget, budget_tokens)
        guard = self.spending.guard
        self.progress.budget, self.progress.budget_tokens = guard.budget, guard.budget_tokens
        # a new display for the rest (the last one was closed); the counters carry on
        self.display = ProgressDisplay(self.progress, self.runner.pool.status_rows, mode=self.progress_mode,
                                       desc=self.desc)
        return self

    def estimate(self) -> Estimate:
        """What running this batch would cost and take (nothing is sent); see ``LLM.estimate``."""
        calls = [call for call in self._prepared() if call is not None]
        return self.spending.estimate(calls, self._hits(calls))

    async def __aiter__(self) -> AsyncIterator[tuple[int, Response | Failure]]:
        self.display.start()
        try:
            async for i, result in _engine.aiter_on_engine(self._completed_stream()):
                self.display.refresh()
                yield i, result
        finally:
            self._keep()
            self.display.close(final=not self.spending.paused)
        if self._is_paused():
            raise self.spending.paused_error(self.results, self)

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

    def _is_paused(self) -> bool:
        return self.spending.paused and any(result is None for result in self.results)

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

    def _complete(self) -> Results:
        self._keep()
        if self._is_paused():
            raise self.spending.paused_error(self.results, self)
        return Results(self.results, schema=self.schema, model=self.runner.model)

    def _keep(self) -> None:
        if self.on_results is not None:
            self.on_results(self.results)


def _identity(prompt: MessagesInput) -> str:
    """A text that is equal for equal prompts (to number identical prompts as samples)."""
    if isinstance(prompt, str):
        return prompt
    try:
        return json.dumps(prompt, sort_keys=True, default=str)
    except (TypeError, ValueError):  # keys that cannot be sorted: prepare() says what is wrong
        return repr(prompt)

