"""One call, end to end: key lease → request → status check → SSE/JSON → Response, with retries.

``run_call`` is an async generator: it yields text deltas as they arrive, then the finished
``Response`` as its last item. It retries 408/409/429/5xx, timeouts, broken connections and malformed
streams with backoff (a 429 cools down only that key, and the retry goes to whichever key is free soonest;
a 429 asking for more than ``max_retry_after`` parks the key); a key that is revoked or out of quota is
disabled and the call moves to another key. Redirects are never followed nor retried. Once text has been yielded it
never retries silently: a broken stream then raises ``StreamInterruptedError`` with the partial text.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .._exceptions import (
    APIConnectionError,
    AuthenticationError,
    NbllmError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    StreamInterruptedError,
)
from .._keys import KeyPool, Lease, RateLimitSnapshot
from .._secrets import redact
from .._types import Response, Usage
from . import jsoncodec
from .headers import media_type
from .http import (
    HttpResponse,
    Timeouts,
    TransportBroken,
    TransportTimeout,
    get_transport,
)
from .providers import (
    CallSpec,
    HttpRequest,
    MalformedAnswer,
    Provider,
    StreamState,
    error_for_redirect,
    make_provider,
)
from .ratelimits import parse_rate_limit_headers
from .retry import RetryPolicy, backoff_delay, error_retry_delay, is_retryable_status, parse_retry_after
from .sse import SSEError, aiter_sse
from .watch import AttemptWatch

__all__ = ["Target", "call_response", "run_call"]

# A pooled 429 costs only a cooldown of one key (the retry goes to whichever key is free soonest), so
# rate-limit retries get a far larger budget than errors: a batch must not lose an item to a busy key.
RATE_LIMIT_RETRIES = 60
# Without max_tokens, a TPM budget still needs an output estimate.
DEFAULT_OUTPUT_ESTIMATE = 256


@dataclass
class Target:
    """Where calls go: a pool of keys, a wire format, and the base URL for keys that have none."""

    pool: KeyPool
    wire_format: str
    base_url: str | None = None
    auth_header: str = "bearer"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    _providers: dict[tuple[str | None, str], Provider] = field(default_factory=dict, repr=False)

    def provider_for(self, lease: Lease) -> Provider:
        base_url = lease.key.base_url or self.base_url
        auth = lease.key.auth_header or self.auth_header
        provider = self._providers.get((base_url, auth))
        if provider is None:
            provider = self._providers[(base_url, auth)] = make_provider(self.wire_format, base_url, auth)
        return provider


class _Attempt:
    """State of one HTTP attempt, kept so that errors can say what was delivered."""

    __slots__ = ("deliver_text", "delivered", "first_token_at", "lease", "started", "state", "watch")

    def __init__(self, deliver_text: bool, lease: Lease, watch: AttemptWatch | None) -> None:
        self.deliver_text, self.lease, self.watch = deliver_text, lease, watch
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.state = StreamState()
        self.delivered = False


async def run_call(spec: CallSpec, target: Target, deliver_text: bool = True,
                   watch: AttemptWatch | None = None) -> AsyncIterator[str | Response]:
    """Yield text deltas, then the Response (see module docstring).

    With ``deliver_text=False`` only the Response is yielded: nobody sees partial text, so even a stream
    that broke after some tokens may be retried (``call_response`` is that call without the generator).
    ``watch`` (a hedged item's attempt, see ``watch.py``) is told which key each request got and when, and
    keeps this attempt off the keys it must avoid; an answer that comes after the other attempt's is not
    yielded: the attempt ends as cancelled.
    """
    retries = _Retries(spec, target, watch)
    while True:
        lease, attempt = await retries.lease(deliver_text)
        try:
            async for item in _attempt_once(spec, target, lease, attempt):
                yield item
            return
        except NbllmError as error:
            await retries.failed(error, lease, attempt)
        finally:
            retries.ended(lease)


async def call_response(spec: CallSpec, target: Target, watch: AttemptWatch | None = None) -> Response:
    """``run_call(spec, target, deliver_text=False, watch)``'s Response, as one coroutine: the same retries
    (``_Retries``) without async generators, and the attempt written inline. Every answer of a batch comes
    through here, and each layer is an object alive for the whole request, which the garbage collector
    walks at every collection meanwhile (docs/ARCHITECTURE.md, "Client CPU")."""
    retries = _Retries(spec, target, watch)
    while True:
        lease, attempt = await retries.lease(False)
        try:
            provider = target.provider_for(lease)
            request = provider.build_request(spec, lease.key.value)
            try:
                async with asyncio.timeout(target.timeouts.total):
                    async with get_transport().post(request.url, request.headers, request.body,
                                                    target.timeouts) as http_response:
                        snapshot = await _checked(provider, request, http_response, lease, target)
                        if spec.stream and media_type(http_response.headers) == "text/event-stream":
                            async for _ in _read_stream(provider, http_response, attempt):
                                pass  # no text is delivered: the stream only fills attempt.state
                        else:
                            await _read_json(provider, http_response, attempt)
            except (TimeoutError, TransportTimeout, TransportBroken) as error:
                raise _failure(error, target, attempt) from None
            return _answered(spec, lease, provider, attempt, snapshot)
        except NbllmError as error:
            await retries.failed(error, lease, attempt)
        finally:
            retries.ended(lease)


class _Retries:
    """One call's retry rules and counts, shared by ``run_call`` and ``call_response``."""

    __slots__ = ("avoid", "errors", "estimate", "rate_limits", "retrying", "spec", "target", "watch")

    def __init__(self, spec: CallSpec, target: Target, watch: AttemptWatch | None) -> None:
        self.spec, self.target, self.watch = spec, target, watch
        self.errors, self.rate_limits = 0, 0
        self.retrying = False  # a failed attempt is being retried: its next lease goes first in the queue
        self.estimate = spec.estimated_prompt_tokens() + (spec.max_tokens or DEFAULT_OUTPUT_ESTIMATE)
        self.avoid = watch.avoid if watch is not None else frozenset()

    async def lease(self, deliver_text: bool) -> tuple[Lease, _Attempt]:
        lease = await self.target.pool.acquire(self.target.wire_format, self.spec.model, self.estimate,
                                               avoid=self.avoid, retry=self.retrying)
        if self.watch is not None:
            self.watch.leased(lease.alias, lease.granted_at)
        return lease, _Attempt(deliver_text, lease, self.watch)

    async def failed(self, error: NbllmError, lease: Lease, attempt: _Attempt) -> None:
        """An attempt failed with ``error``: return (after any backoff) to try again, or raise."""
        self.retrying = True
        if isinstance(error, (AuthenticationError, QuotaExhaustedError)):
            # the key is unusable, not the request: disable it; the next acquire picks another key
            lease.key_failed(_disable_reason(error))
            error.key_alias = lease.alias
            if attempt.delivered:
                raise error
            return
        delay = _retry_delay(error, lease, self.target, attempt, self.errors, self.rate_limits)
        if delay is None and attempt.delivered and not isinstance(error, StreamInterruptedError):
            # text was already shown: keep it, and say why the rest is missing
            raise _interrupted(f"the provider sent an error mid-answer ({error})", attempt) from error
        if delay is None:
            raise error
        if isinstance(error, RateLimitError):
            self.rate_limits += 1
        else:
            self.errors += 1
            await asyncio.sleep(delay)

    def ended(self, lease: Lease) -> None:
        lease.released()  # no-op if the attempt already reported how it ended
        if self.watch is not None:
            self.watch.request_ended()


def _retry_delay(
    error: NbllmError, lease: Lease, target: Target, attempt: _Attempt, errors: int, rate_limits: int
) -> float | None:
    """How long to wait before retrying ``error``, or None to raise it."""
    if attempt.delivered or not error.retryable:
        return None
    if isinstance(error, RateLimitError):
        if rate_limits >= RATE_LIMIT_RETRIES:
            return None
        delay = backoff_delay(0, target.retry, error.retry_after, random.random())
        if delay is not None:
            lease.rate_limited(delay)
            return delay
        if target.retry.max_retries and error.retry_after is not None:
            # the server asked for a longer wait than we accept: park the key for the longest wait we do
            # accept; the retry goes to a key that can serve, or fails at once if every key is parked
            lease.rate_limited(target.retry.max_retry_after, asked=error.retry_after)
            return 0.0
        lease.rate_limited(target.retry.max_retry_after)  # retries are off (max_retries=0)
        return None
    lease.released(failed=True)
    return error_retry_delay(errors, target.retry, getattr(error, "retry_after", None), random.random(),
                             service_answering=lease.key_answering())


def _disable_reason(error: ProviderError) -> str:
    what = "out of quota" if isinstance(error, QuotaExhaustedError) else "key refused"
    return f"{what} (HTTP {error.status})" if error.status else what


async def _attempt_once(spec: CallSpec, target: Target, lease: Lease, attempt: _Attempt) -> AsyncIterator[str | Response]:
    provider = target.provider_for(lease)
    request = provider.build_request(spec, lease.key.value)
    try:
        async with asyncio.timeout(target.timeouts.total):
            async with get_transport().post(request.url, request.headers, request.body, target.timeouts) as http_response:
                snapshot = await _checked(provider, request, http_response, lease, target)
                if spec.stream and media_type(http_response.headers) == "text/event-stream":
                    async for text in _read_stream(provider, http_response, attempt):
                        yield text
                else:  # a non-stream call, or a compatible server that ignored stream=true
                    await _read_json(provider, http_response, attempt)
    except (TimeoutError, TransportTimeout, TransportBroken) as error:
        raise _failure(error, target, attempt) from None
    yield _answered(spec, lease, provider, attempt, snapshot)


async def _checked(provider: Provider, request: HttpRequest, http_response: HttpResponse, lease: Lease,
                   target: Target) -> RateLimitSnapshot:
    """The answer's rate-limit snapshot; raise the provider's error for a status other than 200."""
    # a reset is a wait the server asks for, capped like retry-after (99999h must not block a key)
    snapshot = _capped(parse_rate_limit_headers(http_response.headers), target.retry.max_retry_after)
    if http_response.status != 200:
        raise await _status_error(provider, request, http_response, lease, snapshot)
    return snapshot


def _failure(error: Exception, target: Target, attempt: _Attempt) -> NbllmError:
    """The error an attempt's timeout or broken transport raises."""
    if isinstance(error, TransportTimeout):
        return _timeout_error(error, target.timeouts)
    if isinstance(error, TransportBroken):
        return _transport_error(error, attempt)
    return RequestTimeoutError(
        f"No complete answer within {target.timeouts.total:g}s (overall deadline); raise timeouts.total.",
        kind="overall",
    )


def _answered(spec: CallSpec, lease: Lease, provider: Provider, attempt: _Attempt,
              snapshot: RateLimitSnapshot) -> Response:
    lease.succeeded(attempt.state.usage.total_tokens or None, snapshot)
    watch = attempt.watch
    if watch is not None and not watch.won():
        # the other attempt of this hedged item answered first: its answer stands, this one is dropped
        # (the key's counters above still count what this request used)
        raise asyncio.CancelledError
    return _response(attempt, spec, lease, provider, watch.race.extra if watch is not None else 0)


def _capped(snapshot: RateLimitSnapshot, max_seconds: float) -> RateLimitSnapshot:
    """``snapshot.capped(max_seconds)``, without the copy when no reset is that long (nearly every answer)."""
    if all(reset is None or reset <= max_seconds for reset in (snapshot.reset_requests, snapshot.reset_tokens)):
        return snapshot
    return snapshot.capped(max_seconds)


async def _status_error(
    provider: Provider, request: HttpRequest, http_response: HttpResponse, lease: Lease, snapshot
) -> ProviderError:
    lease.learn(snapshot)
    if 300 <= http_response.status < 400:  # never followed, never retried (see docs/ARCHITECTURE.md, Transport)
        error = error_for_redirect(provider.name, http_response.status, request.url, http_response.headers.get("location"))
        error.key_alias = lease.alias
        return error
    body = (await http_response.aread()).decode("utf-8", "replace")
    retry_after = parse_retry_after(http_response.headers, time.time())
    error = provider.error_from_response(http_response.status, body, retry_after)
    error.key_alias = lease.alias
    # the one retry rule (status, x-should-retry); the error class only says what went wrong
    error.retryable = is_retryable_status(http_response.status, http_response.headers)
    return error


async def _read_stream(provider: Provider, http_response: HttpResponse, attempt: _Attempt) -> AsyncIterator[str]:
    state = attempt.state
    events = aiter_sse(http_response)
    while True:
        try:
            event = await anext(events)
        except StopAsyncIteration:
            break
        except SSEError as error:  # an event over the size cap: a broken or hostile stream
            raise _interrupted(str(error), attempt) from None
        try:
            text = provider.feed_event(state, event.event, event.data)
        except ValueError as error:  # invalid JSON, or JSON of the wrong shape: the stream cannot be trusted
            raise _interrupted(f"a malformed event arrived ({_why_malformed(error)})", attempt) from None
        if text:
            if attempt.first_token_at is None:
                attempt.first_token_at = time.perf_counter()
                attempt.lease.first_token()  # the key's time to first token (hedging reads its tail)
                if attempt.watch is not None:
                    attempt.watch.first_token()
            if attempt.deliver_text:
                attempt.delivered = True
                yield text
        if state.complete:
            return
    raise _interrupted("the stream ended before the provider said it was complete", attempt)


async def _read_json(provider: Provider, http_response: HttpResponse, attempt: _Attempt) -> None:
    raw = await http_response.aread()
    try:
        body = jsoncodec.loads(raw)
    except ValueError:
        raise _interrupted("the answer was not valid JSON", attempt) from None
    try:
        completion = provider.parse_completion(body)
    except MalformedAnswer as error:
        raise _interrupted(f"the answer did not have the expected shape ({error})", attempt) from None
    state = attempt.state
    state.text_parts = [completion.text]
    state.usage, state.finish_reason, state.model = completion.usage, completion.finish_reason, completion.model
    state.complete = True


def _why_malformed(error: ValueError) -> str:
    # a JSON error's text is its position only; a MalformedAnswer names the field, never its value
    return str(error) if isinstance(error, MalformedAnswer) else "not valid JSON"


def _interrupted(why: str, attempt: _Attempt) -> StreamInterruptedError:
    partial = attempt.state.text
    return StreamInterruptedError(
        f"Answer incomplete: {why} ({len(partial)} characters received). "
        "The partial text is kept in .partial_text; run the prompt again for a full answer.",
        partial_text=partial,
        tokens_delivered=attempt.delivered,
    )


def _timeout_error(error: TransportTimeout, timeouts: Timeouts) -> RequestTimeoutError:
    if error.kind == "connect":
        return RequestTimeoutError(f"Could not connect within {timeouts.connect:g}s; check base_url and the network.", kind="connect")
    return RequestTimeoutError(
        f"No data for {timeouts.idle:g}s while waiting for the answer (idle timeout); raise timeouts.idle for slow models.",
        kind="idle",
    )


def _transport_error(error: TransportBroken, attempt: _Attempt) -> NbllmError:
    if attempt.state.text_parts:
        return _interrupted(f"the connection broke ({redact(str(error))[:120]})", attempt)
    return APIConnectionError(
        f"Could not reach the server ({redact(str(error))[:200]}). "
        "Check base_url and that the server is running."
    )


def _response(attempt: _Attempt, spec: CallSpec, lease: Lease, provider: Provider, hedges: int) -> Response:
    state, now = attempt.state, time.perf_counter()
    pieces = len(state.text_parts) or len(state.tool_parts)
    usage = state.usage if state.usage.total_tokens else Usage(spec.estimated_prompt_tokens(), pieces)
    return Response(
        text=state.answer,
        usage=usage,
        model=state.model or spec.model,
        finish_reason=state.finish_reason,
        latency=now - attempt.started,
        time_to_first_token=(attempt.first_token_at - attempt.started) if attempt.first_token_at else None,
        key_alias=lease.alias,
        provider=provider.name,
        hedges=hedges,
    )
