"""One HTTP call to a provider: build the request, send it, decode the answer, retry what may be retried.

- ``attempts``: ``run_call`` — key lease → request → status check → SSE or JSON → ``Response``, with retries.
- ``http``: the transport interface (aiohttp by default, httpx2 with ``NBLLM_TRANSPORT=httpx2``).
- ``sse``: a spec-correct server-sent-events decoder working on bytes.
- ``retry``: which failures are retried and how long to wait (pure).
- ``ratelimits``: rate-limit headers turned into a ``RateLimitSnapshot`` (pure).
- ``providers``: the OpenAI-compatible and Anthropic wire formats (pure).
"""

from .attempts import Target, run_call
from .http import Timeouts
from .providers import CallSpec, OutputFormat, resolve_model
from .retry import RetryPolicy

__all__ = ["CallSpec", "OutputFormat", "RetryPolicy", "Target", "Timeouts", "resolve_model", "run_call"]
