"""The engine loop: one daemon-thread asyncio loop per process that owns everything loop-bound.

The HTTP client, the key pool's limiters and the store writer live on this loop, so one set of limits
covers every call in the process — magics, widgets, sync and async code alike (``docs/ARCHITECTURE.md``,
"Engine loop").

- ``await run(coro)`` works from any event loop, including a running Jupyter kernel's: the work runs on
  the engine and the caller awaits a wrapped future. Cancelling the caller cancels the engine task.
- ``run_sync(coro)`` blocks any thread (including one whose loop is running, as in a kernel cell)
  until the engine finishes; Ctrl-C / a kernel interrupt cancels the engine task and re-raises.
  Both take a ``tick`` called a few times a second while waiting (progress displays refresh on it).
- ``aiter(agen)`` / ``iter_sync(agen)`` do the same for async generators (token streams).

Async is the single implementation; everything sync in nbllm goes through this module.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from ._exceptions import ConfigurationError

__all__ = ["Engine", "Job", "aiter_on_engine", "get_engine", "iter_on_engine", "run", "run_sync", "running_engine"]

T = TypeVar("T")

# How often a blocked sync caller wakes to notice Ctrl-C; signals interrupt lock waits on POSIX, but a
# bounded wait keeps interrupts prompt on every platform.
_POLL_SECONDS = 0.1
_SHUTDOWN_SECONDS = 2.0
# How long an interrupted caller waits for the engine work to stop (requests in flight cancelled, what
# finished recorded): a rerun right after the interrupt then sees every answer that came back. Bounded,
# so a wedged coroutine cannot hold the caller.
_STOP_SECONDS = 5.0


class Engine:
    """A daemon thread running an asyncio loop, plus hooks to close loop-bound resources at exit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        # coroutine functions run on the engine loop at shutdown (HTTP client close, store flush…)
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="nbllm-engine", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def __repr__(self) -> str:
        state = "running" if self.thread.is_alive() else "stopped"
        return f"<nbllm Engine {state} thread={self.thread.name}>"

    @property
    def in_engine_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the engine loop and return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def start(self, coro: Coroutine[Any, Any, T]) -> Job[T]:
        """Run ``coro`` as a task on the engine loop; the ``Job`` can cancel it and tell when it has stopped."""
        return Job(coro, self.loop)

    def on_shutdown(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register an async callable run on the engine loop when the process exits."""
        self._closers.append(closer)

    async def _close_resources(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - exiting; one failing closer must not block the others
                pass
        self._closers.clear()

    def shutdown(self) -> None:
        """Close loop-bound resources, stop the loop and join the thread (idempotent)."""
        if not self.thread.is_alive() or self.pid != os.getpid():
            return
        try:
            self.submit(self._close_resources()).result(_SHUTDOWN_SECONDS)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        self.loop.call_soon_threadsafe(self._cancel_all_and_stop)
        self.thread.join(_SHUTDOWN_SECONDS)

    def _cancel_all_and_stop(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.call_soon(self.loop.stop)


class Job(Generic[T]):
    """Work running on the engine loop, as seen from another thread.

    ``outcome`` completes only when the engine task has ended, however it ends — unlike the future of
    ``run_coroutine_threadsafe``, which reads as cancelled the moment ``cancel()`` is asked, while the
    task may still be finishing requests (and recording their answers).
    """

    __slots__ = ("_loop", "_task", "outcome")

    def __init__(self, coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> None:
        self.outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._loop = loop
        self._task: asyncio.Task[T] | None = None
        loop.call_soon_threadsafe(self._start, coro)  # before any cancel(): callbacks run in order

    def _start(self, coro: Coroutine[Any, Any, T]) -> None:
        self._task = self._loop.create_task(coro)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.outcome.cancel()
            self.outcome.set_running_or_notify_cancel()  # wakes concurrent.futures.wait(), as executors do
        elif task.exception() is not None:
            self.outcome.set_exception(task.exception())
        else:
            self.outcome.set_result(task.result())

    def cancel(self) -> None:
        """Ask the engine task to stop; ``outcome`` completes once it has."""
        if not self.outcome.done():
            try:
                self._loop.call_soon_threadsafe(self._cancel_task)
            except RuntimeError:  # the engine loop is closed (interpreter exit): nothing runs any more
                pass

    def _cancel_task(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        """Cancel and block until the task has stopped (at most ``timeout`` seconds)."""
        self.cancel()
        concurrent.futures.wait([self.outcome], timeout)

    async def stopped(self, timeout: float = _STOP_SECONDS) -> None:
        """Cancel and wait, without blocking the caller's loop, until the task has stopped."""
        self.cancel()
        await asyncio.wait({asyncio.wrap_future(self.outcome)}, timeout=timeout)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's engine, started on first use (and again in a forked child)."""
    global _engine
    engine = running_engine()
    if engine is not None:
        return engine
    with _engine_lock:
        if running_engine() is None:
            _engine = Engine()
        return _engine  # type: ignore[return-value]


def running_engine() -> Engine | None:
    """The process's engine if one is running, without starting one."""
    engine = _engine
    if engine is not None and engine.pid == os.getpid() and engine.thread.is_alive():
        return engine
    return None


@atexit.register
def _shutdown_at_exit() -> None:
    if _engine is not None:
        _engine.shutdown()


async def run(coro: Coroutine[Any, Any, T], *, tick: Callable[[], Any] | None = None,
              interval: float = _POLL_SECONDS) -> T:
    """Await ``coro`` on the engine loop from any loop; cancelling the caller cancels the work.

    A cancelled caller returns (re-raising) once the work has stopped, so what finished meanwhile is
    recorded before the caller goes on. With ``tick``, call it every ``interval`` seconds while waiting
    (a progress display's refresh). It also keeps the caller's loop waking up, so a kernel interrupt —
    delivered as a cancellation that lands only when the loop wakes — is noticed promptly.
    """
    engine = get_engine()
    if engine.in_engine_thread:
        return await coro
    job = engine.start(coro)
    # asyncio.wait, unlike awaiting the future, leaves it alone when the caller is cancelled
    outcome = asyncio.wrap_future(job.outcome)
    try:
        while not outcome.done():
            await asyncio.wait({outcome}, timeout=interval if tick is not None else None)
            if tick is not None and not outcome.done():
                tick()
    except BaseException:
        await job.stopped()
        raise
    return outcome.result()


def run_sync(coro: Coroutine[Any, Any, T], *, tick: Callable[[], Any] | None = None,
             interval: float = _POLL_SECONDS) -> T:
    """Block the calling thread until ``coro`` finishes on the engine loop (``tick`` as in ``run``).

    Ctrl-C or a kernel interrupt (``KeyboardInterrupt``) cancels the engine work, waits until it has
    stopped, and is re-raised.
    """
    engine = get_engine()
    if engine.in_engine_thread:
        coro.close()
        raise ConfigurationError(
            "A blocking nbllm call was made from inside an nbllm callback; use the async API "
            "(await llm.ainvoke(...)) there instead."
        )
    job = engine.start(coro)
    try:
        while True:
            try:
                return job.outcome.result(interval)
            except concurrent.futures.TimeoutError:
                if tick is not None:
                    tick()
    except BaseException:
        if not job.outcome.done():
            job.stop()
        raise


_DONE = object()


async def aiter_on_engine(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    """Iterate an async generator that runs on the engine loop, from any other loop."""
    engine = get_engine()
    if engine.in_engine_thread:
        async for item in agen:
            yield item
        return
    caller_loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(item: Any) -> None:
        caller_loop.call_soon_threadsafe(items.put_nowait, item)

    future = engine.submit(_pump(agen, deliver))
    try:
        while True:
            item = await items.get()
            if item is _DONE:
                break
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        future.cancel()


def iter_on_engine(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async generator that runs on the engine loop, from synchronous code."""
    engine = get_engine()
    if engine.in_engine_thread:
        raise ConfigurationError("Use `async for` (astream) inside nbllm callbacks, not the sync stream().")
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    future = engine.submit(_pump(agen, items.put))
    try:
        while True:
            try:
                item = items.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _DONE:
                break
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        future.cancel()


class _Raised:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _pump(agen: AsyncIterator[Any], deliver: Callable[[Any], None]) -> None:
    try:
        async for item in agen:
            deliver(item)
    except asyncio.CancelledError:
        raise
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
        deliver(_Raised(error))
        return
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            await aclose()
    deliver(_DONE)
