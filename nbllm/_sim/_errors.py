"""Error responses in each provider's shape: auth, validation, quota, rate limit, injected faults."""

from __future__ import annotations

from aiohttp import web

from ._limits import Admission, retry_headers
from ._requests import BadRequest
from ._state import Ticket, mask_key
from ._wire import anthropic_error, openai_error

__all__ = [
    "auth_error",
    "bad_request",
    "injected_error",
    "quota_error",
    "rate_limit_error",
    "version_missing",
]


def _json(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    """Return a JSON error response."""
    return web.Response(status=status, body=body, headers=headers, content_type="application/json")


def auth_error(anthropic: bool, refusal: str, key: str | None, headers: dict[str, str]) -> web.Response:
    """Return 401 for a missing, unknown or revoked key."""
    if anthropic:
        message = "x-api-key header is required" if refusal == "missing" else "invalid x-api-key"
        return _json(401, anthropic_error("authentication_error", message), headers)
    if refusal == "missing":
        body = openai_error(
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )
    else:
        body = openai_error(
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
    return _json(401, body, headers)


def version_missing() -> BadRequest:
    """Return the error Anthropic gives when the ``anthropic-version`` header is absent."""
    return BadRequest("anthropic-version: header is required")


def bad_request(anthropic: bool, exc: BadRequest, headers: dict[str, str]) -> web.Response:
    """Return 400 invalid_request_error."""
    if anthropic:
        return _json(400, anthropic_error("invalid_request_error", exc.message), headers)
    return _json(400, openai_error(exc.message, "invalid_request_error", exc.code, exc.param), headers)


def quota_error(anthropic: bool, headers: dict[str, str]) -> web.Response:
    """Return the out-of-quota error: OpenAI 429 insufficient_quota, Anthropic 402 billing_error."""
    if anthropic:
        body = anthropic_error(
            "billing_error", "Your credit balance is too low to access the Anthropic API."
        )
        return _json(402, body, headers)
    body = openai_error(
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    )
    return _json(429, body, headers)


def rate_limit_error(
    anthropic: bool, admission: Admission, ticket: Ticket, model: str, headers: dict[str, str]
) -> web.Response:
    """Return 429 with ``retry-after`` / ``retry-after-ms`` and the provider's message."""
    headers = {**headers, **retry_headers(admission.wait)}
    kind = admission.kind or "requests"
    profile = ticket.profile
    limit = profile.rpm if kind == "requests" else profile.tpm
    wait = f"{admission.wait:.3g}s"
    if anthropic:
        unit = "requests" if kind == "requests" else "tokens"
        message = (
            f"This request would exceed the rate limit for your organization of {limit} {unit} "
            f"per minute. Please try again in {wait}."
        )
        return _json(429, anthropic_error("rate_limit_error", message), headers)
    label = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    message = (
        f"Rate limit reached for {model} in organization org-nbllm-sim on {label}: "
        f"Limit {limit}. Please try again in {wait}. "
        "Visit https://platform.openai.com/account/rate-limits to learn more."
    )
    return _json(429, openai_error(message, kind, "rate_limit_exceeded"), headers)


def injected_error(anthropic: bool, fault: str, headers: dict[str, str]) -> web.Response:
    """Return an injected 500, overload (OpenAI 503 / Anthropic 529) or 429 error."""
    if fault == "429":
        headers = {**headers, **retry_headers(1.0)}
        if anthropic:
            return _json(429, anthropic_error("rate_limit_error", "Rate limited (simulated)."), headers)
        body = openai_error("Rate limit reached (simulated).", "requests", "rate_limit_exceeded")
        return _json(429, body, headers)
    if fault == "overloaded":
        if anthropic:
            return _json(529, anthropic_error("overloaded_error", "Overloaded"), headers)
        body = openai_error("The engine is currently overloaded, please try again later.", "server_error")
        return _json(503, body, headers)
    if anthropic:
        return _json(500, anthropic_error("api_error", "Internal server error"), headers)
    body = openai_error(
        "The server had an error while processing your request. Sorry about that!", "server_error"
    )
    return _json(500, body, headers)
