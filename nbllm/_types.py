"""Plain data that flows through nbllm: messages, usage, responses, LangChain-style results."""

from __future__ import annotations

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
    "normalize_messages",
]

Message = dict[str, Any]
MessagesInput = Union[str, Sequence[Mapping[str, Any]]]

_ROLES = {"system", "user", "assistant", "developer", "tool"}


def normalize_messages(messages: MessagesInput, system: str | None = None) -> list[Message]:
    """Turn a prompt string or a list of role/content dicts into a checked message list.

    A ``system`` prompt is put first unless the list already starts with one.
    """
    if isinstance(messages, str):
        out: list[Message] = [{"role": "user", "content": messages}]
    elif isinstance(messages, Sequence):
        out = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
                raise ConfigurationError(
                    f"Message {i} must be a dict with 'role' and 'content', got {type(message).__name__}. "
                    'Pass a string, or a list like [{"role": "user", "content": "Hi"}].'
                )
            if message["role"] not in _ROLES:
                raise ConfigurationError(
                    f"Message {i} has role {message['role']!r}; use one of {sorted(_ROLES)}."
                )
            out.append(dict(message))
    else:
        raise ConfigurationError(
            f"A prompt must be a string or a list of messages, got {type(messages).__name__}."
        )
    if not out:
        raise ConfigurationError("The prompt is empty: pass a string or at least one message.")
    if system and out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": system})
    return out


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
    ``usage`` and ``latency`` then add up every request made for it.
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
