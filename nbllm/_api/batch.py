"""Batches: ``amap``/``map`` run many prompts with bounded concurrency and never lose a finished answer.

    results = await llm.amap(prompts)              # input order; a failed item is a Failure, not a raise
    rows = await llm.amap(prompts, schema=Result)   # each answer parsed and validated (re-asked if needed)
    rows.to_dataframe(), rows.summary()             # the awaited list is a ``Results``
    async for i, result in llm.amap(prompts):       # as they complete
        ...
    results = llm.map(prompts)                      # blocking

Every answer is written to the store as it finishes; with the cache on (the default for batches) a rerun
after an interrupt, a crash or ``kill -9`` sends only what is missing. One aggregate progress bar and a
per-key table are shown on the caller's side, refreshed a few times a second at most.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, NoReturn

from .. import _engine
from .._call import CallRunner, PreparedCall, accept_answer
from .._exceptions import BatchInterrupted, NbllmError, NoKeyAvailableError, StructuredOutputError
from .._progress import BatchProgress, ProgressDisplay
from .._structured import as_schema
from .._types import Failure, MessagesInput, Response
from .results import Results

__all__ = ["Batch"]

_REFRESH_SECONDS = 0.25  # also keeps the caller's loop awake, so a kernel interrupt lands promptly
# At its end a batch waits this long for the store to commit its last answers, to report those it could not
# store; rows still waiting on another process's lock after that are written later (never dropped).
_STORE_REPORT_SECONDS = 5.0


class Batch:
    """A running (or not yet started) batch; await it for the results list, or iterate it.

    Made by ``LLM.amap``: ``runner`` makes each call; ``streaming`` sends stream requests (tokens are
    not shown, so a broken stream is retried); ``on_results`` receives the results list when the batch
    ends, also when it was interrupted (``LLM.last_results``).
    """

    # compute every item's store fingerprint even without a store (provider batches name requests by it)
    needs_fingerprints = False

    def __init__(self, runner: CallRunner, prompts: Sequence[MessagesInput], *, cache: bool, progress: str,
                 concurrency: int, streaming: bool = False, overrides: dict[str, Any] | None = None,
                 on_results: Callable[[list[Any]], None] | None = None) -> None:
        self.runner, self.prompts, self.cache = runner, list(prompts), cache
        self.concurrency, self.streaming, self.overrides = concurrency, streaming, dict(overrides or {})
        self.on_results = on_results
        self.id = uuid.uuid4().hex[:12]
        self.results: list[Response | Failure | None] = [None] * len(self.prompts)
        schema = self.overrides.get("schema", runner.settings.schema)
        self.schema = None if schema is None else as_schema(schema)  # a wrong schema fails here, not per item
        self.progress = BatchProgress(len(self.prompts), model=runner.model, structured=self.schema is not None)
        self.display = ProgressDisplay(self.progress, runner.pool.status_rows, mode=progress, desc="nbllm")
        self.stopped_by: BaseException | None = None
        self.not_stored = 0  # answers the store could not write: they are in the results, a rerun resends them

    def __repr__(self) -> str:
        return f"<nbllm Batch {self.id}: {self.progress.format_line()}>"

    # ---- engine side ------------------------------------------------------------------------------
    async def _run(self, emit: Callable[[int, Any], None] | None = None) -> None:
        """On the engine: answer cached items, then run the rest with ``concurrency`` workers."""
        calls = self._prepare(emit)
        pending = self._serve_cached(calls, emit)
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
        await self._report_storage()

    async def _report_storage(self) -> None:
        """Say which answers did not reach the store (a rerun would send them again)."""
        store = self.runner.store
        if store is None:
            return
        await asyncio.to_thread(store.flush, _STORE_REPORT_SECONDS)  # off the engine loop
        self.not_stored = self.progress.not_stored = store.unstored(self.id)
        if self.not_stored:
            print(
                f"nbllm: {self.not_stored} answer(s) of this batch could not be written to the store {store.path} "
                f"({store.last_write_error}); they are in the results, but a rerun will send them again.",
                file=sys.stderr,
            )
        if store.pending():
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

    def _prepare(self, emit: Callable[[int, Any], None] | None = None) -> list[PreparedCall | None]:
        """Every prompt as a call; identical prompts in one batch are distinct samples (the n-th copy
        gets sample n), so a rerun finds each copy's own answer. A prompt that cannot be sent (a lone
        surrogate, a malformed message) is that item's Failure at once, and None in the list."""
        fingerprints = self.needs_fingerprints or self.runner.store is not None
        seen: dict[str, int] = {}
        calls: list[PreparedCall | None] = []
        for i, prompt in enumerate(self.prompts):
            sample = 0
            if fingerprints:
                text = _identity(prompt)
                sample = seen.get(text, 0)
                seen[text] = sample + 1
            try:
                calls.append(self.runner.prepare(prompt, stream=self.streaming, overrides=self.overrides,
                                                 sample=sample, fingerprint=fingerprints))
            except NbllmError as error:
                calls.append(None)
                self._finish(i, Failure(error, prompt), emit)
        return calls

    def _serve_cached(self, calls: list[PreparedCall | None], emit: Callable[[int, Any], None] | None) -> list[int]:
        """Finish every item the store already answered; return the indexes still to send.

        With a schema each stored answer is judged offline: one that fits is finished, one that no
        longer fits is re-asked from that answer (it goes out with the call as ``previous``).
        """
        store = self.runner.store
        sendable = [i for i, call in enumerate(calls) if call is not None]
        if store is None or not self.cache:
            return sendable
        hits = store.lookup_many(calls[i].fingerprint for i in sendable)  # type: ignore[union-attr,misc]
        pending = []
        for i in sendable:
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

    async def _worker(self, todo: Any, calls: list[PreparedCall | None], emit: Callable[[int, Any], None] | None) -> None:
        for i in todo:
            try:
                result: Response | Failure = await self.runner.answer(calls[i], cache=False, batch=self.id, index=i)  # type: ignore[arg-type]
            except NoKeyAvailableError as error:
                self.stopped_by = error
                self._finish(i, Failure(error, self.prompts[i]), emit)
                raise
            except StructuredOutputError as error:  # no answer fit: keep every raw answer and its errors
                result = Failure(error, self.prompts[i], attempts=error.attempts, text=error.text)
            except Exception as error:  # noqa: BLE001 - a failed item is recorded, the batch goes on
                result = Failure(error, self.prompts[i])
            self._finish(i, result, emit)

    def _finish(self, i: int, result: Response | Failure, emit: Callable[[int, Any], None] | None) -> None:
        self.results[i] = result
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
            self.display.close()
        return self._complete()

    def run_blocking(self) -> Results:
        """Run the batch while this thread blocks (``LLM.map``); same results as awaiting it."""
        self.display.start()
        try:
            _engine.run_sync(self._run(), tick=self.display.refresh, interval=_REFRESH_SECONDS)
        except BaseException as error:
            self._raise_stopped(error)
        finally:
            self.display.close()
        return self._complete()

    async def __aiter__(self) -> AsyncIterator[tuple[int, Response | Failure]]:
        self.display.start()
        try:
            async for i, result in _engine.aiter_on_engine(self._completed_stream()):
                self.display.refresh()
                yield i, result
        finally:
            self._keep()
            self.display.close()

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
            else:
                await task  # every item is out; let the batch say what the store could not keep
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

    def _complete(self) -> Results:
        self._keep()
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


async def _settle(workers: list[asyncio.Task[None]]) -> None:
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
