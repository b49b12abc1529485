"""Runtime state of one key, and the pure choice of which key takes the next request.

Nothing here awaits or reads a clock: every method takes ``now``. The async queue around it lives in
``pool.py``.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from .bucket import LeakyBucket
from .config import ApiKey
from .latency import LatencyWindow
from .snapshot import RateLimitSnapshot

__all__ = ["KeyState", "Sent", "choose_key"]

# While a key's limits are unknown, how many requests it may have in flight (a burst any paid tier takes).
# It grows by one per success and halves on a 429: additive increase, multiplicative decrease, as TCP
# does for a link of unknown capacity.
PROBE_IN_FLIGHT = 16
# Until a key of unknown limits has answered once, its first PROBE_BURST requests go out at once and the
# next ones at most one per PROBE_SPACING, instead of the whole allowance at once: a 429 comes back at
# once (it is refused on arrival, with the limit in its headers on every major provider), so the probe
# stops after a few 429s instead of sending 16 into a key whose bucket holds 4 or 5 (10 ms was too
# short on a loaded machine: 4 429s per key in scenario E; a burst of 8 drew 17 429s in scenario C).
# 16 requests take 0.24 s to go out, 10 (a notebook's gather) 0.12 s; after the first answer the pacing
# ends (a key that never sends limits is then probed by the in-flight allowance alone).
PROBE_BURST = 4
PROBE_SPACING = 0.02
MAX_IN_FLIGHT = 1024
BUSY_RECHECK_SECONDS = 1.0
# A 429 on a key whose limits nobody told us: guess its rate from what it accepted recently, then back off
# multiplicatively on each further 429 and creep up on success (AIMD on the rate itself).
RATE_WINDOW_SECONDS = 10.0
RATE_GUESS_SHARE = 0.8
RATE_DECREASE = 0.8
RATE_INCREASE = 1.02
# A guess never starts below this: with too few samples the estimate says nothing, and retry-after
# cooldowns still protect a key that really is slower.
MIN_GUESS_RPM = 60.0
# 'remaining: 0' with a reset within this is a per-minute bucket refilling (our bucket models it); a
# longer reset is another limit (a daily quota, a window that restarts at once) and blocks the key.
REFILL_SECONDS = 60.0
# A key waiting less than this is only being paced (a busy key at its limit): status still says "ready".
WAIT_SHOWN_SECONDS = 1.0
# A key that answered at least HEALTHY_ANSWERS of its last HEALTH_WINDOW requests is up: a failure on it is
# one bad connection or replica, and its retry need not back off (``nbllm._client.retry.error_retry_delay``).
# 8 of 10 holds at a 10 % error rate nearly always; three failures in a row, the start of an outage, end it.
HEALTH_WINDOW = 10
HEALTHY_ANSWERS = 8
# A key is parked at least this long, so that max_retry_after=0 does not send it back at once.
MIN_PARK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Sent:
    """What a key had been sent when a request was granted (``KeyState.mark``): a response's rate-limit
    headers describe the server's bucket at that moment, and what was sent since is not in them."""

    at: float
    requests: int
    tokens: float


@dataclass(eq=False)
class KeyState:
    """Limits, health and counters of one key."""

    key: ApiKey
    rpm: LeakyBucket | None = None
    tpm: LeakyBucket | None = None
    learned_rpm: bool = False
    learned_tpm: bool = False
    guessed_rpm: bool = False  # rpm inferred from 429s, not told by the user or headers
    last_decrease: float = -math.inf  # 429s of requests sent before this moment say nothing new
    cooldown_until: float = 0.0
    # a 429 asked for a longer wait than the retry policy accepts: not chosen at all until then
    parked_until: float = 0.0
    parked_reason: str = ""
    # a 'remaining: 0' header: nothing left until the reset (capped by the client), limit known or not
    reset_until: float = 0.0
    # while probing a key that never answered: the earliest time of its next request (PROBE_SPACING)
    probe_next_at: float = 0.0
    # capacity used elsewhere (other processes sharing the key through Redis, see ``_shared.py``)
    busy_until: float = 0.0
    disabled: str | None = None
    in_flight: int = 0
    in_flight_cap: float = PROBE_IN_FLIGHT
    done: int = 0
    failed: int = 0
    # outcomes of the key's last requests, True for an answer (see HEALTH_WINDOW; 429s are not in it)
    outcomes: collections.deque[bool] = field(default_factory=lambda: collections.deque(maxlen=HEALTH_WINDOW))
    rate_limited: int = 0
    tokens: int = 0
    # everything ever taken from this key (requests, estimated tokens): ages rate-limit snapshots
    sent_requests: int = 0
    sent_tokens: float = 0.0
    # start times of recent requests, kept only while no limit is known (to guess one after a 429)
    recent: collections.deque[float] = field(default_factory=collections.deque)
    # how long answers took, per model (admission reads the mean, hedging the tail; see latency.py)
    latency: dict[str, LatencyWindow] = field(default_factory=dict)
    # how long streams waited for their first token, per model (hedging reads the tail of streams)
    first_token: dict[str, LatencyWindow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.key.rpm:
            self.rpm = LeakyBucket(self.key.rpm)
        if self.key.tpm:
            self.tpm = LeakyBucket(self.key.tpm)
        if self.limits_known:
            self.in_flight_cap = MAX_IN_FLIGHT

    @property
    def alias(self) -> str:
        return self.key.alias

    @property
    def limits_known(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    @property
    def first_contact(self) -> bool:
        """No limit known and no answer yet: requests are paced (PROBE_BURST, PROBE_SPACING) until one answer comes."""
        return not self.done and not self.limits_known

    def wait_time(self, tokens: float, now: float) -> float:
        """Seconds until this key could take a request of ``tokens`` (inf if disabled)."""
        if self.disabled:
            return math.inf
        wait = max(0.0, self.cooldown_until - now, self.busy_until - now, self.reset_until - now)
        if self.first_contact:
            wait = max(wait, self.probe_next_at - now)
        if self.rpm is not None:
            wait = max(wait, self.rpm.time_until(1, now))
        if self.tpm is not None:
            wait = max(wait, self.tpm.time_until(tokens, now))
        return wait

    def has_room(self) -> bool:
        return self.in_flight < self.in_flight_cap

    def load(self, now: float) -> float:
        """How full the key is, 0..1+, used to spread requests in proportion to capacity."""
        levels = [b.level / b.capacity for b in (self.rpm, self.tpm) if b is not None]
        spread = self.in_flight / max(self.in_flight_cap, 1.0)
        return max(levels) if levels else spread

    def latency_of(self, model: str) -> LatencyWindow:
        """This key's latency record for ``model`` (made empty on first use)."""
        window = self.latency.get(model)
        if window is None:
            window = self.latency[model] = LatencyWindow()
        return window

    def first_token_of(self, model: str) -> LatencyWindow:
        """This key's time-to-first-token record for ``model`` (streams only; made empty on first use)."""
        window = self.first_token.get(model)
        if window is None:
            window = self.first_token[model] = LatencyWindow()
        return window

    def parked(self, now: float) -> bool:
        return self.parked_until > now

    def take(self, tokens: float, now: float) -> float:
        """Take one request of ``tokens``; return the tokens taken (a huge estimate is capped, see
        ``LeakyBucket.consume``), which ``finish`` or ``release`` later get back."""
        if self.rpm is not None:
            self.rpm.consume(1, now)
        if self.tpm is not None:
            tokens = self.tpm.consume(tokens, now)
        if self.first_contact and self.sent_requests >= PROBE_BURST - 1:
            self.probe_next_at = now + PROBE_SPACING
        self.in_flight += 1
        self.sent_requests += 1
        self.sent_tokens += tokens
        return tokens

    def mark(self, now: float) -> Sent:
        """What this key has been sent up to ``now`` (a lease keeps it to age the headers of its answer)."""
        return Sent(now, self.sent_requests, self.sent_tokens)

    @property
    def answering(self) -> bool:
        """Whether the key answered at least HEALTHY_ANSWERS of its last HEALTH_WINDOW requests."""
        return len(self.outcomes) == HEALTH_WINDOW and sum(self.outcomes) >= HEALTHY_ANSWERS

    def errored(self) -> None:
        """A request on this key failed (an error answer, a timeout, a broken connection)."""
        self.failed += 1
        self.outcomes.append(False)

    def finish(self, estimated_tokens: float, used_tokens: int | None, now: float) -> None:
        """A request ended with an answer: count it and correct the TPM estimate."""
        self.in_flight = max(0, self.in_flight - 1)
        self.done += 1
        self.outcomes.append(True)
        if self.rpm is None:  # remember what the key accepted, to guess its limit after a 429
            self.recent.append(now)
            while self.recent[0] < now - RATE_WINDOW_SECONDS:
                self.recent.popleft()
        if used_tokens is not None:
            self.tokens += used_tokens
            if self.tpm is not None:
                self.tpm.adjust(used_tokens - estimated_tokens, now)
        if not self.limits_known:
            self.in_flight_cap = min(MAX_IN_FLIGHT, self.in_flight_cap + 1)
        elif self.guessed_rpm and self.rpm is not None:
            self.rpm.resize(self.rpm.rate_per_minute * RATE_INCREASE, now)

    def release(self, unused_tokens: float = 0.0, now: float = 0.0) -> None:
        """A request ended without an answer: give back the tokens it took and did not use.

        Without usage nobody knows what the provider counted (a 400 or a 429 counts nothing, a broken
        stream some); the whole estimate comes back, and a later ``remaining`` header or 429 corrects it.
        Kept, a 10 MB prompt rejected at once had blocked its key for 12 minutes.
        """
        self.in_flight = max(0, self.in_flight - 1)
        if unused_tokens and self.tpm is not None:
            self.tpm.adjust(-unused_tokens, now)

    def cool_down(self, seconds: float, now: float, sent_at: float | None = None, asked: float | None = None) -> None:
        """A 429: stop sending on this key only, for ``seconds``; learn a rate if none is known.

        ``asked``: the server wanted a longer wait than we accept (``seconds`` is then the cap): the key is
        parked, not chosen at all for ``seconds``, so the work goes to keys that can serve it.
        """
        self.rate_limited += 1
        if asked is not None and asked > seconds:
            seconds = max(seconds, MIN_PARK_SECONDS)
            self.parked_until = max(self.parked_until, now + seconds)
            self.parked_reason = f"the server asked to wait {asked:.0f}s"
        self.cooldown_until = max(self.cooldown_until, now + seconds)
        if sent_at is not None and sent_at < self.last_decrease:
            return  # sent before the last correction: already accounted for
        if not self.limits_known:
            self._guess_rate(now)
        elif self.guessed_rpm and self.rpm is not None:
            self.rpm.resize(max(1.0, self.rpm.rate_per_minute * RATE_DECREASE), now)
        self.last_decrease = now

    def _guess_rate(self, now: float) -> None:
        span = max(1.0, now - self.recent[0]) if self.recent else RATE_WINDOW_SECONDS
        per_minute = max(MIN_GUESS_RPM, RATE_GUESS_SHARE * len(self.recent) / span * 60.0)
        self.rpm = LeakyBucket(per_minute, level=0.0, last=now)
        self.guessed_rpm, self.in_flight_cap = True, MAX_IN_FLIGHT
        self.recent.clear()

    def learn(self, snapshot: RateLimitSnapshot, now: float, since: Sent | None = None) -> None:
        """Take limits the user did not give from the provider's headers, and respect 'remaining'.

        ``since``: the key's ``mark`` when the request these headers answer was granted. 'remaining'
        counted the server's bucket then, a whole latency ago: the bucket has refilled since, and what we
        sent since is not in it. Taken as current it had held a 16 rps key to 10.4 rps (see ``_aged``).
        """
        since = since or self.mark(now)
        if snapshot.limit_requests and not self.key.rpm:
            self.rpm, self.learned_rpm = _learned(self.rpm, snapshot.limit_requests, now), True
            self.guessed_rpm = False
        if snapshot.limit_tokens and not self.key.tpm:
            self.tpm, self.learned_tpm = _learned(self.tpm, snapshot.limit_tokens, now), True
        if self.limits_known:
            self.in_flight_cap = MAX_IN_FLIGHT
        for bucket, remaining, reset in ((self.rpm, snapshot.remaining_requests, snapshot.reset_requests),
                                         (self.tpm, snapshot.remaining_tokens, snapshot.reset_tokens)):
            if remaining is not None and remaining <= 0 and reset and (bucket is None or reset > REFILL_SECONDS):
                # no rate known to refill a bucket, or a reset no per-minute refill explains: wait it out
                self.reset_until = max(self.reset_until, since.at + reset)
        if self.rpm is not None and snapshot.remaining_requests is not None:
            self.rpm.set_available(_aged(self.rpm, snapshot.remaining_requests, self.sent_requests - since.requests,
                                         now - since.at), now)
        if self.tpm is not None and snapshot.remaining_tokens is not None:
            self.tpm.set_available(_aged(self.tpm, snapshot.remaining_tokens, self.sent_tokens - since.tokens,
                                         now - since.at), now)

    def state_text(self, now: float) -> str:
        """What the key is doing, and if it waits, why and how long (``pool.status()``)."""
        if self.disabled:
            return f"disabled: {self.disabled}"
        if self.parked(now):
            return f"parked {self.parked_until - now:.1f}s: {self.parked_reason}"
        if self.cooldown_until > now:
            return f"cooling down {self.cooldown_until - now:.1f}s"
        if self.reset_until > now:
            return f"blocked by reset header {self.reset_until - now:.1f}s"
        for name, bucket in (("TPM", self.tpm), ("RPM", self.rpm)):
            wait = bucket.time_until(1, now) if bucket is not None else 0.0
            if wait >= WAIT_SHOWN_SECONDS:
                return f"waiting: {name} {wait:.1f}s"
        if self.busy_until - now >= WAIT_SHOWN_SECONDS:
            return f"waiting: used by other processes {self.busy_until - now:.1f}s"
        return "ready"

    def status_row(self, now: float) -> dict:
        return {
            "alias": self.alias,
            "masked": self.key.masked,
            "provider": self.key.provider or "any",
            "state": self.state_text(now),
            "in_flight": self.in_flight,
            "done": self.done,
            "failed": self.failed,
            "rate_limited": self.rate_limited,
            "tokens": self.tokens,
            "rpm": self.rpm.rate_per_minute if self.rpm else None,
            "tpm": self.tpm.rate_per_minute if self.tpm else None,
            "learned": self.learned_rpm or self.learned_tpm or self.guessed_rpm,
        }


def _learned(bucket: LeakyBucket | None, limit: float, now: float) -> LeakyBucket:
    if bucket is None:
        return LeakyBucket(limit, level=0.0, last=now)
    if bucket.rate_per_minute != limit:
        bucket.resize(limit, now)
    return bucket


def _aged(bucket: LeakyBucket, remaining: float, sent_since: float, elapsed: float) -> float:
    """What a server that had ``remaining`` left ``elapsed`` seconds ago has left now, at most: it refilled
    at the bucket's rate, and lost what we sent since. As the most it can have left, it only lowers our
    bucket when the server saw more use than we counted (another client on the key), never for our own
    requests that are still in flight. ``remaining: 0`` is the same rule: the refill decides the wait."""
    return max(0.0, remaining) + bucket.rate * max(0.0, elapsed) - sent_since


@dataclass
class Choice:
    state: KeyState | None
    wait: float = math.inf
    candidates: list[KeyState] = field(default_factory=list)


def choose_key(states: Iterable[KeyState], wire_format: str, model: str, tokens: float, now: float,
               avoid: frozenset[str] = frozenset()) -> Choice:
    """The live key that can take this request soonest; among keys free now, the least loaded.

    ``Choice.state`` is None when no key serves this model (``candidates`` empty) or every candidate is
    disabled or parked (``wait`` inf). A key with no room for another in-flight request counts as busy.
    Keys whose alias is in ``avoid`` are not candidates (a hedge must go to another key).
    """
    candidates = [s for s in states if s.key.serves(wire_format, model) and s.alias not in avoid]
    best: KeyState | None = None
    best_rank = (math.inf, math.inf)
    for state in candidates:
        wait = state.wait_time(tokens, now)
        if wait == math.inf or state.parked(now):
            continue
        if not state.has_room():
            # the pool is woken when one of its requests ends; this is only a safety net
            wait = max(wait, BUSY_RECHECK_SECONDS)
        rank = (wait, state.load(now))
        if rank < best_rank:
            best, best_rank = state, rank
    return Choice(best, best_rank[0], candidates)
