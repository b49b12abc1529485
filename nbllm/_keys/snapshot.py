"""What a provider's rate-limit headers say about a key, in one provider-neutral shape.

The client parses the headers (``nbllm._client.ratelimits``); the key state learns from the snapshot
(``KeyState.learn``). Every field is None when its header was missing or unparsable: a snapshot never
guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["RateLimitSnapshot"]


@dataclass(frozen=True)
class RateLimitSnapshot:
    """What the server said about a key's limits; resets are seconds from the response."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    @property
    def is_empty(self) -> bool:
        """True when the response carried no usable rate-limit header at all."""
        return all(getattr(self, f.name) is None for f in fields(self))
