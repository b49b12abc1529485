"""What a provider's rate-limit headers say about a key, in one provider-neutral shape.

The client parses the headers (``nbllm._client.ratelimits``); the key state learns from the snapshot
(``KeyState.learn``). Every field is None when its header was missing or unparsable: a snapshot never
guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
        # spelled out, not a walk over fields(): the key pool asks this for every answer
        return (self.limit_requests is None and self.remaining_requests is None and self.reset_requests is None
                and self.limit_tokens is None and self.remaining_tokens is None and self.reset_tokens is None)

    def capped(self, max_seconds: float) -> RateLimitSnapshot:
        """The same snapshot with resets no longer than ``max_seconds``.

        A reset is a wait the server asks for, like ``retry-after``, and is capped the same way
        (``RetryPolicy.max_retry_after``): a hostile or broken ``99999h`` must not block a key for years.
        After the capped wait the key is tried again, and a 429 then says how long to stay away.
        """
        def cap(seconds: float | None) -> float | None:
            return None if seconds is None else min(seconds, max_seconds)

        return replace(self, reset_requests=cap(self.reset_requests), reset_tokens=cap(self.reset_tokens))
