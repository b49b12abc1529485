"""The simulator's toy tokenizer, prompt token counts, and cutting answers at stop strings or max_tokens."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Sequence

__all__ = [
    "Completion",
    "content_text",
    "count_prompt_tokens",
    "finish_answer",
    "last_user_text",
    "tokenize",
]

# One token is a run of non-space characters with the whitespace before it, so
# joining the streamed pieces rebuilds the answer exactly (minus trailing space).
_PIECE = re.compile(r"\s*\S+")

Finish = Literal["end", "length", "stop_sequence"]


def tokenize(text: str) -> list[str]:
    """Split ``text`` into token pieces; each is streamed as one delta and counts as one token."""
    return _PIECE.findall(text)


def content_text(content: Any) -> str:
    """Return the text of a message ``content``: a string, or a list of text / tool_result parts (both APIs)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "tool_result":
                texts.append(content_text(part.get("content")))  # e.g. a validation error sent back
        return "\n".join(texts)
    return ""


def count_prompt_tokens(messages: Sequence[Any], system: str = "") -> int:
    """Estimate prompt tokens: all content characters / 4, rounded up, plus 3 per message.

    A non-empty Anthropic-style ``system`` counts as one more message.
    """
    chars = 0
    for message in messages:
        if isinstance(message, dict):
            chars += len(content_text(message.get("content")))
    count = len(messages)
    if system:
        chars += len(system)
        count += 1
    return math.ceil(chars / 4) + 3 * count


def last_user_text(messages: Sequence[Any]) -> str:
    """Return the text of the last ``user`` message, or "" when there is none."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


@dataclass(frozen=True)
class Completion:
    """An answer as it will be sent: token pieces, why it ended, and the pieces JSON-escaped.

    ``finish`` is provider-neutral: "end" (natural end), "length" (max_tokens) or
    "stop_sequence"; the wire layer maps it to ``finish_reason`` / ``stop_reason``.
    """

    pieces: tuple[str, ...]
    finish: Finish
    stop_sequence: str | None
    escaped: tuple[str, ...]
    """Each piece as a JSON string literal, prebuilt so streaming only concatenates."""

    @property
    def text(self) -> str:
        """Return the full answer text."""
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        """Return the completion token count."""
        return len(self.pieces)


@lru_cache(maxsize=4096)
def finish_answer(text: str, max_tokens: int | None, stop: tuple[str, ...] = ()) -> Completion:
    """Cut ``text`` at the first stop string, then at ``max_tokens`` pieces.

    A stop string found beyond the max_tokens cut does not matter: the answer
    then ends for length, as with a real model.
    """
    finish: Finish = "end"
    stop_sequence = None
    cut = _first_stop(text, stop)
    if cut is not None:
        text, stop_sequence, finish = text[: cut[0]], cut[1], "stop_sequence"
    pieces = tokenize(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, finish, stop_sequence = pieces[:max_tokens], "length", None
    escaped = tuple(json.dumps(p, ensure_ascii=False) for p in pieces)
    return Completion(tuple(pieces), finish, stop_sequence, escaped)


def _first_stop(text: str, stop: tuple[str, ...]) -> tuple[int, str] | None:
    """Return (position, stop string) of the earliest stop string in ``text``, if any."""
    best: tuple[int, str] | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return best
