"""A deterministic instance of a JSON Schema: what a model constrained to that schema would answer. Pure.

Example::

    schema = {"type": "object", "properties": {"expression": {"type": "string"},
              "result": {"type": "integer"}}, "required": ["expression", "result"]}
    instance(schema, Hints(expression="3 + 4", value=7), seed=1)
    # -> {"expression": "3 + 4", "result": 7}

Covers what OpenAI strict mode, Anthropic tool schemas and Pydantic emit: objects with
required fields, string / integer / number / boolean / null, arrays, ``enum``, ``const``,
nullable type lists, ``anyOf`` / ``oneOf`` / ``allOf``, ``$defs`` with local ``$ref``,
numeric bounds and ``multipleOf``, string lengths and common ``format`` values.
``pattern`` is not honoured (no regex inversion). Field names pick plausible values
(see `_names`), and arithmetic fields get the expression and its value from `Hints`.
"""

from __future__ import annotations

import math
import random
from typing import Any

from ._names import Hints, named_value

__all__ = ["Hints", "instance", "resolve_ref"]

_SOFT_DEPTH = 5
"""Below this depth optional fields, optional branches and extra array items are skipped,
so recursive schemas (a tree node that holds nodes) end."""
_HARD_DEPTH = 40
"""A schema that recurses through required fields only cannot end; give up with null here."""


_NO_HINTS = Hints()


def instance(schema: Any, hints: Hints = _NO_HINTS, seed: int = 0) -> Any:
    """Return a value that validates against ``schema``, the same for the same inputs."""
    return _Generator(schema, hints, seed).value(schema, "", 0, "$")


def resolve_ref(root: Any, ref: str) -> Any:
    """Follow a local JSON pointer ``#/$defs/Name`` inside ``root``; {} when it leads nowhere."""
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


class _Generator:
    """Walks one schema; ``rng`` is reseeded per field path so values do not shift when fields are added.

    ``name`` (the field's own key) decides what a value means; ``path`` (``$.steps[1].output``)
    seeds it, so array items and repeated sub-objects differ.
    """

    def __init__(self, root: Any, hints: Hints, seed: int) -> None:
        self.root = root
        self.hints = hints
        self.seed = seed

    def rng(self, path: str) -> random.Random:
        """Return a generator fixed by the seed and the field path."""
        return random.Random(f"{self.seed}\x1f{path}")

    def value(self, schema: Any, name: str, depth: int, path: str) -> Any:
        """Return an instance of ``schema`` for a field called ``name`` at ``path``."""
        if schema is True:
            schema = {}
        if not isinstance(schema, dict) or depth > _HARD_DEPTH:
            return None
        schema = self.flatten(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng(path).choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.value(self.branch(schema[key], depth), name, depth + 1, path)
        kind = self.kind(schema, name, depth)
        if kind == "object":
            return self.object(schema, depth, path)
        if kind == "array":
            return self.array(schema, name, depth, path)
        return self.scalar(kind, schema, name, path)

    def flatten(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Inline ``$ref`` (keeping sibling keywords) and merge ``allOf`` parts into one schema."""
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < 32:
            target = resolve_ref(self.root, schema["$ref"])
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**(target if isinstance(target, dict) else {}), **siblings}
            seen += 1
        parts = schema.get("allOf")
        if not isinstance(parts, list):
            return schema
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            part = self.flatten(part) if isinstance(part, dict) else {}
            properties = {**merged.get("properties", {}), **part.get("properties", {})}
            required = [*merged.get("required", []), *part.get("required", [])]
            merged = {**merged, **part, "properties": properties, "required": list(dict.fromkeys(required))}
        return merged

    def branch(self, options: list[Any], depth: int) -> Any:
        """Pick the first non-null branch; deep down prefer null (or a branch that is not an object)."""
        def is_null(option: Any) -> bool:
            return isinstance(option, dict) and option.get("type") == "null"

        if depth >= _SOFT_DEPTH:
            for option in options:
                if is_null(option):
                    return option
        for option in options:
            if not is_null(option):
                return option
        return options[0]

    def kind(self, schema: dict[str, Any], name: str, depth: int) -> str:
        """Return the JSON type to produce: the declared one (first non-null of a list) or a guess."""
        declared = schema.get("type")
        if isinstance(declared, list):
            types = [t for t in declared if t != "null"]
            if not types or "null" in declared and depth >= _SOFT_DEPTH:
                return "null"
            return types[0]
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "any"

    def object(self, schema: dict[str, Any], depth: int, path: str) -> dict[str, Any]:
        """Fill every required field, and the optional ones while not too deep."""
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        out: dict[str, Any] = {}
        for key, sub in properties.items():
            if key in required or depth < _SOFT_DEPTH:
                out[key] = self.value(sub, key, depth + 1, f"{path}.{key}")
        for key in required:
            if key not in out:  # required but not described: guess from its name
                out[key] = self.value({}, key, depth + 1, f"{path}.{key}")
        return out

    def array(self, schema: dict[str, Any], name: str, depth: int, path: str) -> list[Any]:
        """Return 1-3 items (within minItems/maxItems), distinct when ``uniqueItems`` asks for it."""
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items = schema.get("items", {})
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        wanted = low if depth >= _SOFT_DEPTH else max(low, min(high, 1 + self.rng(path).randrange(3)))
        if items is False:
            wanted = min(wanted, len(prefix))
        wanted = max(wanted, min(len(prefix), high))
        out: list[Any] = []
        for i in range(wanted):
            sub = prefix[i] if i < len(prefix) else items
            item = self.value(sub, name, depth + 1, f"{path}[{i}]")
            for retry in range(1, 8):  # a few other draws when the first repeats an item
                if not schema.get("uniqueItems") or item not in out:
                    break
                item = self.value(sub, name, depth + 1, f"{path}[{i}]~{retry}")
            out.append(item)
        return out

    def scalar(self, kind: str, schema: dict[str, Any], name: str, path: str) -> Any:
        """Return a string, number, integer, boolean or null for ``name``."""
        rng = self.rng(path)
        if kind == "null":
            return None
        if kind == "boolean":
            return rng.random() < 0.5
        guess = named_value(name, kind, self.hints, rng, schema.get("format"))
        if kind in ("integer", "number"):
            return _bounded(guess, schema, kind == "integer", rng)
        if kind == "string":
            return _sized(str(guess), schema, rng)
        return guess  # "any": whatever the name suggests


def _bounds(schema: dict[str, Any], integer: bool) -> tuple[float, float]:
    """Return the inclusive range a number may take, from minimum/maximum and their exclusive forms."""
    low, high = -math.inf, math.inf
    if isinstance(schema.get("minimum"), (int, float)):
        low = schema["minimum"]
    if isinstance(schema.get("maximum"), (int, float)):
        high = schema["maximum"]
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 1e-6
    if ex_low is True:  # draft 4 spelling: a flag on minimum
        low += step
    elif isinstance(ex_low, (int, float)) and not isinstance(ex_low, bool):
        low = max(low, (math.floor(ex_low) + 1) if integer else ex_low + step)
    if ex_high is True:
        high -= step
    elif isinstance(ex_high, (int, float)) and not isinstance(ex_high, bool):
        high = min(high, (math.ceil(ex_high) - 1) if integer else ex_high - step)
    if integer:
        low, high = math.ceil(low) if low > -math.inf else low, math.floor(high) if high < math.inf else high
    return low, high


def _bounded(guess: Any, schema: dict[str, Any], integer: bool, rng: random.Random) -> int | float:
    """Clamp a guessed number into the schema's range and onto its ``multipleOf`` grid."""
    value = guess if isinstance(guess, (int, float)) and not isinstance(guess, bool) else rng.randint(1, 100)
    if isinstance(value, float):
        value = round(value, 6)  # as a model writes it; clamping below may add precision back
    low, high = _bounds(schema, integer)
    if not low <= value <= high and math.isfinite(low) and math.isfinite(high) and low <= high:
        value = rng.randint(int(low), int(high)) if integer else rng.uniform(low, high)  # not the bare edge
    value = min(max(value, low), high)
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        count = round(value / step)
        if count * step < low:
            count += 1
        if count * step > high:
            count -= 1
        value = count * step
        if float(step).is_integer():
            value = int(round(value))
    return int(value) if integer else value


def _sized(text: str, schema: dict[str, Any], rng: random.Random) -> str:
    """Pad or cut ``text`` to the schema's minLength/maxLength."""
    low = int(schema.get("minLength", 0))
    high = schema.get("maxLength")
    while len(text) < low:
        text += (" " if text else "") + rng.choice(("note", "item", "detail", "value", "entry"))
    if isinstance(high, int) and len(text) > high:
        text = text[:high].rstrip() if len(text[:high].rstrip()) >= low else text[:high]
    return text
