"""Find the JSON value in a model's answer — only where finding it changes nothing in it. Pure.

    extract_json('Sure! ```json\\n{"result": 7}\\n```')   # -> {"result": 7}
    extract_json("{'result': 7}")                           # raises NotJSON: single quotes

Accepted, because the object itself is exactly what the model wrote: bare JSON; a Markdown fenced
block; prose before or after one complete object (what servers without structured outputs return).

Refused, so that the answer is re-asked instead: single quotes or other Python literals, comments,
trailing commas, and an object cut off before its end. "Repairing" them would guess at what the model
meant — a cut-off object has lost fields, a Python dict may hold ``None``/``True`` or tuples — while a
re-ask costs one request and gets real JSON back. The error says what was wrong, since it is sent back
to the model in the re-ask.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["NotJSON", "extract_json"]

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\n(.*?)\n?```", re.DOTALL)


class NotJSON(ValueError):
    """No complete JSON value could be read from the answer; the message says why."""


def extract_json(text: str) -> Any:
    """The JSON value in ``text`` (bare, fenced, or one object amid prose); raises ``NotJSON``."""
    stripped = text.strip()
    if not stripped:
        raise NotJSON("the answer was empty; reply with the JSON object")
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block)
        except ValueError:
            continue
    start = stripped.find("{")
    if start < 0:
        raise NotJSON("the answer holds no JSON object; reply with only the JSON object")
    end = _object_end(stripped, start)
    if end is None:
        raise NotJSON("the JSON object in the answer is incomplete (it ends before its closing brace)")
    try:
        return json.loads(stripped[start:end])
    except ValueError as error:
        raise NotJSON(
            f"the object in the answer is not valid JSON ({error.msg}, column {error.colno}); "
            "use double quotes, and no comments or trailing commas"
        ) from None


def _object_end(text: str, start: int) -> int | None:
    """Index after the brace that closes the object opening at ``start`` (JSON strings respected)."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None
