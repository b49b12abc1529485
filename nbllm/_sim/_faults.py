"""Deciding which fault, if any, a request gets: ``[[sim:...]]`` directives first, then seeded dice."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._config import Faults
from ._hashing import unit

__all__ = [
    "BEFORE_ANSWER",
    "Directive",
    "parse_directive",
    "roll_fault",
    "slow_interval",
    "strip_directives",
]

_DIRECTIVE = re.compile(r"\[\[sim:([A-Za-z0-9_]+)(:once)?\]\]")

# Directive spellings -> fault names used by the server.
_ALIASES = {
    "500": "500",
    "503": "overloaded",
    "529": "overloaded",
    "overloaded": "overloaded",
    "429": "429",
    "disconnect": "disconnect",
    "malformed": "malformed",
    "stream_error": "stream_error",
    "slow": "slow",
}

BEFORE_ANSWER = frozenset({"500", "overloaded", "429"})
"""Faults answered with an error status instead of the answer."""


@dataclass(frozen=True)
class Directive:
    """A fault forced by the prompt; ``once`` means only the first request with this prompt."""

    fault: str
    once: bool


def parse_directive(text: str) -> Directive | None:
    """Return the first known ``[[sim:FAULT]]`` / ``[[sim:FAULT:once]]`` directive in ``text``."""
    if "[[sim:" not in text:  # the common case, without running the regex
        return None
    for match in _DIRECTIVE.finditer(text):
        fault = _ALIASES.get(match.group(1).lower())
        if fault is not None:
            return Directive(fault, bool(match.group(2)))
    return None


def strip_directives(text: str) -> str:
    """Remove every ``[[sim:...]]`` directive so answers never echo them."""
    if "[[sim:" not in text:
        return text
    return re.sub(r"[ \t]{2,}", " ", _DIRECTIVE.sub("", text)).strip()


def roll_fault(faults: Faults, *, anthropic: bool, stream: bool, seed: int, counter: int) -> str | None:
    """Roll the configured fault probabilities for request number ``counter``.

    Each fault gets its own die (a salt per fault), checked in a fixed order, so
    the same seed and request order always give the same faults.
    """
    overloaded = faults.error_529_overloaded if anthropic else faults.error_503
    checks: list[tuple[str, float]] = [("500", faults.error_500), ("overloaded", overloaded)]
    if stream:
        checks += [
            ("disconnect", faults.disconnect_mid_stream),
            ("malformed", faults.malformed_chunk),
            ("stream_error", faults.error_in_stream),
            ("slow", faults.slow_tail),
        ]
    for salt, (name, probability) in enumerate(checks, start=1):
        if probability > 0 and unit(seed, counter, salt) < probability:
            return name
    return None


def slow_interval(tokens_per_second: float, latency_scale: float = 1.0) -> float:
    """Seconds between tokens in a slow tail: 5x the normal pace, or 50 ms when pace is instant."""
    if tokens_per_second > 0:
        return 5.0 / tokens_per_second * latency_scale
    return 0.05 * latency_scale
