"""OpenAI-compatible Chat Completions: OpenAI, vLLM, llama.cpp, Ollama, OpenRouter, DeepSeek…"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..._types import Usage
from .base import (
    CallSpec,
    Completion,
    HttpRequest,
    OutputFormat,
    Provider,
    StreamState,
    error_for_status,
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

    def parse_completion(self, body: Mapping[str, Any]) -> Completion:
        choices = body.get("choices") or [{}]
        message = choices[0].get("message") or {}
        return Completion(
            # a structured-outputs refusal has no content: the refusal is the answer (and will not parse)
            text=message.get("content") or message.get("refusal") or "",
            usage=_usage(body.get("usage")),
            finish_reason=choices[0].get("finish_reason"),
            model=body.get("model", ""),
        )

    def feed_event(self, state: StreamState, event: str, data: str) -> str | None:
        if data.strip() == "[DONE]":
            state.complete = True
            return None
        chunk = json.loads(data)
        if "error" in chunk and chunk["error"]:
            error_type, message = self.error_details(chunk)
            raise error_for_status(self.name, 0, error_type, message)
        state.model = chunk.get("model") or state.model
        if chunk.get("usage"):
            state.usage = _usage(chunk["usage"])
        # never index choices[0] blindly: the usage chunk has choices == []
        text = None
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                text = content if text is None else text + content
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
        if text:
            state.text_parts.append(text)
        return text

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


def _usage(raw: Mapping[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))
