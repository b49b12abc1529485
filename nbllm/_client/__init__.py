"""One HTTP call to a provider: build the request, send it, decode the answer, retry what may be retried.

- ``attempts``: ``run_call`` (``call_response``: its Response, without generators) — key lease → request → status check → SSE or JSON → ``Response``, with retries.
- ``http``: the transport interface: nbllm's HTTP/1.1 client (``h1``, ``h1_connection``) by default, aiohttp
  where it does not go (proxies, GET, uploads), either of aiohttp or httpx2 by ``NBLLM_TRANSPORT``.
- ``sse``: a spec-correct server-sent-events decoder working on bytes.
- ``retry``: which failures are retried and how long to wait (pure).
- ``ratelimits``: rate-limit headers turned into a ``RateLimitSnapshot`` (pure).
- ``providers``: the OpenAI-compatible and Anthropic wire formats (pure).
- ``watch``: ``AttemptWatch`` and ``Race`` — what a hedger learns about a running call, and which of an
  item's attempts settles it.

The provider batch APIs (``nbllm._batchapi``) use the same transport, providers and retry rules.
"""

from .attempts import Target, call_response, run_call
from .http import Timeouts, TransportBroken, TransportTimeout, UploadFile, get_transport
from .providers import (
    CallSpec,
    OutputFormat,
    Provider,
    error_for_status,
    make_provider,
    resolve_model,
)
from .retry import RetryPolicy, backoff_delay, is_retryable_status, parse_retry_after
from .watch import AttemptWatch, Race

__all__ = [
    "AttemptWatch",
    "CallSpec",
    "OutputFormat",
    "Provider",
    "Race",
    "RetryPolicy",
    "Target",
    "Timeouts",
    "TransportBroken",
    "TransportTimeout",
    "UploadFile",
    "backoff_delay",
    "call_response",
    "error_for_status",
    "get_transport",
    "is_retryable_status",
    "make_provider",
    "parse_retry_after",
    "resolve_model",
    "run_call",
]
