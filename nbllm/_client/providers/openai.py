"""OpenAI-compatible Chat Completions: OpenAI, vLLM, llama.cpp, Ollama, OpenRouter, DeepSeek…"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

__all__ = ["OpenAIProvider"]


class OpenAIProvider(Provider):
    """``POST {base_url}/chat/completions``; ``base_url`` includes the ``/v1`` as in the openai SDK."""

    name = "openai"
    default_base_url = "https://api.openai.com/v1"

    def build_request(self, spec: CallSpec, api_key: str | None) -> HttpRequest:
        body: dict[str, Any] = {"model": spec.model, "messages": spec.messages}
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        if spec.max_tokens is not None:
            body["max_tokens"] = spec.max_tokens
        if spec.stop:
            body["stop"] = spec.stop
        if spec.stream:
            body["stream"] = True
            # the last chunk then carries usage; without it a streamed call has no token counts
            body["stream_options"] = {"include_usage": True}
        if spec.output is not None and spec.output.native:
            body["response_format"] = _response_format(spec.output)
        body.update(spec.extra)
        headers = {"content-type": "application/json", "accept": "text/event-stream" if spec.stream else "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return HttpRequest(f"{self.base_url}/chat/completions", headers, body)

    def parse_completion(self, body: Any) -> Completion:
        body = expect_object(body, "the answer")
        self._raise_error(body)
        choices = optional_list(body.get("choices"), "choices") or [{}]
        choice = expect_object(choices[0], "choices[0]")
        message = optional_object(choice.get("message"), "choices[0].message")
        return Completion(
            # a structured-outputs refusal has no content: the refusal is the answer (and will not parse)
            text=_content_text(message.get("content")) or optional_text(message.get("refusal"), "message.refusal") or "",
            usage=_usage(body.get("usage")),
            finish_reason=optional_text(choice.get("finish_reason"), "finish_reason"),
            model=optional_text(body.get("model"), "model") or "",
        )

    def feed_event(self, state: StreamState, event: str, data: str) -> str | None:
        if data.strip() == "[DONE]":
            state.complete = True
            return None
        chunk = expect_object(jsoncodec.loads(data), "an event")
        self._raise_error(chunk)
        state.model = optional_text(chunk.get("model"), "model") or state.model
        usage = chunk.get("usage")
        if usage is not None:  # usage comes once, in the last chunk; the others carry none or null
            counted = _usage(usage)
            if counted.total_tokens:
                state.usage = counted
        # never index choices[0] blindly: the usage chunk has choices == []
        text = None
        for choice in optional_list(chunk.get("choices"), "choices"):
            choice = expect_object(choice, "a choice")
            delta = optional_object(choice.get("delta"), "delta")
            content = optional_text(delta.get("content"), "delta.content")
            if content:
                text = content if text is None else text + content
            finish = optional_text(choice.get("finish_reason"), "finish_reason")
            if finish:
                state.finish_reason = finish
        if text:
            state.text_parts.append(text)
        return text

    def _raise_error(self, body: Mapping[str, Any]) -> None:
        """An error object where an answer was expected (inside a 200 stream, or a 200 body)."""
        if body.get("error"):
            error_type, message = self.error_details(body)
            raise error_for_status(self.name, 0, error_type, message)

    def error_details(self, body: Any) -> tuple[str, str]:
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            kind = error.get("code") or error.get("type") or ""
            if error.get("type") == "insufficient_quota":
                kind = "insufficient_quota"
            return str(kind), str(error.get("message") or "")
        if isinstance(error, str):  # some compatible servers (Ollama, llama.cpp) send a bare string
            return "", error
        return "", ""


def _response_format(output: OutputFormat) -> dict[str, Any]:
    """Structured outputs: the strict form of the schema when it has one (constrained decoding)."""
    strict = output.strict_schema is not None
    schema = output.strict_schema if strict else output.schema
    return {"type": "json_schema", "json_schema": {"name": output.name, "schema": schema, "strict": strict}}


def _usage(raw: Any) -> Usage:
    usage = optional_object(raw, "usage")
    return Usage(token_count(usage.get("prompt_tokens"), "usage.prompt_tokens"),
                 token_count(usage.get("completion_tokens"), "usage.completion_tokens"))


def _content_text(content: Any) -> str:
    """``message.content``: a string, or (some compatible servers) a list of ``{"type": "text"}`` parts."""
    if not isinstance(content, list):
        return optional_text(content, "message.content") or ""
    parts = (expect_object(part, "a content part") for part in content)
    return "".join(optional_text(part.get("text"), "a text part") or "" for part in parts if part.get("type") == "text")
