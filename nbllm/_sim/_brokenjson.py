"""The "broken JSON" fault: which answers get it, which kind, and how each kind breaks an object. Pure.

Example::

    kind = json_fault(faults, kinds_for(shape), seed, conversation_hash, reask=False)
    broken = break_object({"expression": "3+4", "result": 7}, "wrong_type", schema)
    # -> {"expression": "3+4", "result": "seven"}

Kinds: ``truncated`` (cut mid-object, finish_reason "length" / stop_reason "max_tokens"),
``wrong_type`` (``"result": "twelve"``), ``missing_field`` (a required field left out) and
``single_quotes`` (prose around a Python-style dict: ``Sure! {'result': 7}``). Constrained
decoding rules some out: a strict schema can only be cut short, JSON mode and tools never
write prose. The roll hashes the whole conversation, so a re-ask (the answer plus a message
naming the error) rolls again, at `Faults.broken_json_on_reask`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._config import JSON_FAULT_KINDS, Faults
from ._hashing import unit
from ._structured import Shape

__all__ = [
    "KINDS",
    "break_object",
    "forced_kind",
    "json_fault",
    "kinds_for",
    "partial_object",
    "single_quoted",
]

KINDS = JSON_FAULT_KINDS

_DIRECTIVE = re.compile(r"\[\[sim:broken_json(?:_(truncated|wrong_type|missing_field|single_quotes))?(:once)?\]\]")
_PREFIXES = ("Sure! ", "Here is the JSON you asked for: ", "Of course. ")
_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def kinds_for(shape: Shape | None) -> tuple[str, ...]:
    """Return the kinds a model can produce under ``shape`` (None: JSON asked for in the prompt)."""
    if shape is None:
        return KINDS
    if shape.strict:
        return ("truncated",)  # constrained decoding: only running out of tokens breaks it
    return ("truncated", "wrong_type", "missing_field")


def forced_kind(text: str) -> tuple[str, bool] | None:
    """Return (kind or "", once) for a ``[[sim:broken_json]]`` / ``[[sim:broken_json_KIND:once]]`` directive."""
    if "[[sim:broken_json" not in text:
        return None
    match = _DIRECTIVE.search(text)
    if match is None:
        return None
    return match.group(1) or "", bool(match.group(2))


def json_fault(faults: Faults, allowed: tuple[str, ...], seed: int, conversation: int, reask: bool) -> str | None:
    """Roll whether this attempt's JSON breaks, and how; None when it stays intact.

    ``conversation`` hashes every message, so each re-ask gets its own roll; a
    conversation that already holds an assistant answer breaks at ``broken_json_on_reask``.
    """
    rate = faults.broken_json_on_reask if reask else faults.broken_json
    kinds = [k for k in faults.broken_json_kinds if k in allowed]
    if rate <= 0 or not kinds or unit(seed, conversation, 71) >= rate:
        return None
    return kinds[int(unit(seed, conversation, 72) * len(kinds))]


def pick_kind(allowed: tuple[str, ...], seed: int, conversation: int) -> str:
    """Pick a kind among ``allowed`` for a directive that names none."""
    return allowed[int(unit(seed, conversation, 73) * len(allowed))]


def _target(obj: dict[str, Any], schema: Any) -> str | None:
    """Return the field to damage: ``result`` when present, else the first required field, else the first."""
    if "result" in obj:
        return "result"
    required = schema.get("required", []) if isinstance(schema, dict) else []
    for key in required:
        if key in obj:
            return key
    return next(iter(obj), None)


def _words(value: int) -> str:
    """Spell a whole number as a model might (``12`` -> "twelve"); digits in a string past 99."""
    if value < 0:
        return "minus " + _words(-value)
    if value < 20:
        return _ONES[value]
    if value < 100:
        tens, ones = divmod(value, 10)
        return _TENS[tens] + ("-" + _ONES[ones] if ones else "")
    return str(value)


def _mistyped(value: Any) -> Any:
    """Return ``value`` as another JSON type: numbers in words, text as a number, and so on."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return _words(value)
    if isinstance(value, float):
        return f"about {value}"
    if isinstance(value, str):
        return len(value) or 1
    if value is None:
        return ["none"]
    return json.dumps(value, ensure_ascii=False)  # an object or array written as a string


def break_object(obj: Any, kind: str, schema: Any = None) -> Any:
    """Return ``obj`` damaged by ``wrong_type`` or ``missing_field`` so it no longer validates."""
    if not isinstance(obj, dict):
        return {"result": obj}  # the wrong shape altogether
    target = _target(obj, schema)
    if target is None:
        return []  # an empty object: a list is the wrong type for it
    if kind == "missing_field":
        return {k: v for k, v in obj.items() if k != target}
    return {**obj, target: _mistyped(obj[target])}


def single_quoted(obj: Any, h: int) -> str:
    """Return ``obj`` the way a chatty model writes it: prose, then a Python-style dict in single quotes."""
    return _PREFIXES[h % len(_PREFIXES)] + repr(obj)


def partial_object(text: str) -> dict[str, Any]:
    """Parse the longest prefix of a cut-off JSON object that closes cleanly; {} when none does.

    This is what a provider reports as a tool's input when the answer ran out of tokens.
    """
    closers: list[str] = []
    cuts: list[tuple[int, str]] = []
    in_string = escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif ch in "}]" and closers:
            closers.pop()
            cuts.append((i + 1, "".join(reversed(closers))))
        elif ch == ",":
            cuts.append((i, "".join(reversed(closers))))
    if not in_string:
        cuts.append((len(text), "".join(reversed(closers))))
    for position, closing in sorted(cuts, reverse=True):
        try:
            found = json.loads(text[:position] + closing)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return {}

