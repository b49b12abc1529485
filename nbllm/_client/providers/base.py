"""What every provider implements: pure request building and response parsing, no I/O.

A provider turns a ``CallSpec`` into an HTTP request and turns bytes that came back (a JSON body, or
SSE events one by one) into text, usage and a finish reason. The client (``_client.py``) does the I/O.
"""

from __future__ import annotations

import abc
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..._exceptions import (
    AuthenticationError,
    BadRequestError,
    ProviderError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from ..._secrets import redact
from ..._types import Message, Usage, content_text

__all__ = [
    "CallSpec", "Completion", "HttpRequest", "OutputFormat", "Provider", "StreamState", "error_for_redirect",
    "error_for_status",
]


@dataclass(frozen=True)
class OutputFormat:
    """The JSON shape an answer must take, as the wire formats ask for it.

    OpenAI-compatible: ``response_format`` ``json_schema`` with ``strict_schema`` and ``"strict": true``
    when the schema has a strict form, else ``schema`` with ``"strict": false``; nothing at all when
    ``native`` is False (the server refused ``response_format``: the instructions are in the prompt).
    Anthropic: one tool named ``name`` with ``schema`` as its input schema, forced by ``tool_choice``.
    """

    name: str
    schema: dict[str, Any]
    strict_schema: dict[str, Any] | None = None
    native: bool = True


@dataclass
class CallSpec:
    """Everything about one call except the key: what to ask and how (``output``: a JSON shape, if any)."""

    model: str
    messages: list[Message]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    stream: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    output: OutputFormat | None = None

    def estimated_prompt_tokens(self) -> int:
        """A cheap upper-ish estimate (4 characters a token) used for TPM budgeting before sending."""
        chars = sum(len(content_text(m.get("content"))) for m in self.messages)
        return chars // 4 + 4 * len(self.messages) + 1


@dataclass
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Completion:
    """A finished non-streamed answer, as parsed from the provider's JSON."""

    text: str
    usage: Usage
    finish_reason: str | None
    model: str


@dataclass
class StreamState:
    """What a stream has delivered so far; ``complete`` only once the provider said it finished.

    ``tool_parts`` collects the input JSON of a tool call (Anthropic ``input_json_delta``): it is the
    answer when the model answered with a tool call and no text, as a forced tool makes it.
    """

    text_parts: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str = ""
    complete: bool = False
    tool_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def answer(self) -> str:
        """The answer's text: the text, or a tool call's input JSON when there is no text."""
        return self.text or "".join(self.tool_parts)


class Provider(abc.ABC):
    """Base class: subclasses build requests and parse answers for one wire format."""

    name = "base"
    default_base_url = ""

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    @abc.abstractmethod
    def build_request(self, spec: CallSpec, api_key: str | None) -> HttpRequest:
        """Method, URL, headers and JSON body for ``spec`` sent with ``api_key``."""

    @abc.abstractmethod
    def parse_completion(self, body: Any) -> Completion:
        """Text, usage and finish reason of a non-streamed answer (any JSON value: ``MalformedAnswer`` if
        it has the wrong shape, a ``ProviderError`` if it is an error object)."""

    @abc.abstractmethod
    def feed_event(self, state: StreamState, event: str, data: str) -> str | None:
        """Apply one SSE event to ``state``; return new text (if any). Raises ProviderError for errors,
        ``MalformedAnswer`` (a ``ValueError``, as invalid JSON is) for data of the wrong shape."""

    @abc.abstractmethod
    def error_details(self, body: Any) -> tuple[str, str]:
        """(error type/code, message) from an error body of this provider."""

    def error_from_response(self, status: int, body_text: str, retry_after: float | None = None) -> ProviderError:
        """Turn an HTTP error answer into the right NbllmError with a message that says what to do."""
        try:
            body = json.loads(body_text) if body_text else {}
        except ValueError:
            body = {}
        error_type, message = self.error_details(body)
        if not message:  # redacted before it is cut short, so that no half of a key survives the cut
            message = redact(body_text)[:300]
        return error_for_status(self.name, status, error_type, message, retry_after)


_QUOTA_TYPES = {"insufficient_quota", "billing_error", "billing_hard_limit_reached", "quota_exceeded"}

_ADVICE = {
    AuthenticationError: "The key was refused: check it, or remove it from the pool.",
    QuotaExhaustedError: "The key's account is out of credit: top it up or use another key.",
    BadRequestError: "The request was rejected as it is; check the model name and parameters.",
    RateLimitError: "Still rate limited after retrying: lower the concurrency or add keys.",
    ServerError: "The provider kept failing; try again later.",
    ProviderError: "The provider kept returning this error; try again later.",
}


def error_for_status(
    provider: str, status: int, error_type: str, message: str, retry_after: float | None = None
) -> ProviderError:
    """Choose the error class from the status and the provider's error type (never from the text)."""
    cls: type[ProviderError]
    if error_type in _QUOTA_TYPES or status == 402:
        cls = QuotaExhaustedError
    elif status in (401, 403) or error_type in ("authentication_error", "permission_error", "invalid_api_key"):
        cls = AuthenticationError
    elif status == 429 or error_type == "rate_limit_error":
        cls = RateLimitError
    elif status >= 500 or error_type in ("overloaded_error", "api_error", "server_error"):
        cls = ServerError
    elif status in (408, 409):  # a timeout or a conflict on the provider's side: worth sending again
        cls = ProviderError
    elif 400 <= status < 500:
        cls = BadRequestError
    else:
        cls = ProviderError
    status_text = f"HTTP {status}" if status else "error in stream"
    text = f"{provider} {status_text}: {message or error_type or 'no details'}. {_ADVICE[cls]}"
    return cls(text, status=status or None, provider_message=message, error_type=error_type, retry_after=retry_after)


def error_for_redirect(provider: str, status: int, request_url: str, location: str | None) -> ProviderError:
    """A 3xx answer: nbllm does not follow it (the key would go along), and says where base_url could point.

    The suggested base_url is the new location without the wire format's path (``/chat/completions``…),
    found as the part of the request URL after its base_url.
    """
    target = urllib.parse.urljoin(request_url, location) if location else ""
    where = f" to {target}" if target else " without a location"
    advice = "check base_url"
    path = urllib.parse.urlsplit(request_url).path
    for suffix in ("/v1/messages", "/chat/completions"):
        if path.endswith(suffix) and target.split("?")[0].endswith(suffix):
            advice = f"if you trust the new address, set base_url={target.split('?')[0].removesuffix(suffix)}"
            break
    text = (
        f"{provider} HTTP {status}: the server redirected the request{where}. nbllm does not follow redirects, "
        f"so the key and the prompt never go to another address; {advice}."
    )
    return ProviderError(text, status=status, error_type="redirect")
