"""Settings for the simulator: server-wide `SimConfig`, per-key `KeyProfile`, injected `Faults`."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Faults", "KeyProfile", "SimConfig"]


@dataclass(frozen=True)
class Faults:
    """Per-request fault probabilities, drawn from a seeded generator so runs repeat.

    Example: ``Faults(error_500=0.02, disconnect_mid_stream=0.01)``.
    The same faults can be forced for one prompt with a ``[[sim:FAULT]]`` directive
    (``500``, ``503``, ``529``, ``429``, ``disconnect``, ``malformed``, ``stream_error``,
    ``slow``), or ``[[sim:FAULT:once]]`` so that a retry of the same prompt succeeds.
    """

    error_500: float = 0.0
    """HTTP 500 before any byte of the answer (both routes)."""
    error_503: float = 0.0
    """HTTP 503 on the OpenAI route."""
    error_529_overloaded: float = 0.0
    """HTTP 529 ``overloaded_error`` on the Anthropic route."""
    disconnect_mid_stream: float = 0.0
    """Streams only: the connection closes after some tokens, with no terminator."""
    malformed_chunk: float = 0.0
    """Streams only: one ``data:`` line of invalid JSON mid-stream (tests client robustness)."""
    slow_tail: float = 0.0
    """Streams only: the last fifth of the tokens arrive five times slower."""
    error_in_stream: float = 0.0
    """Streams only: HTTP 200, some tokens, then a provider error event and the end."""
    stall: float = 0.0
    """Share of requests that wait `stall_seconds` longer before their first byte: a heavy latency tail.

    Both routes, stream or not; drawn per prompt and attempt like `SimConfig.ttft_sigma`, so a retry
    (or a hedge) of a stalled prompt draws again. Independent of the other faults."""
    stall_seconds: float = 10.0
    """How much longer a stalled request waits."""

    def active(self) -> bool:
        """Tell whether any probability is set, so the common no-fault path skips the dice."""
        return any(
            p > 0
            for p in (
                self.error_500,
                self.error_503,
                self.error_529_overloaded,
                self.disconnect_mid_stream,
                self.malformed_chunk,
                self.slow_tail,
                self.error_in_stream,
            )
        )


@dataclass(frozen=True)
class KeyProfile:
    """Limits and behaviour of one API key.

    Example: ``KeyProfile(alias="team-a", rpm=60, tpm=40_000)``.
    """

    alias: str | None = None
    """Name used in `Simulator.stats()`; defaults to the masked key."""
    rpm: int | None = None
    """Requests per minute; None means unlimited."""
    tpm: int | None = None
    """Tokens per minute (prompt + completion); None means unlimited."""
    revoked: bool = False
    """A revoked key gets 401 / authentication_error."""
    quota_tokens: int | None = None
    """After this many tokens served the key is out of quota (429 insufficient_quota / 402)."""
    latency_scale: float = 1.0
    """Multiplies time to first token and streaming intervals: a slow key."""
    expose_limit_headers: bool | None = None
    """Overrides `SimConfig.expose_limit_headers` for this key."""


@dataclass(frozen=True)
class SimConfig:
    """Server-wide simulator settings; the defaults feel like a real provider but answer fast.

    Example: ``SimConfig(keys={"sk-a": KeyProfile(rpm=6)}, ttft=0, tokens_per_second=0)``.
    """

    port: int = 0
    """Port on 127.0.0.1; 0 picks a free one."""
    keys: dict[str, KeyProfile] | None = None
    """None accepts any key (or none), unlimited; otherwise unknown keys get 401."""
    ttft: float = 0.25
    """Mean seconds to the first token."""
    ttft_jitter: float = 0.2
    """Uniform jitter on `ttft`, as a fraction (0.2 means ±20 %)."""
    ttft_sigma: float = 0.0
    """Lognormal latency: when above 0, `ttft` (and `latency`, when set) is the median and each request's
    is multiplied by ``exp(ttft_sigma * z)``, z standard normal; replaces `ttft_jitter`.

    Example: ``SimConfig(ttft=3.0, ttft_sigma=0.5, tokens_per_second=0)``: median 3 s, one request in ten
    above 5.7 s. The die is keyed by the prompt (its last user message) and how often that prompt was
    answered before, not by arrival order, so two clients sending the same prompts meet the same
    latencies however their requests interleave or how many 429s they collect."""
    tokens_per_second: float = 60.0
    """Streaming pace; 0 sends every token at once."""
    latency: float | None = None
    """Total seconds for a non-stream answer; None means ttft + tokens / pace."""
    window_seconds: float = 60.0
    """Bucket capacity is limit * window / 60, refilled continuously at limit / 60 per second."""
    expose_limit_headers: bool = True
    """Send x-ratelimit-* / anthropic-ratelimit-* headers for keys that have limits."""
    faults: Faults = field(default_factory=Faults)
    """Random faults; see `Faults`."""
    seed: int = 0
    """Seeds answers, jitter and fault dice."""
    arithmetic_accuracy: tuple[float, float, float] = (0.97, 0.015, 0.015)
    """Shares of arithmetic answers that are right / not JSON / wrong, picked by prompt hash."""
    max_concurrency: int | None = None
    """Requests processed at once; more wait in a queue (their time to first token grows)."""
