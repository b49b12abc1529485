"""KeyPool: many keys, per-key RPM/TPM, health, and a FIFO queue in front of them.

    pool = KeyPool.from_env()                       # .env: API_KEY=sk-a,sk-b,sk-c and BASE_URL
    pool = KeyPool(["sk-a", {"key": "sk-b", "rpm": 500, "alias": "team"}])
    pool.status()                                   # table: alias, masked key, state, counts, limits

Requests wait in arrival order. The head of the queue goes to the live key that can take it soonest
(``_keystate.choose_key``), so faster or larger keys get proportionally more work and a slow or
rate-limited key never sets the pace, as round robin would. A 429 cools down that key only; 401/403 or
an exhausted quota disables it with the reason shown.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ._exceptions import ConfigurationError, NoKeyAvailableError
from ._keys import ApiKey, KeySpec, keys_from_env, to_api_key
from ._keystate import KeyState, choose_key
from ._ratelimits import RateLimitSnapshot

__all__ = ["KeyPool", "Lease"]


@dataclass
class _Waiter:
    wire_format: str
    model: str
    tokens: float
    future: asyncio.Future[Lease]


class Lease:
    """The right to send one request with one key. End it with exactly one of the report methods."""

    __slots__ = ("_ended", "_pool", "granted_at", "state", "tokens")

    def __init__(self, pool: KeyPool, state: KeyState, tokens: float, granted_at: float) -> None:
        self._pool, self.state, self.tokens, self._ended = pool, state, tokens, False
        self.granted_at = granted_at

    @property
    def key(self) -> ApiKey:
        return self.state.key

    @property
    def alias(self) -> str:
        return self.state.alias

    def __repr__(self) -> str:
        return f"<Lease {self.alias} {self.key.masked}>"

    def _end(self) -> bool:
        if self._ended:
            return False
        self._ended = True
        self._pool._changed()
        return True

    def succeeded(self, used_tokens: int | None, snapshot: RateLimitSnapshot | None = None) -> None:
        if self._end():
            now = self._pool.clock()
            self.state.finish(self.tokens, used_tokens, now)
            if snapshot is not None and not snapshot.is_empty:
                self.state.learn(snapshot, now)

    def rate_limited(self, retry_after: float, snapshot: RateLimitSnapshot | None = None) -> None:
        if self._end():
            now = self._pool.clock()
            self.state.release()
            if snapshot is not None and not snapshot.is_empty:
                self.state.learn(snapshot, now)
            self.state.cool_down(retry_after, now, self.granted_at)

    def key_failed(self, reason: str) -> None:
        """The key itself is unusable (revoked, no permission, out of quota): disable it."""
        if self._end():
            self.state.release()
            self.state.failed += 1
            self.state.disabled = reason

    def released(self, failed: bool = False) -> None:
        """The request ended without telling anything about the key (cancelled, network error…)."""
        if self._end():
            self.state.release()
            self.state.failed += failed


class KeyPool:
    """A set of keys with limits and health, shared by every call that uses it (see module docs)."""

    def __init__(self, keys: Iterable[KeySpec] = (), *, clock: Callable[[], float] = time.monotonic) -> None:
        api_keys = [to_api_key(spec, f"key-{i}") for i, spec in enumerate(keys, 1)]
        aliases = [k.alias for k in api_keys]
        if len(set(aliases)) != len(aliases):
            raise ConfigurationError(f"Key aliases must be unique, got {aliases}.")
        self.clock = clock
        self._states = [KeyState(k) for k in api_keys]
        # FIFO of requests waiting for a key; the head is served first (aiolimiter is not FIFO)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self.simulated = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, dotenv: bool = True) -> KeyPool:
        """Keys from the environment and ``.env`` (see ``nbllm._keys``); may be empty."""
        return cls(keys_from_env(env, dotenv=dotenv))

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        live = sum(1 for s in self._states if not s.disabled)
        return f"<KeyPool {len(self._states)} keys ({live} live), {len(self._waiters)} waiting>"

    @property
    def keys(self) -> list[ApiKey]:
        return [s.key for s in self._states]

    def key_state(self, alias: str) -> KeyState:
        for state in self._states:
            if state.alias == alias:
                return state
        raise ConfigurationError(f"No key with alias {alias!r}; aliases: {[s.alias for s in self._states]}.")

    def status_rows(self) -> list[dict]:
        now = self.clock()
        return [s.status_row(now) for s in self._states]

    def status(self) -> PoolStatus:
        """A table of every key (renders as HTML in a notebook, as text in a terminal)."""
        return PoolStatus(self.status_rows())

    def counts(self) -> dict[str, int]:
        """Answered requests per key alias (the seed's ``cnt``)."""
        return {s.alias: s.done for s in self._states}

    async def acquire(self, wire_format: str, model: str, tokens: float) -> Lease:
        """Wait (FIFO) until a key that serves ``model`` can take ``tokens`` more; raise if none ever can."""
        if not self._states:
            raise ConfigurationError("The key pool is empty: set OPENAI_API_KEY / API_KEY, or pass keys.")
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(wire_format, model, tokens, future)
        self._waiters.append(waiter)
        self._ensure_dispatcher()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().released()  # granted just as we were cancelled: give it back
            else:
                self._forget(waiter)
            raise

    def _forget(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        self._changed()

    def _changed(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _ensure_dispatcher(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        self._wakeup.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    async def _dispatch(self) -> None:
        assert self._wakeup is not None
        while self._waiters:
            self._wakeup.clear()
            wait = self._serve_head()
            if wait is None:
                continue
            try:
                async with asyncio.timeout(wait if wait != math.inf else None):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _serve_head(self) -> float | None:
        """Grant or fail the head waiter; return how long to sleep, or None to look again at once."""
        head = self._waiters[0]
        if head.future.done():  # cancelled while waiting
            self._waiters.popleft()
            return None
        now = self.clock()
        choice = choose_key(self._states, head.wire_format, head.model, head.tokens, now)
        if choice.state is None:
            self._waiters.popleft()
            head.future.set_exception(self._no_key_error(head, choice.candidates))
            return None
        if choice.wait <= 0 and choice.state.has_room():
            self._waiters.popleft()
            choice.state.take(head.tokens, now)
            head.future.set_result(Lease(self, choice.state, head.tokens, now))
            return None
        return choice.wait

    def _no_key_error(self, head: _Waiter, candidates: Sequence[KeyState]) -> NoKeyAvailableError:
        if not candidates:
            served = ", ".join(f"{s.alias} ({s.key.provider or 'any'})" for s in self._states)
            return NoKeyAvailableError(
                f"No key in the pool serves {head.wire_format} model {head.model!r}. Keys: {served}."
                " Add a key for it, or check each key's provider/models."
            )
        reasons = "; ".join(f"{s.alias}: {s.disabled}" for s in candidates)
        return NoKeyAvailableError(f"Every key for {head.model!r} is disabled ({reasons}). Fix or replace the keys.")


class PoolStatus(list):
    """``pool.status()``: a list of per-key dicts that prints as a table."""

    def __str__(self) -> str:
        from ._progress import format_key_table

        return format_key_table(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from ._progress import format_key_table_html

        return format_key_table_html(self)
