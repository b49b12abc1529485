"""Native Anthropic Messages API (``POST {base_url}/v1/messages``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from ..._exceptions import ConfigurationError
from ..._types import Usage
from .. import jsoncodec
from .base import (
    CallSpec,
    Completion,
    HttpRequest,
    OutputFormat,
    Provider,
    StreamState,
    error_for_status,
)
from .shapes import (
    expect_object,
    optional_list,
    optional_object,
    optional_text,
    token_count,
)

__all__ = ["AnthropicProvider"]

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; this is used when the caller gave none.
DEFAULT_MAX_TOKENS = 1024

AuthHeader = Literal["bearer", "x-api-key"]


class AnthropicProvider(Provider):
    """Anthropic Messages. ``base_url`` has no ``/v1``, as in the anthropic SDK.

    ``auth_header`` is ``"bearer"`` (``Authorization: Bearer``, what the official SDK 2.x sends and what
    some Anthropic-compatible endpoints require) or ``"x-api-key"`` (older clients and docs).
    """

    name = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def __init__(self, base_url: str | None = None, auth_header: AuthHeader = "bearer") -> None:
        super().__init__(base_url)
        if auth_header not in ("bearer", "x-api-key"):
            raise ConfigurationError(f"auth_header must be 'bearer' or 'x-api-key', not {auth_header!r}.")
        self.auth_header = auth_header

    def build_request(self, spec: CallSpec, api_key: str | None) -> HttpRequest:
        system = [m["content"] for m in spec.messages if m["role"] in ("system", "developer")]
        messages = [m for m in spec.messages if m["role"] not in ("system", "developer")]
        body: dict[str, Any] = {
            "model": spec.model,
            "messages": messages,
            "max_tokens": DEFAULT_MAX_TOKENS if spec.max_tokens is None else spec.max_tokens,
        }
        if system:
            body["system"] = "\n\n".join(str(s) for s in system)
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        if spec.stop:
            body["stop_sequences"] = spec.stop
        if spec.stream:
            body["stream"] = True
        if spec.output is not None:
            body.update(_forced_tool(spec.output))
        body.update(spec.extra)
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            if self.auth_header == "bearer":
                headers["authorization"] = f"Bearer {api_key}"
            else:
                headers["x-api-key"] = api_key
        return HttpRequest(f"{self.base_url}/v1/messages", headers, body)

    def parse_completion(self, body: Any) -> Completion:
        body = expect_object(body, "the answer")
        if body.get("type") == "error" or body.get("error"):  # an error where an answer was expected
            _on_error(self, StreamState(), body)
        blocks = [expect_object(b, "a content block") for b in optional_list(body.get("content"), "content")]
        text = "".join(optional_text(b.get("text"), "a text block") or "" for b in blocks if b.get("type") == "text")
        if not text:  # a tool call and no text (a forced tool): the tool's input is the answer
            text = "".join(json.dumps(b.get("input"), ensure_ascii=False) for b in blocks if b.get("type") == "tool_use")
        return Completion(
            text=text,
            usage=_usage(body.get("usage"), "usage"),
            finish_reason=optional_text(body.get("stop_reason"), "stop_reason"),
            model=optional_text(body.get("model"), "model") or "",
        )

    def feed_event(self, state: StreamState, event: str, data: str) -> str | None:
        kind = event if event and event != "message" else None
        payload = expect_object(jsoncodec.loads(data), "an event") if data else {}
        kind = kind or optional_text(payload.get("type"), "type") or ""
        handler = _HANDLERS.get(kind)
        # ping and event types added later by Anthropic are ignored, as its docs ask
        return handler(self, state, payload) if handler else None

    def error_details(self, body: Any) -> tuple[str, str]:
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            return str(error.get("type") or ""), str(error.get("message") or "")
        return "", ""


def _usage(raw: Any, where: str) -> Usage:
    usage = optional_object(raw, where)
    return Usage(token_count(usage.get("input_tokens"), f"{where}.input_tokens"),
                 token_count(usage.get("output_tokens"), f"{where}.output_tokens"))


def _on_message_start(provider: AnthropicProvider, state: StreamState, payload: Mapping[str, Any]) -> None:
    message = optional_object(payload.get("message"), "message")
    state.model = optional_text(message.get("model"), "message.model") or state.model
    state.usage = _usage(message.get("usage"), "message.usage")


def _on_block_delta(provider: AnthropicProvider, state: StreamState, payload: Mapping[str, Any]) -> str | None:
    delta = optional_object(payload.get("delta"), "delta")
    kind = delta.get("type")
    if kind == "text_delta":
        text = optional_text(delta.get("text"), "delta.text")
        if text:
            state.text_parts.append(text)
        return text or None
    if kind == "input_json_delta":
        partial = optional_text(delta.get("partial_json"), "delta.partial_json")
        if partial:
            state.tool_parts.append(partial)  # the answer when there is no text (StreamState.answer)
    return None  # thinking, signature and citations are not answer text; tool input is not shown as it streams


def _forced_tool(output: OutputFormat) -> dict[str, Any]:
    """Anthropic's structured answer: one tool whose input is the answer, and the model made to call it."""
    tool = {"name": output.name, "description": "Record the answer, in exactly this structure.",
            "input_schema": output.schema}
    return {"tools": [tool], "tool_choice": {"type": "tool", "name": output.name}}


def _on_message_delta(provider: AnthropicProvider, state: StreamState, payload: Mapping[str, Any]) -> None:
    stop_reason = optional_text(optional_object(payload.get("delta"), "delta").get("stop_reason"), "delta.stop_reason")
    if stop_reason:
        state.finish_reason = stop_reason
    usage = optional_object(payload.get("usage"), "usage")
    # output_tokens is cumulative; input_tokens may be repeated (or updated) here too
    if usage.get("output_tokens") is not None:
        state.usage.completion_tokens = token_count(usage["output_tokens"], "usage.output_tokens")
    if usage.get("input_tokens"):
        state.usage.prompt_tokens = token_count(usage["input_tokens"], "usage.input_tokens")


def _on_message_stop(provider: AnthropicProvider, state: StreamState, payload: Mapping[str, Any]) -> None:
    state.complete = True


def _on_error(provider: AnthropicProvider, state: StreamState, payload: Mapping[str, Any]) -> None:
    error_type, message = provider.error_details(payload)
    raise error_for_status(provider.name, 0, error_type, message)


_HANDLERS: dict[str, Any] = {
    "message_start": _on_message_start,
    "content_block_delta": _on_block_delta,
    "message_delta": _on_message_delta,
    "message_stop": _on_message_stop,
    "error": _on_error,
}
