"""KeyPool: many keys, per-key RPM/TPM, health, and a FIFO queue in front of them.

    pool = KeyPool.from_env()                       # .env: API_KEY=sk-a,sk-b,sk-c and BASE_URL
    pool = KeyPool(["sk-a", {"key": "sk-b", "rpm": 500, "alias": "team"}])
    pool.status()                                   # table: alias, masked key, state, counts, limits

Requests wait in arrival order. The head of the queue goes to the live key that can take it soonest
(``state.choose_key``), so faster or larger keys get proportionally more work and a slow or
rate-limited key never sets the pace, as round robin would. A 429 cools down that key only (a 429 asking
for more than the retry policy accepts parks it: not chosen at all for a while); 401/403 or an exhausted
quota disables it with the reason shown. An attempt that ends without an answer gives its tokens back.

``KeyPool(keys, shared="redis://host:6379/0")`` (or ``NBLLM_SHARED_POOL`` for ``from_env`` and the
default pool) shares every key's limits, cooldowns and refusals with all processes using the same Redis
(``shared.py``); without it nothing here touches Redis or pays for it.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._exceptions import (
    ConfigurationError,
    NbllmError,
    NoKeyAvailableError,
    RateLimitError,
)
from .admission import demand_of, in_flight_target
from .config import ApiKey, KeySpec, keys_from_env, load_env, to_api_key
from .snapshot import RateLimitSnapshot
from .state import KeyState, choose_key
from .status import PoolStatus

if TYPE_CHECKING:
    from .shared import SharedLimits

__all__ = ["KeyPool", "Lease"]

DEFAULT_NAMESPACE = "nbllm:pool:"  # same as _shared_scripts (not imported: redis stays optional)


@dataclass
class _Waiter:
    wire_format: str
    model: str
    tokens: float
    future: asyncio.Future[Lease]
    avoid: frozenset[str] = frozenset()  # key aliases this request must not use (a hedge's first key)


class Lease:
    """The right to send one request with one key. End it with exactly one of the report methods."""

    __slots__ = ("_ended", "_pool", "granted_at", "model", "probed", "sent", "state", "taken", "tokens")

    def __init__(self, pool: KeyPool, state: KeyState, tokens: float, granted_at: float, taken: float | None = None,
                 model: str = "") -> None:
        self._pool, self.state, self.tokens, self._ended = pool, state, tokens, False
        self.granted_at, self.model = granted_at, model
        # what the key's own TPM bucket took: the estimate, capped (see KeyState.take)
        self.taken = tokens if taken is None else taken
        # what the key had been sent when this lease was granted: its answer's headers are that old
        self.sent = state.mark(granted_at)
        self.probed = False  # one of the requests all processes of a shared pool probe the key with

    def _probe_ended(self, outcome: int) -> None:
        if self.probed and self._pool._shared is not None:
            self._pool._shared.probe_ended(self.state, outcome)

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

    def learn(self, snapshot: RateLimitSnapshot) -> None:
        """Take what the provider's headers say about the key, without ending the lease."""
        if not snapshot.is_empty:
            self.state.learn(snapshot, self._pool.clock(), self.sent)

    def first_token(self) -> None:
        """A stream's first token arrived: the key's time to first token for this model (hedging reads it)."""
        if not self._ended:
            self.state.first_token_of(self.model).add(self._pool.clock() - self.granted_at)

    def key_answering(self) -> bool:
        """Whether this key answers nearly all its requests: a failure on it is bad luck, not an outage."""
        return self.state.answering

    def succeeded(self, used_tokens: int | None, snapshot: RateLimitSnapshot | None = None) -> None:
        if self._end():
            now = self._pool.clock()
            self.state.finish(self.taken, used_tokens, now)
            self.state.latency_of(self.model).add(now - self.granted_at)
            if snapshot is not None and not snapshot.is_empty:
                self.state.learn(snapshot, now, self.sent)
            if self._pool._shared is not None:
                self._probe_ended(1)
                self._pool._shared.succeeded(self.state, self.tokens, used_tokens)

    def rate_limited(self, retry_after: float, snapshot: RateLimitSnapshot | None = None, *,
                     asked: float | None = None) -> None:
        """A 429: cool the key down for ``retry_after``; with ``asked`` (a longer wait the server wanted
        than the retry policy accepts) park it for ``retry_after``, so other keys take its work."""
        if self._end():
            now = self._pool.clock()
            self.state.release(self.taken, now)  # refused: nothing used
            if snapshot is not None and not snapshot.is_empty:
                self.state.learn(snapshot, now, self.sent)
            self.state.cool_down(retry_after, now, self.granted_at, asked=asked)
            if self._pool._shared is not None:
                self._probe_ended(2)
                self._pool._shared.refunded(self.state, self.tokens)
                self._pool._shared.rate_limited(self.state, retry_after)

    def key_failed(self, reason: str) -> None:
        """The key itself is unusable (revoked, no permission, out of quota): disable it."""
        if self._end():
            self.state.release()
            self.state.failed += 1
            self.state.disabled = reason
            if self._pool._shared is not None:
                self._probe_ended(0)
                self._pool._shared.key_failed(self.state, reason)

    def released(self, failed: bool = False) -> None:
        """The request ended without an answer and without telling anything about the key (an error
        answer, a timeout, a broken connection, a cancel): its tokens are given back."""
        if self._end():
            self.state.release(self.taken, self._pool.clock())
            if failed:
                self.state.errored()
            if self._pool._shared is not None:
                self._probe_ended(0)
                self._pool._shared.refunded(self.state, self.tokens)


def _refuse_repeated_keys(keys: Sequence[ApiKey]) -> None:
    """One real key must be one pool key: two would each get the key's whole limit, doubling its rate.

    The same value for two servers (``base_url``) is two keys: local servers often take any placeholder.
    """
    first: dict[tuple[str, str | None], ApiKey] = {}
    for key in keys:
        seen = first.setdefault((key.value, key.base_url), key)
        if seen is not key and key.value:
            raise ConfigurationError(
                f"The same key ({key.masked}) is given twice, as {seen.alias} and {key.alias}. One real key has "
                "one set of limits, so give it once (with rpm=/tpm= for its limits)."
            )


class KeyPool:
    """A set of keys with limits and health, shared by every call that uses it (see module docs).

    ``shared``: a Redis URL to share limits and key health with other processes; ``namespace``: the
    prefix of every Redis key the pool writes (pools with different namespaces share nothing).
    """

    def __init__(self, keys: Iterable[KeySpec] = (), *, clock: Callable[[], float] = time.monotonic,
                 shared: str | None = None, namespace: str = DEFAULT_NAMESPACE) -> None:
        api_keys = [to_api_key(spec, f"key-{i}") for i, spec in enumerate(keys, 1)]
        aliases = [k.alias for k in api_keys]
        if len(set(aliases)) != len(aliases):
            raise ConfigurationError(f"Key aliases must be unique, got {aliases}.")
        _refuse_repeated_keys(api_keys)
        self.clock = clock
        self._states = [KeyState(k) for k in api_keys]
        # FIFO of requests waiting for a key; the head is served first (aiolimiter is not FIFO)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self.simulated = False
        self._shared: SharedLimits | None = None
        if shared:
            from .shared import SharedLimits

            self._shared = SharedLimits(shared, self._states, namespace=namespace, clock=clock)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, dotenv: bool = True, shared: str | None = None) -> KeyPool:
        """Keys from the environment and ``.env`` (see ``nbllm._keys``); may be empty.

        ``NBLLM_SHARED_POOL`` (a Redis URL) shares the pool across processes unless ``shared`` is given;
        ``NBLLM_SHARED_NAMESPACE`` changes the prefix of its Redis keys.
        """
        merged = load_env(dotenv) if env is None else dict(env)
        shared = shared or merged.get("NBLLM_SHARED_POOL") or None
        namespace = merged.get("NBLLM_SHARED_NAMESPACE") or DEFAULT_NAMESPACE
        return cls(keys_from_env(merged, dotenv=False), shared=shared, namespace=namespace)

    @property
    def shared(self) -> SharedLimits | None:
        """The Redis side of a shared pool (``.connected``, ``.processes``), or None for a local pool."""
        return self._shared

    async def aclose(self) -> None:
        """Close a shared pool's Redis connections (done at exit for pools on nbllm's engine loop)."""
        if self._shared is not None:
            await self._shared.aclose()

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        live = sum(1 for s in self._states if not s.disabled)
        shared = f", shared via {self._shared!r}" if self._shared is not None else ""
        return f"<KeyPool {len(self._states)} keys ({live} live), {len(self._waiters)} waiting{shared}>"

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

    @property
    def waiting(self) -> int:
        """Requests waiting for a key right now."""
        return len(self._waiters)

    def counts(self) -> dict[str, int]:
        """Answered requests per key alias (the seed's ``cnt``)."""
        return {s.alias: s.done for s in self._states}

    def in_flight_target(self, model: str, tokens: float = 0.0, *, limit: int | None = None,
                         wire_format: str | None = None) -> int:
        """How many requests for ``model`` to keep in flight now (``admission.in_flight_target``): what
        the live keys' limits and latency call for, capped by ``limit`` (an explicit ``concurrency=``).
        O(keys): a batch asks after every answer. Each process of a shared pool keeps the whole target:
        the shared buckets pace them, and a process left alone with its last items gets the whole rate."""
        demands = [demand_of(s, model, tokens) for s in self._states
                   if not s.disabled and (s.key.models is None or model in s.key.models)
                   and (wire_format is None or s.key.provider in (None, wire_format))]
        return in_flight_target(demands, limit=limit)

    async def acquire(self, wire_format: str, model: str, tokens: float, avoid: Iterable[str] = (),
                      retry: bool = False) -> Lease:
        """Wait (FIFO) until a key that serves ``model`` can take ``tokens`` more; raise if none ever can.

        ``avoid``: aliases of keys not to use (a hedge goes to another key than the request it races).
        ``retry``: the request already waited its turn and failed; it goes to the head of the queue, since
        queueing it behind every request still waiting would turn one fault into the batch's tail.
        """
        if not self._states:
            raise ConfigurationError("The key pool is empty: set OPENAI_API_KEY / API_KEY, or pass keys.")
        avoid = frozenset(avoid)
        if not self._waiters and self._shared is None:
            lease = self._grant_now(wire_format, model, tokens, avoid)
            if lease is not None:
                return lease
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(wire_format, model, tokens, future, avoid)
        if retry:
            self._waiters.appendleft(waiter)
        else:
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

    def _grant_now(self, wire_format: str, model: str, tokens: float, avoid: frozenset[str]) -> Lease | None:
        """With nobody waiting (FIFO holds), the lease of a key free now, granted without queueing and
        waking the dispatcher (most grants of a batch); None: queue as usual (which also raises when no
        key can ever serve). The choice is the dispatcher's: same ``choose_key``, same room check."""
        now = self.clock()
        choice = choose_key(self._states, wire_format, model, tokens, now, avoid)
        if choice.state is None or choice.wait > 0 or not choice.state.has_room():
            return None
        return self._lease(choice.state, tokens, model, now)

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
        if self._shared is not None:
            await self._shared.ready()
        while self._waiters:
            self._wakeup.clear()
            wait = self._serve_head() if self._shared is None else await self._serve_head_shared()
            if wait is None:
                continue
            try:
                async with asyncio.timeout(wait if wait != math.inf else None):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _serve_head(self) -> float | None:
        """Grant or fail the head waiter; return how long to sleep, or None to look again at once."""
        now = self.clock()
        picked = self._pick_head(now)
        if isinstance(picked, KeyState):
            self._grant(picked, now)
            return None
        return picked

    async def _serve_head_shared(self) -> float | None:
        """``_serve_head`` for a shared pool: the key chosen locally must also get capacity in Redis."""
        assert self._shared is not None
        picked = self._pick_head(self.clock())
        if not isinstance(picked, KeyState):
            return picked
        head = self._waiters[0]
        verdict = await self._shared.take(picked, head.tokens)
        if verdict.disabled:
            picked.disabled = verdict.disabled  # refused in another process: never send it here
        elif verdict.wait > 0:
            picked.busy_until = self.clock() + verdict.wait  # other processes use it: choose again
        elif not head.future.done():  # (if cancelled meanwhile, the capacity taken just goes unused)
            self._grant(picked, self.clock(), probed=verdict.probed)
        elif verdict.probed:
            self._shared.probe_ended(picked, 0)
        return None

    def _pick_head(self, now: float) -> KeyState | float | None:
        """The key free now for the head waiter; else how long to sleep, or None to look again at once
        (the head was cancelled, or failed because no key can ever serve it)."""
        head = self._waiters[0]
        if head.future.done():  # cancelled while waiting
            self._waiters.popleft()
            return None
        choice = choose_key(self._states, head.wire_format, head.model, head.tokens, now, head.avoid)
        if choice.state is None:
            self._waiters.popleft()
            head.future.set_exception(self._no_key_error(head, choice.candidates))
            return None
        if choice.wait <= 0 and choice.state.has_room():
            return choice.state
        return choice.wait

    def _grant(self, state: KeyState, now: float, probed: bool = False) -> None:
        head = self._waiters.popleft()
        head.future.set_result(self._lease(state, head.tokens, head.model, now, probed))

    def _lease(self, state: KeyState, tokens: float, model: str, now: float, probed: bool = False) -> Lease:
        lease = Lease(self, state, tokens, now, state.take(tokens, now), model=model)
        lease.probed = probed
        return lease

    def _no_key_error(self, head: _Waiter, candidates: Sequence[KeyState]) -> NbllmError:
        if not candidates:
            served = ", ".join(f"{s.alias} ({s.key.provider or 'any'})" for s in self._states)
            return NoKeyAvailableError(
                f"No key in the pool serves {head.wire_format} model {head.model!r}. Keys: {served}."
                " Add a key for it, or check each key's provider/models."
            )
        now = self.clock()
        reasons = "; ".join(f"{s.alias}: {s.disabled or s.state_text(now)}" for s in candidates)
        if any(s.parked(now) for s in candidates if not s.disabled):
            # temporary, unlike a disabled key: this call fails, later ones may succeed
            return RateLimitError(
                f"Every key for {head.model!r} is rate limited for longer than RetryPolicy.max_retry_after "
                f"lets nbllm wait ({reasons}). Add a key, try again later, or raise max_retry_after to wait.",
                status=429,
            )
        return NoKeyAvailableError(f"Every key for {head.model!r} is disabled ({reasons}). Fix or replace the keys.")
