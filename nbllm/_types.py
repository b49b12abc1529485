"""Plain data that flows through nbllm: messages, usage, responses, LangChain-style results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence, Union

from ._exceptions import ConfigurationError

__all__ = [
    "Attempt",
    "Failure",
    "Generation",
    "LLMResult",
    "Message",
    "MessagesInput",
    "Response",
    "StreamEvent",
    "Usage",
    "check_json",
    "check_text",
    "content_text",
    "normalize_messages",
]

Message = dict[str, Any]
MessagesInput = Union[str, Sequence[Mapping[str, Any]]]

_ROLES = {"system", "user", "assistant", "developer", "tool"}


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text of its content blocks
    (``[{"type": "text", "text": ...}, ...]``), joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, Mapping))
    return "" if content is None else str(content)


def normalize_messages(messages: MessagesInput, system: str | None = None) -> list[Message]:
    """Turn a prompt string or a list of role/content dicts into a checked message list.

    A ``system`` prompt is put first unless the list already starts with one. Everything must be
    sendable as UTF-8 JSON; what is not raises a ``ConfigurationError`` naming the message and position.
    """
    if isinstance(messages, str):
        check_text(messages, "The prompt")
        out: list[Message] = [{"role": "user", "content": messages}]
    elif isinstance(messages, Sequence):
        out = [_checked_message(i, message) for i, message in enumerate(messages)]
    else:
        raise ConfigurationError(
            f"A prompt must be a string or a list of messages, got {type(messages).__name__}."
        )
    if not out:
        raise ConfigurationError("The prompt is empty: pass a string or at least one message.")
    if system and out[0]["role"] != "system":
        check_text(system, "The system prompt")
        out.insert(0, {"role": "system", "content": system})
    return out


def _checked_message(i: int, message: Any) -> Message:
    if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
        raise ConfigurationError(
            f"Message {i} must be a dict with 'role' and 'content', got {type(message).__name__}. "
            'Pass a string, or a list like [{"role": "user", "content": "Hi"}].'
        )
    if message["role"] not in _ROLES:
        raise ConfigurationError(f"Message {i} has role {message['role']!r}; use one of {sorted(_ROLES)}.")
    content = message["content"]
    if isinstance(content, str):  # the common case, checked cheaply
        check_text(content, f"Message {i}'s content")
    elif isinstance(content, list) and all(isinstance(part, Mapping) for part in content):
        check_json(content, f"Message {i}'s content")
    elif content is not None:  # None: an assistant message that only calls tools
        raise ConfigurationError(
            f"Message {i}'s content must be a string or a list of content parts (dicts such as "
            f'{{"type": "text", "text": "Hi"}}), got {type(content).__name__}.'
        )
    if len(message) > 2:  # name, tool_calls, tool_call_id…
        check_json({k: v for k, v in message.items() if k != "content"}, f"Message {i}")
    return dict(message)


def check_text(text: str, what: str) -> None:
    """Raise a ConfigurationError if ``text`` is not a string that can be sent as UTF-8 (no lone surrogate)."""
    if not isinstance(text, str):
        raise ConfigurationError(f"{what} must be a string, got {type(text).__name__}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _surrogate_error(what, error) from None


def check_json(value: Any, what: str) -> None:
    """Raise a ConfigurationError if ``value`` cannot be sent as UTF-8 JSON (as the request body is)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise _surrogate_error(what, error, " of its JSON form") from None
    except (TypeError, ValueError, RecursionError) as error:
        raise ConfigurationError(
            f"{what} cannot be sent as JSON ({error}). Use strings, finite numbers, booleans, None, "
            "and lists or dicts of those."
        ) from None


def _surrogate_error(what: str, error: UnicodeEncodeError, within: str = "") -> ConfigurationError:
    char = error.object[error.start]
    return ConfigurationError(
        f"{what} has a character that cannot be sent: a lone surrogate (U+{ord(char):04X}) at position "
        f"{error.start}{within}. Text decoded with errors='surrogateescape' (file names, some files) carries these; "
        "clean it first, e.g. text.encode('utf-8', 'replace').decode('utf-8')."
    )


@dataclass
class Usage:
    """Token counts of one call (or a sum of calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class Attempt:
    """One answer judged on the way to a structured answer: what the model said and why it was refused.

    ``errors`` is empty for the answer that was accepted. ``cached``: read from the store, not requested.
    """

    text: str
    errors: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    latency: float = 0.0
    key_alias: str | None = None
    cached: bool = False


@dataclass
class Response:
    """One finished answer: ``text`` plus how it was made.

    ``str(response)`` is the text, so a Response can be printed or formatted like one. With ``schema=``,
    ``parsed`` is the validated value (a model instance, or a dict for a JSON Schema), ``text`` the raw
    answer it was parsed from, and ``attempts`` every answer judged on the way (one when the first fit);
    ``usage`` and ``latency`` then add up every request made for it. ``hedges``: requests raced beside
    this one on other keys because it ran long (the first answer won; docs/ARCHITECTURE.md, "Hedging").
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    latency: float = 0.0
    time_to_first_token: float | None = None
    key_alias: str | None = None
    provider: str = ""
    cached: bool = False
    parsed: Any = None
    attempts: list[Attempt] = field(default_factory=list)
    hedges: int = 0

    def __str__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return self.text

    @property
    def ok(self) -> bool:
        return True

    @property
    def tokens_per_second(self) -> float | None:
        streaming_time = self.latency - (self.time_to_first_token or 0.0)
        if self.usage.completion_tokens and streaming_time > 0:
            return self.usage.completion_tokens / streaming_time
        return None


@dataclass
class Failure:
    """A batch item that failed: it keeps the error instead of raising it, so the batch goes on.

    For a structured answer that never fit its schema, ``text`` is the last raw answer and ``attempts``
    holds every answer with its errors and usage (``errors`` and ``usage`` sum them up). With
    ``mode="batch"``, ``batch_rounds`` counts the provider batches the item went through.
    """

    error: BaseException
    prompt: Any = None
    attempts: list[Attempt] = field(default_factory=list)
    batch_rounds: int = 0

    text: str = ""
    ok: bool = False

    @property
    def errors(self) -> list[str]:
        """Every validation error of every attempt, in order."""
        return [error for attempt in self.attempts for error in attempt.errors]

    @property
    def usage(self) -> Usage:
        """Tokens of every request made for this item (answers read from the store cost nothing)."""
        total = Usage()
        for attempt in self.attempts:
            if not attempt.cached:
                total += attempt.usage
        return total

    def __str__(self) -> str:
        return f"<failed: {type(self.error).__name__}: {self.error}>"

    def __bool__(self) -> bool:
        return False


@dataclass
class Generation:
    """LangChain-shaped single output: ``text`` and ``generation_info``."""

    text: str
    generation_info: dict[str, Any] | None = None


@dataclass
class LLMResult:
    """LangChain-shaped result of ``generate``: one list of generations per prompt."""

    generations: list[list[Generation]]
    llm_output: dict[str, Any] | None = None

    @classmethod
    def from_responses(cls, responses: Sequence[Response], model: str) -> LLMResult:
        """One generation per response, and the summed token usage, as LangChain reports them."""
        usage = Usage()
        for response in responses:
            usage += response.usage
        generations = [
            [Generation(r.text, {"finish_reason": r.finish_reason, "model": r.model, "latency": r.latency,
                                 "key_alias": r.key_alias, "usage": r.usage.as_dict()})]
            for r in responses
        ]
        return cls(generations=generations, llm_output={"token_usage": usage.as_dict(), "model_name": model})


@dataclass
class StreamEvent:
    """An event of ``astream_events``, named as LangChain names them.

    ``on_llm_start`` (data: input), ``on_llm_stream`` (data: chunk), ``on_llm_end`` (data: output, a
    Response) or ``on_llm_error`` (data: error).
    """

    event: Literal["on_llm_start", "on_llm_stream", "on_llm_end", "on_llm_error"]
    name: str
    data: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __getitem__(self, key: str) -> Any:  # LangChain users index events like dicts
        return getattr(self, key)
