"""Settings for the simulator: server-wide `SimConfig`, per-key `KeyProfile`, injected `Faults`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._exceptions import ConfigurationError

__all__ = ["JSON_FAULT_KINDS", "Faults", "KeyProfile", "SimConfig"]

JSON_FAULT_KINDS = ("truncated", "wrong_type", "missing_field", "single_quotes")
"""How a JSON answer can break; see `Faults.broken_json_kinds`."""
_RESPONSE_FORMAT = ("honour", "ignore", "reject")


@dataclass(frozen=True)
class Faults:
    """Per-request fault probabilities, drawn from a seeded generator so runs repeat.

    Example: ``Faults(error_500=0.02, disconnect_mid_stream=0.01)``.
    The same faults can be forced for one prompt with a ``[[sim:FAULT]]`` directive
    (``500``, ``503``, ``529``, ``429``, ``disconnect``, ``malformed``, ``stream_error``,
    ``slow``), or ``[[sim:FAULT:once]]`` so that a retry of the same prompt succeeds.

    Broken JSON: ``Faults(broken_json=0.1)`` damages one in ten answers that are meant to
    be JSON (asked for in the prompt, ``json_object`` mode, a JSON schema, a forced
    Anthropic tool) in one of `broken_json_kinds`. The roll hashes the whole conversation,
    so a re-ask (the bad answer plus a message naming the error) rolls again, at
    `broken_json_on_reask`. ``[[sim:broken_json]]`` in the question breaks every attempt,
    ``[[sim:broken_json:once]]`` only the first, ``[[sim:broken_json_KIND]]`` picks the kind.
    Batches: `batch_line_error_rate` errors single lines, `batch_expire_rate` makes whole
    batches expire half way; ``[[sim:500]]`` (or ``429``, ``529``) in a batch line errors it.
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
    broken_json: float = 0.0
    """Share of first attempts at a JSON answer that come back broken (see the class docstring)."""
    broken_json_on_reask: float = 0.0
    """The same share on a conversation that already holds an assistant answer: models fix an
    answer once told what is wrong, so 0 means a re-ask always parses."""
    broken_json_kinds: tuple[str, ...] = ("truncated", "wrong_type", "missing_field", "single_quotes")
    """Which kinds the dice pick from: truncated (finish_reason length), wrong_type
    (``"result": "twelve"``), missing_field, single_quotes (prose around ``{'a': 1}``).
    Kinds a mode cannot produce are skipped: a strict schema only truncates, JSON mode and
    tools never write prose."""
    batch_line_error_rate: float = 0.0
    """Share of batch lines that fail with a server error (OpenAI: status 500 in the error
    file; Anthropic: an ``errored`` result with ``api_error``), drawn per batch and line."""
    batch_expire_rate: float = 0.0
    """Share of batches that expire half way through processing: finished lines keep their
    results, the rest are ``expired`` (OpenAI: ``batch_expired`` in the error file)."""

    stall: float = 0.0
    """Share of requests that wait `stall_seconds` longer before their first byte: a heavy latency tail.

    Both routes, stream or not; drawn per prompt and attempt like `SimConfig.ttft_sigma`, so a retry
    (or a hedge) of a stalled prompt draws again. Independent of the other faults."""
    stall_seconds: float = 10.0
    """How much longer a stalled request waits."""

    def __post_init__(self) -> None:
        unknown = [k for k in self.broken_json_kinds if k not in JSON_FAULT_KINDS]
        if unknown:
            raise ConfigurationError(
                f"Unknown broken_json_kinds {unknown}: use any of {', '.join(JSON_FAULT_KINDS)}."
            )

    def active(self) -> bool:
        """Tell whether any request fault (500, overload, stream faults) is set, so the common path skips the dice.

        Broken JSON and batch faults are rolled where they apply, not here."""
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
    arithmetic_accuracy_on_reask: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """The same shares on a re-ask (a conversation that already holds an assistant answer),
    picked by a hash of the whole conversation: a model told "result must equal 3+4" fixes it."""
    response_format: str = "honour"
    """How the OpenAI route treats ``response_format``: "honour" (structured outputs),
    "ignore" (answer as if it were absent, like a server that drops unknown fields) or
    "reject" (400 invalid_request_error naming the parameter, like servers without it)."""
    batch_seconds: float = 2.0
    """How long a provider batch takes: validating 10 %, lines finishing one by one over
    80 %, finalizing 10 % (the clock is the server's event loop)."""
    batch_expire_after: float | None = None
    """Seconds after creation at which a batch's unfinished lines expire, and what its
    ``expires_at`` reports; None means the providers' 24 hours."""
    max_concurrency: int | None = None
    """Requests processed at once; more wait in a queue (their time to first token grows)."""

    def __post_init__(self) -> None:
        if self.response_format not in _RESPONSE_FORMAT:
            raise ConfigurationError(
                f"SimConfig.response_format={self.response_format!r}: use 'honour', 'ignore' or 'reject'."
            )
        if self.batch_seconds < 0:
            raise ConfigurationError("SimConfig.batch_seconds must be 0 or more (seconds a batch takes).")
