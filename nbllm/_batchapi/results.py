"""Result lines of a provider batch turned into answers or errors, one per custom_id. Pure: no I/O.

```python
outcome = read_line(provider, json.loads(raw), key_alias="key-1", batch_id="batch_abc", latency=61.0)
outcome.response          # a Response (text, usage, finish_reason) parsed as an online answer is
outcome.error             # or the NbllmError an online call would have raised for that status
outcome.retryable         # a 5xx/429 line, an expired or missing one: worth a follow-up batch
unanswered(custom_id, "expired", "batch_abc")   # for requests a batch ended without
```

Answers go through the provider's ``parse_completion`` and errors through its error mapping
(``error_from_response`` / ``error_for_status``), so a batch item looks exactly like the same item
answered online: same text, same usage fields, same error classes and messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._client import Provider, error_for_status, is_retryable_status
from .._exceptions import NbllmError, ProviderBatchError
from .._secrets import redact
from .._types import Response

__all__ = ["LineOutcome", "read_line", "unanswered"]

# Anthropic's errored results carry an error type but no HTTP status; these are the statuses its
# API documents for each type, so the error classes (and what is retried) match online calls.
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
}

_WHY = {
    "expired": "expired (its 24-hour window ended) before this request ran",
    "cancelled": "was cancelled before this request ran",
    "missing": "ended without a result for this request",
    "gone": "is no longer known to the server (a restarted simulator, or a deleted batch)",
}
_WHAT_TO_DO = {
    "cancelled": "Rerun the call to send it again.",
    "failed": "Fix what the provider names and rerun the call.",
}
_DEFAULT_ADVICE = "Rerun the call to send it again, or pass fallback='online' to answer such items online."


@dataclass(frozen=True)
class LineOutcome:
    """What became of one request: ``fate`` is succeeded, errored, expired, cancelled, missing, failed
    or gone; exactly one of ``response`` and ``error`` is set."""

    custom_id: str
    fate: str
    response: Response | None = None
    error: NbllmError | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None

    @property
    def retryable(self) -> bool:
        """Whether sending the request again may help (a server error, a rate limit, an expiry)."""
        return self.error is not None and bool(self.error.retryable)


def unanswered(custom_id: str, fate: str, batch_id: str | None, detail: str = "") -> LineOutcome:
    """The outcome of a request the batch did not answer (expired, cancelled, missing, failed, gone)."""
    why = _WHY.get(fate, "was rejected by the provider" + (f": {detail}" if detail else ""))
    message = f"The provider batch {batch_id or '(not created)'} {why}. {_WHAT_TO_DO.get(fate, _DEFAULT_ADVICE)}"
    return LineOutcome(custom_id, fate, error=ProviderBatchError(message, fate=fate, batch_id=batch_id))


def read_line(provider: Provider, line: Mapping[str, Any], *, key_alias: str, batch_id: str,
              latency: float = 0.0) -> LineOutcome:
    """One line of an OpenAI output/error file or an Anthropic results file."""
    custom_id = str(line.get("custom_id") or "")
    if provider.name == "anthropic":
        return _anthropic_line(provider, custom_id, line.get("result") or {}, key_alias, batch_id, latency)
    return _openai_line(provider, custom_id, line, key_alias, batch_id, latency)


def _openai_line(provider: Provider, custom_id: str, line: Mapping[str, Any], key_alias: str, batch_id: str,
                 latency: float) -> LineOutcome:
    response, error = line.get("response"), line.get("error")
    if isinstance(response, Mapping) and response.get("status_code") == 200:
        return _answer(provider, custom_id, response.get("body") or {}, key_alias, latency)
    if isinstance(response, Mapping) and response.get("status_code"):
        status = int(response["status_code"])
        failure = provider.error_from_response(status, json.dumps(response.get("body") or {}))
        failure.retryable = is_retryable_status(status, {})
        failure.key_alias = key_alias
        return LineOutcome(custom_id, "errored", error=failure)
    code = str((error or {}).get("code") or "") if isinstance(error, Mapping) else ""
    fate = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(code)
    if fate is not None:
        return unanswered(custom_id, fate, batch_id)
    message = str(error.get("message") or "") if isinstance(error, Mapping) else ""
    return unanswered(custom_id, "failed", batch_id, f"{code}: {message}".strip(": "))


def _anthropic_line(provider: Provider, custom_id: str, result: Mapping[str, Any], key_alias: str, batch_id: str,
                    latency: float) -> LineOutcome:
    kind = result.get("type")
    if kind == "succeeded":
        return _answer(provider, custom_id, result.get("message") or {}, key_alias, latency)
    if kind == "errored":
        error_type, message = provider.error_details(result.get("error") or {})
        status = _ANTHROPIC_STATUS.get(error_type, 500)
        failure = error_for_status(provider.name, status, error_type, redact(message))
        failure.retryable = is_retryable_status(status, {})
        failure.key_alias = key_alias
        return LineOutcome(custom_id, "errored", error=failure)
    fate = {"canceled": "cancelled", "expired": "expired"}.get(str(kind), "missing")
    return unanswered(custom_id, fate, batch_id)


def _answer(provider: Provider, custom_id: str, body: Mapping[str, Any], key_alias: str, latency: float) -> LineOutcome:
    completion = provider.parse_completion(body)
    response = Response(
        text=completion.text, usage=completion.usage, model=completion.model,
        finish_reason=completion.finish_reason, latency=latency, key_alias=key_alias, provider=provider.name,
    )
    return LineOutcome(custom_id, "succeeded", response=response)
