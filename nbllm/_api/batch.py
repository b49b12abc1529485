"""Batches: ``amap``/``map`` run many prompts with bounded concurrency and never lose a finished answer.

    results = await llm.amap(prompts)              # input order; a failed item is a Failure, not a raise
    async for i, result in llm.amap(prompts):       # as they complete
        ...
    results = llm.map(prompts)                      # blocking

Every answer is written to the store as it finishes; with the cache on (the default for batches) a rerun
after an interrupt, a crash or ``kill -9`` sends only what is missing. One aggregate progress bar and a
per-key table are shown on the caller's side, refreshed a few times a second at most.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .. import _engine
from .._exceptions import BatchInterrupted, NoKeyAvailableError
from .._progress import BatchProgress
from .._progress import ProgressDisplay
from .._types import Failure, MessagesInput, Response

if TYPE_CHECKING:
    from .llm import LLM

__all__ = ["Batch", "BatchMixin"]

_REFRESH_SECONDS = 0.25  # also keeps the caller's loop awake, so a kernel interrupt lands promptly


class Batch:
    """A running (or not yet started) batch; await it for the results list, or iterate it."""

    def __init__(self, llm: LLM, prompts: Sequence[MessagesInput], cache: bool, progress: str,
                 concurrency: int, overrides: dict[str, Any]) -> None:
        self.llm, self.prompts, self.cache = llm, list(prompts), cache
        self.concurrency, self.overrides = concurrency, overrides
        self.id = uuid.uuid4().hex[:12]
        self.results: list[Response | Failure | None] = [None] * len(self.prompts)
        self.progress = BatchProgress(len(self.prompts), model=llm._target()[1])
        self.display = ProgressDisplay(self.progress, llm.pool.status_rows, mode=progress, desc="nbllm")
        self.stopped_by: BaseException | None = None

    def __repr__(self) -> str:
        return f"<nbllm Batch {self.id}: {self.progress.format_line()}>"

    # ---- engine side ------------------------------------------------------------------------------
    async def _run(self, emit: Callable[[int, Any], None] | None = None) -> None:
        """On the engine: answer cached items, then run the rest with ``concurrency`` workers."""
        specs, fingerprints = self._prepare()
        pending = self._serve_cached(fingerprints, emit)
        todo = iter(pending)
        workers = [asyncio.create_task(self._worker(todo, specs, emit)) for _ in range(min(self.concurrency, len(pending)) or 0)]
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

    _fingerprints: list[str] | None = None

    def _prepare(self) -> tuple[list[Any], list[str] | None]:
        # streaming=True batches send stream requests (tokens are not shown, so a broken stream is retried)
        specs = [self.llm._spec(p, self.llm.streaming, dict(self.overrides)) for p in self.prompts]
        if self.llm.store is None:
            return specs, None
        # identical prompts in one batch are distinct samples: the n-th copy gets sample n
        seen: dict[str, int] = {}
        fingerprints = []
        for prompt, spec in zip(self.prompts, specs):
            text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, default=str)
            sample = seen.get(text, 0)
            seen[text] = sample + 1
            fingerprints.append(self.llm._fingerprint(spec, sample))
        self._fingerprints = fingerprints
        return specs, fingerprints

    def _serve_cached(self, fingerprints: list[str] | None, emit: Callable[[int, Any], None] | None) -> list[int]:
        if fingerprints is None or not self.cache:
            return list(range(len(self.prompts)))
        hits = self.llm.store.lookup_many(fingerprints)  # type: ignore[union-attr]
        pending = []
        for i, fingerprint in enumerate(fingerprints):
            hit = hits.get(fingerprint)
            if hit is None:
                pending.append(i)
                continue
            self._finish(i, hit, emit)
        return pending

    async def _worker(self, todo: Any, specs: list[Any], emit: Callable[[int, Any], None] | None) -> None:
        for i in todo:
            try:
                result: Response | Failure = await self._call(i, specs[i])
            except NoKeyAvailableError as error:
                self.stopped_by = error
                self._finish(i, Failure(error, self.prompts[i]), emit)
                raise
            except Exception as error:  # noqa: BLE001 - a failed item is recorded, the batch goes on
                result = Failure(error, self.prompts[i])
            self._finish(i, result, emit)

    async def _call(self, i: int, spec: Any) -> Response:
        response = None
        fingerprint = self._fingerprints[i] if self._fingerprints is not None else None
        async for item in self.llm._execute(spec, cache=False, batch=self.id, index=i, fingerprint=fingerprint, deliver_text=False):
            response = item
        assert isinstance(response, Response)
        return response

    def _finish(self, i: int, result: Response | Failure, emit: Callable[[int, Any], None] | None) -> None:
        self.results[i] = result
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
        future = asyncio.wrap_future(_engine.get_engine().submit(self._run()))
        try:
            while not future.done():
                await asyncio.wait({future}, timeout=_REFRESH_SECONDS)
                self.display.refresh()
            future.result()
        except BaseException as error:
            future.cancel()
            self._raise_stopped(error)
        finally:
            self.display.close()
        return self._complete()

    def run_blocking(self) -> list[Response | Failure]:
        self.display.start()
        future = _engine.get_engine().submit(self._run())
        try:
            while True:
                try:
                    future.result(_REFRESH_SECONDS)
                    break
                except concurrent.futures.TimeoutError:
                    self.display.refresh()
        except BaseException as error:
            future.cancel()
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
            self.llm.last_results = self.results
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
        finally:
            task.cancel()

    def _kept(self) -> tuple[int, int]:
        """(finished, missing) items right now."""
        done = sum(r is not None for r in self.results)
        return done, len(self.results) - done

    def _raise_stopped(self, error: BaseException) -> NoReturn:
        """Keep what finished; turn 'no key left' into BatchInterrupted, re-raise interrupts as they are."""
        self.llm.last_results = self.results
        if not isinstance(error, NoKeyAvailableError):
            raise error  # an interrupt stays an interrupt; the engine side reports what was kept
        done, missing = self._kept()
        raise BatchInterrupted(
            f"The batch stopped: {error} {done}/{len(self.results)} items finished and are kept "
            f"(error.results, llm.last_results, and the store); rerun the same call to send only the {missing} missing.",
            results=self.results,
        ) from error

    def _complete(self) -> list[Response | Failure]:
        self.llm.last_results = self.results
        return self.results  # type: ignore[return-value]


async def _settle(workers: list[asyncio.Task[None]]) -> None:
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


class BatchMixin:
    """``amap``/``map`` for LLM (kept here so each module has one job)."""

    def amap(self: LLM, prompts: Sequence[MessagesInput], *, cache: bool | None = None, progress: str | None = None,
             concurrency: int | None = None, **overrides: Any) -> Batch:
        """Run many prompts; ``await`` the result for a list in input order, or ``async for i, r in ...``."""
        return Batch(self, prompts, True if cache is None else cache, progress or self.progress,
                     concurrency or self.concurrency, overrides)

    def map(self: LLM, prompts: Sequence[MessagesInput], *, cache: bool | None = None, progress: str | None = None,
            concurrency: int | None = None, **overrides: Any) -> list[Response | Failure]:
        """Blocking ``amap``: returns the list of results in input order."""
        return self.amap(prompts, cache=cache, progress=progress, concurrency=concurrency, **overrides).run_blocking()
