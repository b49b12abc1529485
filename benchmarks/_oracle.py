"""The oracle: the fastest a client can be when it knows every key's true limits and state.

    keys = [OracleKey("sk-a", "a", rpm=600), OracleKey("sk-r", "r", rpm=600, dead=True)]
    result = asyncio.run(run_oracle(base_url + "/v1", keys, prompts, window_seconds=1.0))
    result["wall"], result["statuses"]            # seconds to the last answer; {"200": n, "429": 0, ...}

It is the "achievable" reference of the latency benchmark: nbllm ÷ oracle speed 1.0 means nbllm did as
well as perfect knowledge allows. It is plain aiohttp with no concurrency limit and no hedging; it is
told each key's limits exactly as the simulator enforces them (``nbllm._sim._limits.TokenBucket``:
capacity = limit × window / 60, continuous refill, starting full) and which keys are dead, keeps its own
mirror of every live key's buckets, and sends the head of its FIFO queue on the live key that admits it
soonest, never over the limit. A 500 or a broken connection goes back to the head of the queue at once.

The mirror asks for ``rate × SLACK_SECONDS`` more than one request before it sends: the simulator reads
its clock when it handles the request, after the oracle sent it, and while its bucket is full it gains
nothing from that delay, whereas the mirror has been refilling since the send. Only draws from a full
bucket lose refill that way (the first burst), so the margin costs ``SLACK_SECONDS`` of each key's rate
once per run, not throughput.

``ideal_send_times`` is the same policy run on a perfect clock with no margin: the lower bound the
benchmark checks the oracle against.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from nbllm._sim._limits import TokenBucket
from nbllm._sim._requests import DEFAULT_MAX_TOKENS
from nbllm._sim._tokens import count_prompt_tokens

__all__ = ["SLACK_SECONDS", "KeyMirror", "OracleKey", "ideal_send_times", "run_oracle", "soonest"]

SLACK_SECONDS = 0.1
"""How much later than the send the simulator may read its clock. The first burst (a full bucket of every
key at once, each on a new connection) is handled over tens of milliseconds on a busy 2-core machine:
with 30 ms the oracle met one 429 per key in about one run in three, with 100 ms none in twelve. It
costs the oracle 0.1 s of each key's rate once (about 0.5 % of a 20 s run), in nbllm's favour."""
_EPS = 1e-9


@dataclass(frozen=True)
class OracleKey:
    """One key as the oracle knows it: its true limits (None: unlimited) and whether it is dead."""

    key: str
    alias: str
    rpm: float | None = None
    tpm: float | None = None
    dead: bool = False  # revoked or out of quota: never sent to

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "alias": self.alias, "rpm": self.rpm, "tpm": self.tpm, "dead": self.dead}


class KeyMirror:
    """The oracle's copy of one key's request and token buckets."""

    def __init__(self, key: OracleKey, window_seconds: float, now: float, slack: float = SLACK_SECONDS) -> None:
        self.key, self.slack = key, slack
        self.requests = TokenBucket(key.rpm, window_seconds, now) if key.rpm else None  # type: ignore[arg-type]
        self.tokens = TokenBucket(key.tpm, window_seconds, now) if key.tpm else None  # type: ignore[arg-type]

    def wait(self, tokens: float, now: float) -> float:
        """Seconds until the server will surely admit a request estimated at ``tokens`` (0: now)."""
        if self.key.dead:
            return math.inf
        return max(self._bucket_wait(self.requests, 1.0, now), self._bucket_wait(self.tokens, tokens, now))

    def _bucket_wait(self, bucket: TokenBucket | None, amount: float, now: float) -> float:
        if bucket is None:
            return 0.0
        bucket.refill(now)
        need = min(amount, bucket.capacity)  # what the simulator checks (a larger draw leaves a debt)
        need = min(need + bucket.rate * self.slack, bucket.capacity)
        return 0.0 if bucket.level >= need - _EPS else (need - bucket.level) / bucket.rate

    def headroom(self, now: float) -> float:
        """Requests left in the bucket (infinite when unlimited): the tie-break between keys free now."""
        if self.requests is None:
            return math.inf
        self.requests.refill(now)
        return self.requests.level

    def take(self, tokens: float, now: float) -> None:
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)

    def settle(self, estimated: float, used: float, now: float) -> None:
        """Correct the token bucket from the estimate to what the answer used, as the simulator does."""
        if self.tokens is not None and used != estimated:
            if used < estimated:
                self.tokens.give(estimated - used, now)
            else:
                self.tokens.take(used - estimated, now)


def soonest(mirrors: list[KeyMirror], tokens: float, now: float) -> tuple[KeyMirror | None, float]:
    """The live key that admits a request soonest, and the wait; among keys free now, the fullest."""
    best: KeyMirror | None = None
    best_wait = math.inf
    for mirror in mirrors:
        wait = mirror.wait(tokens, now)
        if wait < best_wait - _EPS or (best is not None and abs(wait - best_wait) <= _EPS
                                       and mirror.headroom(now) > best.headroom(now)):
            best, best_wait = mirror, wait
    return best, best_wait


def ideal_send_times(keys: list[OracleKey], window_seconds: float, n: int,
                     tokens: list[float] | None = None) -> list[float]:
    """When a perfect client (no margin, no delay) sends requests 1..n, in seconds from the start."""
    mirrors = [KeyMirror(k, window_seconds, 0.0, slack=0.0) for k in keys]
    now, times = 0.0, []
    for i in range(n):
        cost = tokens[i] if tokens else 0.0
        mirror, wait = soonest(mirrors, cost, now)
        if mirror is None or math.isinf(wait):
            raise ValueError("no live key")
        now += wait
        mirror.take(cost, now)
        times.append(now)
    return times


def token_estimate(prompt: str) -> float:
    """What the simulator draws from a token bucket up front for this prompt (no max_tokens sent)."""
    return float(count_prompt_tokens([{"role": "user", "content": prompt}]) + DEFAULT_MAX_TOKENS)


# ---- the client ----------------------------------------------------------------------------------------
class _Run:
    """One oracle run's queue and counters."""

    def __init__(self, prompts: list[str], mirrors: list[KeyMirror], needs_tokens: bool) -> None:
        self.prompts, self.mirrors = prompts, mirrors
        self.estimates = [token_estimate(p) if needs_tokens else 0.0 for p in prompts]
        self.queue: collections.deque[int] = collections.deque(range(len(prompts)))
        self.wake = asyncio.Event()
        self.ok = 0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.sent: collections.Counter[str] = collections.Counter()
        self.in_flight = self.max_in_flight = 0
        self.last_answer = 0.0

    def retry(self, i: int) -> None:
        self.queue.appendleft(i)  # at once, on whichever key is best then
        self.wake.set()


async def _send(run: _Run, session: Any, url: str, i: int, mirror: KeyMirror) -> None:
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": run.prompts[i]}]}).encode()
    headers = {"Authorization": f"Bearer {mirror.key.key}", "Content-Type": "application/json"}
    run.in_flight += 1
    run.max_in_flight = max(run.max_in_flight, run.in_flight)
    try:
        async with session.post(url, data=body, headers=headers) as response:
            raw = await response.read()
            status = response.status
    except Exception as error:  # noqa: BLE001 - a broken connection is retried like a 500
        status, raw = type(error).__name__, b""
    finally:
        run.in_flight -= 1
    run.statuses[str(status)] += 1
    now = time.monotonic()
    if status == 200:
        used = json.loads(raw).get("usage", {}).get("total_tokens", run.estimates[i])
        mirror.settle(run.estimates[i], used, now)
        run.ok += 1
        run.last_answer = now
        run.wake.set()
        return
    if status != 429:  # a request refused by the limiter drew nothing; a failed one is refunded
        mirror.settle(run.estimates[i], 0.0, now)
    run.retry(i)


async def _dispatch(run: _Run, session: Any, url: str, deadline: float) -> set[asyncio.Task[None]]:
    tasks: set[asyncio.Task[None]] = set()
    while run.ok < len(run.prompts) and time.monotonic() < deadline:
        if not run.queue:
            run.wake.clear()
            await _wait(run.wake, deadline - time.monotonic())
            continue
        now = time.monotonic()
        mirror, wait = soonest(run.mirrors, run.estimates[run.queue[0]], now)
        if mirror is None:
            raise RuntimeError("the oracle was given no live key")
        if wait > 0:
            run.wake.clear()
            await _wait(run.wake, min(wait, deadline - now))  # a retry or a token refund may come first
            continue
        i = run.queue.popleft()
        mirror.take(run.estimates[i], now)
        run.sent[mirror.key.alias] += 1
        task = asyncio.create_task(_send(run, session, url, i, mirror))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    return tasks


async def _wait(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), max(seconds, 0.0))
    except asyncio.TimeoutError:
        pass


async def run_oracle(url: str, keys: list[OracleKey], prompts: list[str], *, window_seconds: float,
                     timeout: float = 300.0, slack: float = SLACK_SECONDS) -> dict[str, Any]:
    """Answer every prompt as fast as the keys allow; return wall time, answers, statuses and sends per key."""
    import aiohttp

    start = time.monotonic()
    mirrors = [KeyMirror(k, window_seconds, start, slack) for k in keys]
    run = _Run(prompts, mirrors, needs_tokens=any(k.tpm for k in keys))
    connector = aiohttp.TCPConnector(limit=0)  # unlimited concurrency
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = await _dispatch(run, session, url.rstrip("/") + "/chat/completions", start + timeout)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"wall": (run.last_answer or time.monotonic()) - start, "ok": run.ok, "lost": len(prompts) - run.ok,
            "statuses": dict(run.statuses), "sent": dict(run.sent), "max_in_flight": run.max_in_flight}


def oracle_client(url: str, keys: list[dict[str, Any]], prompts: list[str], window_seconds: float,
                  timeout: float = 300.0) -> dict[str, Any]:
    """``run_isolated`` entry point: the oracle in a fresh interpreter."""
    return asyncio.run(run_oracle(url, [OracleKey(**k) for k in keys], prompts, window_seconds=window_seconds,
                                  timeout=timeout))
