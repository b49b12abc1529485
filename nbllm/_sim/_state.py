"""The simulator's mutable state: key profiles, rate limiters, quotas and statistics.

Requests run on the server's event loop, while `Simulator.stats()` and
`Simulator.revoke()` come from other threads, so every access goes through one lock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from ._config import KeyProfile, SimConfig
from ._hashing import stable_hash
from ._limits import Admission, KeyLimiter, anthropic_limit_headers, openai_limit_headers

__all__ = ["KeyStats", "SimState", "Ticket", "mask_key"]

_COUNTERS = (
    "requests",
    "ok",
    "rate_limited",
    "unauthorized",
    "quota",
    "server_errors",
    "disconnects",
    "bad_requests",
    "client_aborts",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
)
_UNLIMITED = KeyProfile()


def mask_key(key: str | None) -> str:
    """Return a key as ``sk-…abcd`` for display; "(no key)" when none was sent."""
    if not key:
        return "(no key)"
    if len(key) >= 12:
        return f"{key[:3]}…{key[-4:]}"
    return f"…{key[-4:]}"


@dataclass
class KeyStats:
    """Counters of one key (or of all keys), plus in-flight and peak-RPM tracking."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    in_flight: int = 0
    max_in_flight: int = 0
    peak_rpm: int = 0
    # admission times (monotonic seconds) within the last 60 s, oldest first
    admitted: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> None:
        """Record an admitted request: one more in flight and in the 60 s window."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.admitted.append(now)
        while self.admitted and self.admitted[0] <= now - 60.0:
            self.admitted.popleft()
        self.peak_rpm = max(self.peak_rpm, len(self.admitted))

    def snapshot(self) -> dict[str, Any]:
        """Return the counters as a plain dict."""
        return {**self.counts, "max_in_flight": self.max_in_flight, "peak_rpm": self.peak_rpm}


@dataclass
class Ticket:
    """One request's identity as the limiter sees it, from authorisation to check-out."""

    key: str
    name: str
    profile: KeyProfile
    limiter: KeyLimiter | None
    expose_headers: bool
    estimated: int = 0
    admitted: bool = False


class SimState:
    """Thread-safe registry of key profiles, limiters, quota use and statistics."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._open = config.keys is None  # None accepts any key, unlimited
        self._profiles: dict[str, KeyProfile] = dict(config.keys or {})
        self._limiters: dict[str, KeyLimiter] = {}
        self._used: dict[str, int] = {}  # tokens served per key, for quota_tokens
        self._stats: dict[str, KeyStats] = {}
        self._total = KeyStats()
        self._once: set[int] = set()  # hashes of prompts whose ":once" fault already fired
        self._counter = 0

    def next_counter(self) -> int:
        """Return the next request number (drives fault dice and ids)."""
        with self._lock:
            self._counter += 1
            return self._counter

    def _stats_for(self, name: str) -> KeyStats:
        """Return (creating) the stats of a key name; the caller holds the lock."""
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = KeyStats()
        return stats

    def _count(self, name: str, counter: str, amount: int = 1) -> None:
        """Add to a counter of a key and of the total; the caller holds the lock."""
        self._stats_for(name).counts[counter] += amount
        self._total.counts[counter] += amount

    def authorize(self, key: str | None, now: float) -> tuple[Ticket | None, str | None]:
        """Look a key up; return (ticket, None) or (None, refusal) with refusal in missing/unknown/revoked.

        Every call counts as one request in the statistics.
        """
        with self._lock:
            raw = key or ""
            profile = self._profiles.get(raw)
            if profile is None and self._open:
                profile = _UNLIMITED
            name = (profile.alias if profile and profile.alias else None) or mask_key(key)
            self._count(name, "requests")
            refusal = None
            if profile is None:
                refusal = "missing" if not key else "unknown"
            elif profile.revoked:
                refusal = "revoked"
            if refusal is not None:
                self._count(name, "unauthorized")
                return None, refusal
            assert profile is not None
            return Ticket(raw, name, profile, self._limiter(raw, profile, now), self._exposes(profile)), None

    def identify(self, key: str | None) -> tuple[str, str | None]:
        """Return (key name, refusal) as `authorize` decides them, without counting a chat request.

        Batch and file routes use it: they share the keys but not the chat statistics.
        """
        with self._lock:
            profile = self._profiles.get(key or "")
            if profile is None and self._open:
                profile = _UNLIMITED
            name = (profile.alias if profile and profile.alias else None) or mask_key(key)
            if profile is None:
                return name, "missing" if not key else "unknown"
            return name, "revoked" if profile.revoked else None

    def _exposes(self, profile: KeyProfile) -> bool:
        """Tell whether limit headers are sent for this profile (its override wins)."""
        if profile.expose_limit_headers is not None:
            return profile.expose_limit_headers
        return self.config.expose_limit_headers

    def _limiter(self, key: str, profile: KeyProfile, now: float) -> KeyLimiter | None:
        """Return the key's limiter, created on first use; None when the key has no limits."""
        if profile.rpm is None and profile.tpm is None:
            return None
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = KeyLimiter(profile.rpm, profile.tpm, self.config.window_seconds, now)
            self._limiters[key] = limiter
        return limiter

    def count(self, ticket: Ticket, counter: str) -> None:
        """Add one to a counter of the ticket's key and the total."""
        with self._lock:
            self._count(ticket.name, counter)

    def admit(self, ticket: Ticket, estimated: int, now: float) -> Admission | str:
        """Check quota and rate limits; return an `Admission`, or "quota" when the key is out of quota."""
        with self._lock:
            quota = ticket.profile.quota_tokens
            if quota is not None and self._used.get(ticket.key, 0) >= quota:
                self._count(ticket.name, "quota")
                return "quota"
            admission = ticket.limiter.admit(estimated, now) if ticket.limiter else Admission(True)
            if not admission.ok:
                self._count(ticket.name, "rate_limited")
                return admission
            ticket.estimated, ticket.admitted = estimated, True
            self._stats_for(ticket.name).admit(now)
            self._total.admit(now)
            return admission

    def check_out(self, ticket: Ticket, outcome: str, prompt_tokens: int, completion_tokens: int, now: float) -> None:
        """Close an admitted request: count ``outcome``, charge tokens, correct the token bucket."""
        with self._lock:
            if not ticket.admitted:
                return
            ticket.admitted = False
            # A request that failed before its first token costs nothing (bucket and quota refunded).
            used = prompt_tokens + completion_tokens if completion_tokens or outcome == "ok" else 0
            self._count(ticket.name, outcome)
            self._count(ticket.name, "tokens", used)
            if used:
                self._count(ticket.name, "prompt_tokens", prompt_tokens)
                self._count(ticket.name, "completion_tokens", completion_tokens)
            self._used[ticket.key] = self._used.get(ticket.key, 0) + used
            if ticket.limiter is not None:
                ticket.limiter.settle(ticket.estimated, used, now)
            self._stats_for(ticket.name).in_flight -= 1
            self._total.in_flight -= 1

    def limit_headers(self, ticket: Ticket, anthropic: bool, now: float, wall: float) -> dict[str, str]:
        """Return the provider's rate-limit headers for this key, or {} when hidden or unlimited."""
        if ticket.limiter is None or not ticket.expose_headers:
            return {}
        with self._lock:
            if anthropic:
                return anthropic_limit_headers(ticket.limiter, now, wall)
            return openai_limit_headers(ticket.limiter, now)

    def claim_once(self, prompt: str) -> bool:
        """Return True the first time a ``:once`` directive's prompt is seen, False afterwards."""
        h = stable_hash(prompt)
        with self._lock:
            if h in self._once:
                return False
            self._once.add(h)
            return True

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return per-key counters (by alias or masked key) plus a "total" entry."""
        with self._lock:
            out = {name: s.snapshot() for name, s in sorted(self._stats.items())}
            out["total"] = self._total.snapshot()
            return out

    def reset_stats(self) -> None:
        """Zero the counters; requests still in flight keep being tracked."""
        with self._lock:
            for stats in [*self._stats.values(), self._total]:
                stats.counts = dict.fromkeys(_COUNTERS, 0)
                stats.max_in_flight, stats.peak_rpm = stats.in_flight, 0
                stats.admitted.clear()

    def set_profile(self, key: str, profile: KeyProfile) -> None:
        """Replace a key's profile; its limiter is rebuilt when the limits changed."""
        with self._lock:
            old = self._profiles.get(key)
            self._profiles[key] = profile
            if old is None or (old.rpm, old.tpm) != (profile.rpm, profile.tpm):
                self._limiters.pop(key, None)

    def revoke(self, key: str) -> None:
        """Make a key answer 401 from the next request on."""
        with self._lock:
            old = self._profiles.get(key, _UNLIMITED)
            self._profiles[key] = replace(old, revoked=True)
