"""The one error tree of nbllm.

Every error nbllm raises is an ``NbllmError``; its message says what happened and what to do.
Keys never appear in messages: a key is named by its alias or its masked form (``sk-…abcd``). That holds
for text a provider sent too (servers echo keys back, in error bodies and in error events inside a
stream): ``NbllmError`` redacts its message, and ``ProviderError`` the provider's message and error type,
when the error is made — the one place every path (HTTP status, stream events, batch failures,
callbacks, ``%%llm`` output, store rows) goes through, so none can forget it.

```
NbllmError
├── ConfigurationError        bad arguments, unknown model string, missing key or base_url
├── ProviderError             the provider answered with an error (has .status, .provider_message)
│   ├── AuthenticationError   401/403: the key is revoked or lacks permission
│   ├── QuotaExhaustedError   the key's account has no credit left
│   ├── BadRequestError       400/404/413/422: the request itself is wrong; retrying will not help
│   ├── RateLimitError        429 after the retries ran out, or every key parked by a long retry-after
│   └── ServerError           5xx / overloaded after the retries ran out
├── StreamInterruptedError    a stream ended or broke before its terminator (.partial_text kept)
├── RequestTimeoutError       connect, idle-between-chunks or overall deadline passed
├── APIConnectionError        the server could not be reached after the retries ran out
├── StructuredOutputError     with schema=: no answer fit the schema within the re-ask budget
├── NoKeyAvailableError       every key in the pool is disabled
├── BatchInterrupted          a batch was interrupted; .results holds what finished
│   └── BatchPaused           its budget would be exceeded: paused, not failed; .batch.resume(budget=…)
└── ProviderBatchError        a request in a provider batch never ran: expired, cancelled, rejected, gone
```
"""

from __future__ import annotations

from typing import Any

from ._secrets import redact

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "BatchInterrupted",
    "BatchPaused",
    "ConfigurationError",
    "NbllmError",
    "NoKeyAvailableError",
    "ProviderBatchError",
    "ProviderError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "StreamInterruptedError",
    "StructuredOutputError",
]


class NbllmError(Exception):
    """Root of every error nbllm raises."""

    #: Whether the same request may succeed if sent again (possibly with another key).
    retryable: bool = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(NbllmError):
    """Arguments or settings are wrong; the message says which and how to fix them."""


class ProviderError(NbllmError):
    """The provider answered with an error status or an error object inside a stream."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider_message: str = "",
        error_type: str = "",
        retry_after: float | None = None,
        key_alias: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.provider_message = redact(provider_message)
        self.error_type = redact(error_type)
        self.retry_after = retry_after
        self.key_alias = key_alias


class AuthenticationError(ProviderError):
    """The key was refused (401/403). Check it, or remove it from the pool."""


class QuotaExhaustedError(ProviderError):
    """The key's account is out of credit. Top it up or use another key."""


class BadRequestError(ProviderError):
    """The request itself was rejected; sending it again will not help."""


class RateLimitError(ProviderError):
    """429 Too Many Requests, still failing after the retries; or every key that could serve the call asked
    for a longer wait than ``RetryPolicy.max_retry_after``."""

    retryable = True


class ServerError(ProviderError):
    """5xx or overloaded, still failing after the retries."""

    retryable = True


class StreamInterruptedError(NbllmError):
    """The stream broke off before the provider said it was complete.

    ``partial_text`` holds what arrived; nbllm never passes a cut-off answer as a complete one.
    """

    retryable = True

    def __init__(self, message: str, *, partial_text: str = "", tokens_delivered: bool = False) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.tokens_delivered = tokens_delivered


class RequestTimeoutError(NbllmError):
    """A connect, idle-between-chunks or overall deadline passed."""

    retryable = True

    def __init__(self, message: str, *, kind: str = "overall") -> None:
        super().__init__(message)
        self.kind = kind


class APIConnectionError(NbllmError):
    """The server could not be reached."""

    retryable = True


class StructuredOutputError(NbllmError):
    """With ``schema=``: no answer fit the schema, also after re-asking (``max_reasks``).

    ``text`` is the last raw answer, ``attempts`` every answer with its errors and usage (``nbllm.Attempt``),
    ``errors`` the last answer's errors.
    """

    def __init__(self, message: str, *, text: str = "", attempts: Any = None, errors: Any = None) -> None:
        super().__init__(message)
        self.text = text
        self.attempts = list(attempts or [])
        self.errors = list(errors or [])


class NoKeyAvailableError(NbllmError):
    """Every key in the pool is disabled; the reasons are in the message and in ``pool.status()``."""


class BatchInterrupted(NbllmError):
    """A batch stopped early (interrupt or no key left). ``results`` keeps every finished item."""

    def __init__(self, message: str, *, results: Any = None) -> None:
        super().__init__(message)
        self.results = results


class ProviderBatchError(NbllmError):
    """A request sent through a provider batch (``mode="batch"``) got no answer from it.

    ``fate`` says why: ``expired`` (the 24-hour window ended first), ``cancelled``, ``failed`` (the
    provider rejected the whole batch), ``missing`` (the batch ended without a line for it) or ``gone``
    (the server no longer knows the batch). Expired, missing and gone requests are worth sending again.
    """

    def __init__(self, message: str, *, fate: str, batch_id: str | None = None) -> None:
        super().__init__(message)
        self.fate = fate
        self.batch_id = batch_id
        self.retryable = fate in ("expired", "missing", "gone")
class BatchPaused(BatchInterrupted):
    """A batch paused before its next request would exceed its budget: paused, not failed.

    ``results`` holds every finished item (None for those not sent yet); ``batch`` is the paused batch:
    ``await error.batch.resume(budget=…)`` continues without resending anything finished (rerunning the
    same call with a higher budget does too, from the store). ``spent`` and ``budget`` are in USD (or
    tokens for ``budget_tokens=``). In a notebook it shows as its message, without a traceback.
    """

    def __init__(self, message: str, *, results: Any = None, batch: Any = None, spent: float = 0.0,
                 budget: float = 0.0) -> None:
        super().__init__(message, results=results)
        self.batch, self.spent, self.budget = batch, spent, budget

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback: a pause is an expected stop, not a crash
        return [f"{type(self).__name__}: {self}"]
