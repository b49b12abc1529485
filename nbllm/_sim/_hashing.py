"""Stable hashing and cheap seeded dice, identical across processes and runs."""

from __future__ import annotations

import hashlib

__all__ = ["stable_hash", "unit"]

_MASK = (1 << 64) - 1


def stable_hash(*parts: object) -> int:
    """Return a 64-bit hash of ``parts`` that, unlike `hash`, does not change between processes."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _mix(x: int) -> int:
    """Scramble a 64-bit integer (the splitmix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def unit(seed: int, counter: int, salt: int = 0) -> float:
    """Return a float in [0, 1) fixed by ``(seed, counter, salt)``.

    Cheaper than building a `random.Random` per request, which matters when the
    simulator answers thousands of requests a second.
    """
    x = _mix((seed & _MASK) ^ _mix((counter & _MASK) ^ _mix(salt & _MASK)))
    return (x >> 11) / float(1 << 53)
