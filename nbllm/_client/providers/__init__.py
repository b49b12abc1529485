"""Provider registry: model strings like ``openai:gpt-4o-mini`` resolve to a wire format and a model."""

from __future__ import annotations

from ..._exceptions import ConfigurationError
from .anthropic import AnthropicProvider
from .base import (
    CallSpec,
    Completion,
    HttpRequest,
    OutputFormat,
    Provider,
    StreamState,
    error_for_redirect,
    error_for_status,
)
from .openai import OpenAIProvider
from .shapes import MalformedAnswer

__all__ = [
    "AnthropicProvider",
    "CallSpec",
    "Completion",
    "HttpRequest",
    "MalformedAnswer",
    "OpenAIProvider",
    "OutputFormat",
    "Provider",
    "StreamState",
    "error_for_redirect",
    "error_for_status",
    "make_provider",
    "resolve_model",
]

# OpenAI-compatible services reachable by a prefix; the model string after the prefix is sent as is.
COMPATIBLE_BASE_URLS = {
    "openai": None,
    "deepseek": "https://api.deepseek.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "ollama": "http://localhost:11434/v1",
    "vllm": "http://localhost:8000/v1",
    "llamacpp": "http://localhost:8080/v1",
}
WIRE_FORMATS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}


def resolve_model(model: str, provider: str | None = None) -> tuple[str, str, str | None]:
    """``"openai:gpt-4o-mini"`` → ``("openai", "gpt-4o-mini", None)``.

    Returns (wire format, model name, default base_url of the prefix). A bare name uses ``provider`` if
    given, Anthropic for ``claude-*``, else the OpenAI-compatible format. Only known prefixes are split
    off, so Ollama tags such as ``llama3:8b`` stay whole.
    """
    prefix, sep, rest = model.partition(":")
    if sep and prefix == "anthropic":
        return "anthropic", rest, None
    if sep and prefix in COMPATIBLE_BASE_URLS:
        return "openai", rest, COMPATIBLE_BASE_URLS[prefix]
    if provider is not None:
        if provider not in WIRE_FORMATS:
            raise ConfigurationError(f"Unknown provider {provider!r}; use 'openai' (or any compatible server) or 'anthropic'.")
        return provider, model, None
    if not model:
        raise ConfigurationError("No model given: pass model='openai:gpt-4o-mini' or similar.")
    return ("anthropic" if model.startswith("claude") else "openai"), model, None


def make_provider(wire_format: str, base_url: str | None, auth_header: str = "bearer") -> Provider:
    """A provider instance for one wire format and base URL."""
    if wire_format == "anthropic":
        return AnthropicProvider(base_url, auth_header=auth_header)  # type: ignore[arg-type]
    if wire_format == "openai":
        return OpenAIProvider(base_url)
    raise ConfigurationError(f"Unknown provider {wire_format!r}; use 'openai' or 'anthropic'.")
