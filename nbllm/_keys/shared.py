"""The key pool shared by processes and hosts through Redis: ``KeyPool(keys, shared="redis://host:6379/0")``.

Each process still chooses a key locally (its own view, no round trip); then one Lua script takes the
capacity atomically from the key's shared GCRA buckets, checking the key's shared cooldown and disabled
state in the same step (``_shared_scripts.TAKE``). A "wait" answer marks the key busy locally until then
and the pool chooses again. So all processes together keep within each key's RPM/TPM, and once one
process has seen a key refused, no process is granted that key again: every other process loses at most
the requests it had already been granted.

429 cooldowns, disabled reasons, TPM corrections and limits learned from headers are written back;
a background task sends a heartbeat (to count processes) and reads every key's state twice a second,
so ``pool.status()`` shows what other processes found.

When Redis cannot be reached, the pool warns once and limits each key locally to ``1/n`` of its limit
(``_shared_local.ConservativeShare``), retrying in the background; when Redis is back it says so and
shares again. Everything here runs on the loop of the pool's dispatcher (nbllm's engine loop).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import _engine
from .._exceptions import ConfigurationError
from .bucket import DEFAULT_BURST_SECONDS
from .shared_local import ConservativeShare, Verdict, shared_rates
from .shared_scripts import (
    ADJUST,
    COOLDOWN,
    DEFAULT_NAMESPACE,
    DISABLED,
    DISABLED_TTL_SECONDS,
    HEARTBEAT,
    LEARNED,
    PROBE_END,
    SEED,
    TAKE,
    WAIT,
    key_names,
    processes_name,
)
from .snapshot import RateLimitSnapshot
from .state import MAX_IN_FLIGHT, PROBE_BURST, PROBE_IN_FLIGHT, PROBE_SPACING, KeyState

__all__ = ["SharedLimits", "redacted_url"]

# Loopback answers in well under a millisecond; a server that takes this long is treated as gone (the
# pool must keep serving from its local share rather than stall every request).
SOCKET_TIMEOUT_SECONDS = 1.0
REFRESH_SECONDS = 0.5  # heartbeat, state read-back, and reconnect attempts
PROCESS_TTL_MS = 5_000  # a process with no heartbeat for this long no longer counts
IDLE_SECONDS = 60.0  # an idle pool stops its heartbeat (and stops counting as a process)
# When every process together has a key's whole probing allowance in flight: look again this much later
# (a probed request ending does not wake other processes).
PROBE_RECHECK_SECONDS = 0.05


def redacted_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError, asyncio.TimeoutError)


class SharedLimits:
    """Limits and health of a pool's keys, kept in Redis (see module docs). Created by ``KeyPool(shared=)``."""

    def __init__(self, url: str, states: Sequence[KeyState], *, namespace: str = DEFAULT_NAMESPACE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            import redis.asyncio  # noqa: F401 - fail at construction, not on the first request
        except ImportError:
            raise ConfigurationError("A shared key pool needs the redis client: pip install 'nbllm[redis]'.") from None
        self.url, self.namespace, self.clock = url, namespace, clock
        self._states = list(states)
        self._names = {s.alias: key_names(namespace, s.key.value) for s in self._states}
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.connected = True  # until a call fails
        self.processes = 1  # pools seen in the heartbeat set, last time Redis answered
        self._errors = _redis_errors()
        self._fallback: ConservativeShare | None = None
        self._lost_at = 0.0
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self._synced = False
        self._maintainer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._published: dict[str, tuple[float, float]] = {}
        self._last_active = 0.0

    def __repr__(self) -> str:
        state = "connected" if self.connected else f"unreachable, local share 1/{self._share_of()}"
        return f"<SharedLimits {redacted_url(self.url)} {self.namespace!r} {state}, {self.processes} process(es)>"

    def _share_of(self) -> int:
        return self._fallback.processes if self._fallback else 0

    # ---- connection --------------------------------------------------------------------------------
    def _ensure_client(self) -> None:
        """A client bound to the running loop (and process): redis.asyncio connections belong to one loop."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop and self._pid == os.getpid():
            return
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._client = Redis.from_url(
            self.url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),  # one immediate retry replaces a pooled connection the server closed
        )
        sources = {"take": TAKE, "adjust": ADJUST, "cooldown": COOLDOWN, "heartbeat": HEARTBEAT, "seed": SEED,
                   "probe_end": PROBE_END, "learned": LEARNED}
        self._scripts = {name: self._client.register_script(src) for name, src in sources.items()}
        self._loop, self._pid, self._synced, self._maintainer = loop, os.getpid(), False, None
        engine = _engine.running_engine()
        if engine is not None and engine.loop is loop:
            engine.on_shutdown(self.aclose)  # leave the process count at exit, not 5 s later

    async def ready(self) -> None:
        """Connect (first use), read what other processes shared, and keep the heartbeat running."""
        self._ensure_client()
        self._last_active = self.clock()
        if not self._synced:
            self._synced = True
            if self.connected:
                await self._sync()
        if self._maintainer is None or self._maintainer.done():
            self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    async def aclose(self) -> None:
        """Stop the heartbeat, leave the process set and close the connections."""
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
            self._maintainer = None
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._leave()
            await self._client.aclose()
        self._client = None

    # ---- the grant path ----------------------------------------------------------------------------
    async def take(self, state: KeyState, tokens: float) -> Verdict:
        """Take one request of ``tokens`` from the key's shared buckets (or from the local share)."""
        self._last_active = self.clock()
        if self.connected:
            rates, names = shared_rates(state), self._names[state.alias]
            try:
                # limits unknown here: use what another process learned, else probe with all processes
                probe = -1 if rates.rpm or rates.tpm else (int(PROBE_SPACING * 1e6) if state.first_contact else 0)
                reply = await self._scripts["take"](
                    keys=[names["rpm"], names["tpm"], names["cooldown"], names["disabled"], names["limits"],
                          names["probe"]],
                    args=[rates.rpm, rates.rpm_burst, rates.tpm, rates.tpm_burst, tokens, 0, probe,
                          DEFAULT_BURST_SECONDS, PROBE_IN_FLIGHT, int(PROBE_RECHECK_SECONDS * 1e6), PROBE_BURST],
                )
                return _verdict(reply)
            except self._errors as error:
                self._lost(error)
        assert self._fallback is not None
        return self._fallback.take(state, tokens, self.clock())

    # ---- reports from leases (fire and forget: the caller is synchronous) ---------------------------
    def succeeded(self, state: KeyState, estimated: float, used_tokens: int | None) -> None:
        """Correct the shared TPM bucket from the estimate to real usage; share newly learned limits."""
        if used_tokens is not None:
            self._correct(state, used_tokens - estimated)
        self._publish_limits(state)

    def probe_ended(self, state: KeyState, outcome: int) -> None:
        """A request that probed ``state`` in Redis ended: 1 answered (the shared allowance grows by one),
        2 rate limited (it halves), 0 neither; either way it no longer counts as in flight."""
        name = self._names[state.alias]["probe"]
        self._spawn(lambda: self._scripts["probe_end"](keys=[name], args=[outcome, MAX_IN_FLIGHT]))

    def refunded(self, state: KeyState, estimated: float) -> None:
        """A request ended without an answer: give its estimate back to the shared TPM bucket."""
        self._correct(state, -estimated)

    def _correct(self, state: KeyState, delta: float) -> None:
        if state.tpm is None or not delta:
            return
        if self.connected:
            self._spawn(lambda: self._adjust(state, delta))
        elif self._fallback is not None:
            self._fallback.adjust(state, delta, self.clock())

    def rate_limited(self, state: KeyState, seconds: float) -> None:
        """A 429: every process stops using the key for ``seconds``."""
        ms = max(1, math.ceil(seconds * 1000))
        self._spawn(lambda: self._scripts["cooldown"](keys=[self._names[state.alias]["cooldown"]], args=[ms]))
        self._publish_limits(state)

    def key_failed(self, state: KeyState, reason: str) -> None:
        """The key is refused: disable it for every process (pushed again on recovery if Redis is away)."""
        self._spawn(lambda: self._write_disabled(state, reason))

    async def _write_disabled(self, state: KeyState, reason: str) -> None:
        await self._client.set(self._names[state.alias]["disabled"], reason, ex=DISABLED_TTL_SECONDS)

    async def _adjust(self, state: KeyState, delta: float) -> None:
        assert state.tpm is not None
        await self._scripts["adjust"](keys=[self._names[state.alias]["tpm"]], args=[state.tpm.rate_per_minute, delta, 0])

    def _publish_limits(self, state: KeyState) -> None:
        """Write limits learned from headers once per change, so other processes use them at once and new
        ones start with them; the shared buckets become at least as full as this process counts them."""
        if not (state.learned_rpm or state.learned_tpm):
            return
        limits = (state.rpm.rate_per_minute if state.rpm and state.learned_rpm else 0.0,
                  state.tpm.rate_per_minute if state.tpm and state.learned_tpm else 0.0)
        if self._published.get(state.alias) == limits or not self.connected:
            return
        self._published[state.alias] = limits
        now = self.clock()
        ahead = [int(b.used(now) / b.rate * 1e6) if b is not None and b.rate > 0 else 0 for b in (state.rpm, state.tpm)]
        names = self._names[state.alias]
        self._spawn(lambda: self._scripts["learned"](keys=[names["limits"], names["rpm"], names["tpm"]],
                                                     args=[*limits, *ahead, 0]))

    def _spawn(self, write: Callable[[], Any]) -> None:
        """Run a write in the background; a failure means Redis is gone (the write is then moot)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # reported outside any loop (tests poking a lease): nothing to share with
            return
        if not self.connected or self._client is None or loop is not self._loop:
            return
        task = loop.create_task(self._guarded(write()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro: Any) -> None:
        try:
            await coro
        except self._errors as error:
            self._lost(error)

    # ---- background: heartbeat, read-back, outage and recovery --------------------------------------
    async def _maintain(self) -> None:
        try:
            while self.clock() - self._last_active < IDLE_SECONDS:
                await asyncio.sleep(REFRESH_SECONDS)
                if self.connected:
                    await self._sync()
                else:
                    await self._try_recover()
        finally:
            if self.connected and self._client is not None:
                await asyncio.shield(self._leave())

    async def _sync(self) -> None:
        """Heartbeat (counting live processes), then read every key's shared state into the local view."""
        try:
            count = await self._scripts["heartbeat"](keys=[processes_name(self.namespace)], args=[self.member, PROCESS_TTL_MS])
            async with self._client.pipeline(transaction=False) as pipe:
                for state in self._states:
                    names = self._names[state.alias]
                    pipe.get(names["disabled"]).pttl(names["cooldown"]).hgetall(names["limits"])
                replies = await pipe.execute()
        except self._errors as error:
            self._lost(error)
            return
        self.processes = max(1, int(count))
        now = self.clock()
        for i, state in enumerate(self._states):
            self._apply(state, *replies[3 * i: 3 * i + 3], now)

    def _apply(self, state: KeyState, disabled: str | None, cooldown_ms: int, limits: dict[str, str], now: float) -> None:
        """Take what other processes found about ``state``: a refusal, a cooldown, learned limits."""
        if disabled and not state.disabled:
            state.disabled = disabled
        if cooldown_ms > 0:
            state.cooldown_until = max(state.cooldown_until, now + cooldown_ms / 1000)
        rpm = float(limits.get("rpm", 0)) if not state.key.rpm else 0.0
        tpm = float(limits.get("tpm", 0)) if not state.key.tpm else 0.0
        if rpm or tpm:
            state.learn(RateLimitSnapshot(limit_requests=int(rpm) or None, limit_tokens=int(tpm) or None), now)
            self._published[state.alias] = (rpm if state.learned_rpm else 0.0, tpm if state.learned_tpm else 0.0)

    def _lost(self, error: BaseException) -> None:
        """Redis is unreachable: warn once, and limit every key to this process's conservative share."""
        if not self.connected:
            return
        self.connected = False
        self._fallback = ConservativeShare(self.processes)
        self._lost_at = self.clock()
        print(
            f"nbllm: WARNING: the shared key pool at {redacted_url(self.url)} is unreachable "
            f"({type(error).__name__}: {error}). Until it is back this process uses 1/{self._fallback.processes} "
            "of each key's limit on its own; reconnecting in the background.",
            file=sys.stderr, flush=True,
        )

    async def _try_recover(self) -> None:
        """If Redis answers again: re-seed emptied buckets, re-publish refusals, and share again."""
        try:
            await self._client.ping()
            await self._seed_buckets()
            for state in self._states:
                if state.disabled:
                    await self._client.set(self._names[state.alias]["disabled"], state.disabled, ex=DISABLED_TTL_SECONDS, nx=True)
        except self._errors:
            return  # still away; try again at the next tick
        self.connected, self._fallback = True, None
        self._published.clear()
        print(
            f"nbllm: the shared key pool at {redacted_url(self.url)} is reachable again after "
            f"{self.clock() - self._lost_at:.1f}s; limits are shared again.",
            file=sys.stderr, flush=True,
        )
        await self._sync()

    async def _seed_buckets(self) -> None:
        """A restarted Redis forgot what was sent: start its buckets full, not empty (no burst storm)."""
        for state in self._states:
            rates, names = shared_rates(state), self._names[state.alias]
            rpm_us, tpm_us = rates.tolerances_us()
            await self._scripts["seed"](keys=[names["rpm"], names["tpm"]], args=[rpm_us, tpm_us])

    async def _leave(self) -> None:
        try:
            await self._client.zrem(processes_name(self.namespace), self.member)
        except self._errors:
            pass


def _verdict(reply: list[Any]) -> Verdict:
    status = int(reply[0])
    if status == DISABLED:
        return Verdict(math.inf, str(reply[2]))
    if status == WAIT:
        return Verdict(int(reply[1]) / 1e6)
    return Verdict(probed=len(reply) > 2 and int(reply[2]) == 1)
