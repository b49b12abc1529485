"""Parsing and validating request bodies and auth headers of both APIs into one neutral `Call`. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ._badrequest import BadRequest
from ._structured import Shape, anthropic_shape, openai_shape
from ._tokens import content_text

__all__ = ["BadRequest", "Call", "anthropic_key", "bearer_key", "parse_anthropic", "parse_openai"]

DEFAULT_MAX_TOKENS = 256
"""Tokens assumed for the TPM estimate when a request gives no max_tokens (OpenAI route)."""


@dataclass(frozen=True)
class Call:
    """What a chat request asks for, whichever API it came through."""

    model: str
    messages: list[Any]
    system: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    shape: Shape | None = None
    """The structured form the answer must take (JSON schema, JSON object, forced tool), if any."""

    @property
    def token_budget(self) -> int:
        """Return the completion tokens reserved for the rate-limit estimate."""
        return self.max_tokens if self.max_tokens is not None else DEFAULT_MAX_TOKENS


def bearer_key(headers: Mapping[str, str]) -> str | None:
    """Return the key of an ``Authorization: Bearer KEY`` header, if any."""
    value = headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def anthropic_key(headers: Mapping[str, str]) -> str | None:
    """Return the key from ``x-api-key`` or, as the official SDK 2.x sends it, ``Authorization: Bearer``."""
    return headers.get("x-api-key") or bearer_key(headers)


def _require_messages(body: Mapping[str, Any]) -> list[Any]:
    """Return a non-empty list of role-bearing messages, or raise."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of messages.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise BadRequest(f"messages[{i}] must be an object with a 'role'.", f"messages[{i}]")
    return messages


def _require_model(body: Mapping[str, Any]) -> str:
    """Return the model name; any non-empty name is accepted and echoed back."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    return model


def _positive_int(value: Any, name: str) -> int | None:
    """Return None or an int of at least 1 (bools are not ints here)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"'{name}' must be an integer of at least 1.", name)
    return value


def _stop_list(value: Any, name: str) -> tuple[str, ...]:
    """Return stop strings as a tuple from a string, a list of strings, or None."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise BadRequest(f"'{name}' must be a string or an array of strings.", name)


def _as_object(body: Any) -> Mapping[str, Any]:
    """Return the body if it is a JSON object, or raise."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def parse_openai(body: Any, response_format: str = "honour") -> Call:
    """Validate a Chat Completions body; raise `BadRequest` like OpenAI would.

    ``response_format`` is `SimConfig.response_format`: how this server treats that parameter.
    """
    body = _as_object(body)
    model, messages = _require_model(body), _require_messages(body)
    if body.get("n", 1) not in (1, None):
        raise BadRequest("The simulator only supports n=1.", "n")
    max_tokens = _positive_int(body.get("max_completion_tokens"), "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _positive_int(body.get("max_tokens"), "max_tokens")
    options = body.get("stream_options") or {}
    return Call(
        model=model,
        messages=messages,
        system="",  # OpenAI system prompts are messages, already in `messages`
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        max_tokens=max_tokens,
        stop=_stop_list(body.get("stop"), "stop"),
        shape=openai_shape(body.get("response_format"), messages, response_format),
    )


def parse_anthropic(body: Any) -> Call:
    """Validate a Messages body (``max_tokens`` is required); raise `BadRequest` like Anthropic would."""
    body = _as_object(body)
    model, messages = _require_model(body), _require_messages(body)
    if body.get("max_tokens") is None:
        raise BadRequest("max_tokens: Field required", "max_tokens")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise BadRequest("system: Input should be a valid string or list of text blocks", "system")
    return Call(
        model=model,
        messages=messages,
        system=content_text(system),
        stream=bool(body.get("stream")),
        include_usage=True,
        max_tokens=_positive_int(body.get("max_tokens"), "max_tokens"),
        stop=_stop_list(body.get("stop_sequences"), "stop_sequences"),
        shape=anthropic_shape(body.get("tools"), body.get("tool_choice"), body.get("output_config")),
    )
