"""Judge one answer against a schema, and write the messages that ask again. Pure.

    verdict = judge(response.text, response.finish_reason, schema)
    verdict.ok, verdict.parsed, verdict.errors, verdict.truncated
    messages = reask_messages(messages, response.text, verdict.errors)   # instructor's approach
    messages = with_instructions(messages, schema)     # for servers without structured outputs

A re-ask sends the whole conversation back with the model's answer and what was wrong with it, as
plain text on both wire formats: an Anthropic ``tool_result`` would need the ``tool_use`` id of one
particular response, and a cut-off tool call has no input worth echoing, while the text shows the
model exactly what it wrote. Instructions for servers that refuse ``response_format`` go at the end of
the last user message, with the JSON Schema, where the question is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._types import Message
from .extract import NotJSON, extract_json
from .schema import Schema, SchemaMismatch

__all__ = ["TRUNCATED", "Verdict", "correction", "judge", "reask_messages", "with_instructions"]

#: finish reasons that mean "ran out of tokens": OpenAI's and Anthropic's
TRUNCATED = frozenset({"length", "max_tokens"})
_CUT_OFF = "the answer was cut off at the token limit before it was complete"


@dataclass(frozen=True)
class Verdict:
    """How one answer fared: the parsed value, or the errors (and whether it ran out of tokens)."""

    parsed: Any = None
    errors: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


def judge(text: str, finish_reason: str | None, schema: Schema) -> Verdict:
    """Extract, then validate; a cut-off answer is never accepted, even if what came parses."""
    truncated = finish_reason in TRUNCATED
    try:
        parsed = schema.validate(extract_json(text))
    except (NotJSON, SchemaMismatch) as error:
        errors = error.errors if isinstance(error, SchemaMismatch) else [str(error)]
        return Verdict(errors=tuple([_CUT_OFF, *errors] if truncated else errors), truncated=truncated)
    if truncated:
        return Verdict(errors=(_CUT_OFF,), truncated=True)
    return Verdict(parsed=parsed)


def correction(errors: tuple[str, ...] | list[str]) -> str:
    """The user turn of a re-ask: every error, then what to do."""
    lines = "\n".join(f"- {error}" for error in errors)
    return f"Your answer failed validation:\n{lines}\nFix these errors and reply with only the corrected JSON object."


def reask_messages(messages: list[Message], answer: str, errors: tuple[str, ...] | list[str]) -> list[Message]:
    """The conversation so far, the model's answer, and the correction."""
    return [*messages, {"role": "assistant", "content": answer or "(an empty answer)"},
            {"role": "user", "content": correction(errors)}]


def with_instructions(messages: list[Message], schema: Schema) -> list[Message]:
    """``messages`` with JSON instructions and the schema appended to the last user message."""
    note = ("\n\nAnswer with only a JSON object, no other text, that matches this JSON Schema:\n"
            + json.dumps(schema.json_schema, ensure_ascii=False))
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                message["content"] = [*content, {"type": "text", "text": note.lstrip()}]
            else:
                message["content"] = f"{content or ''}{note}"
            return out
    return [*out, {"role": "user", "content": note.lstrip()}]
