"""Reading a provider's JSON when any value may have any shape: each field as the type it must be, or
``MalformedAnswer``.

A server can send valid JSON of the wrong shape (``data: 5``, ``"choices": "abc"``, a number where text
belongs, usage as a string). Providers read every field through these helpers, so such an answer
becomes one clear error the client treats as a broken stream (retried like one), never a raw
``TypeError`` or ``AttributeError`` from deep inside the parser:

```python
chunk = expect_object(json.loads(data), "an event")
for choice in optional_list(chunk.get("choices"), "choices"):
    content = optional_text(optional_object(choice.get("delta"), "delta").get("content"), "delta.content")
```

Messages name the field and the kind of value, never the value itself (it may hold anything).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MalformedAnswer", "expect_object", "optional_list", "optional_object", "optional_text", "token_count"]

# Token counts above this are not counts; it also keeps every count inside a SQLite INTEGER (2**63 - 1).
MAX_TOKEN_COUNT = 2**53


class MalformedAnswer(ValueError):
    """A field of a provider's answer has the wrong type: the answer cannot be trusted as a whole."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _wrong(where: str, value: Any, wanted: str) -> MalformedAnswer:
    return MalformedAnswer(f"{where} is {_kind(value)}, not {wanted}")


def expect_object(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object."""
    if isinstance(value, Mapping):
        return value
    raise _wrong(where, value, "an object")


def optional_object(value: Any, where: str) -> Mapping[str, Any]:
    """A JSON object, or an empty one for null/missing."""
    return {} if value is None else expect_object(value, where)


def optional_list(value: Any, where: str) -> list[Any]:
    """A JSON array, or an empty one for null/missing."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise _wrong(where, value, "an array")


def optional_text(value: Any, where: str) -> str | None:
    """A string, or None for null/missing."""
    if value is None or isinstance(value, str):
        return value
    raise _wrong(where, value, "a string")


def token_count(value: Any, where: str) -> int:
    """A token count: a whole number from 0 to 2**53 (``3.0`` is accepted); null/missing is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(where, value, "a count")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise MalformedAnswer(f"{where} is not a whole number")
    if not 0 <= value <= MAX_TOKEN_COUNT:
        raise MalformedAnswer(f"{where} is out of range for a token count")
    return int(value)
