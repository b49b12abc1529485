"""OpenAI strict mode's form of a JSON Schema, and the way back for the answers it produces. Pure.

    strict = strict_schema(schema)          # None when the schema cannot be made strict unchanged
    value = drop_added_nulls(value, schema) # an answer to ``strict``, read against ``schema`` again

OpenAI structured outputs with ``"strict": true`` constrain decoding to the schema, so an answer always
parses and fits unless it runs out of tokens. Strict mode accepts only schemas in which every object
lists all of its properties in ``required`` and sets ``additionalProperties: false``. ``strict_schema``
rewrites a schema into that form: every object closed, every property required, and a property that was
optional made nullable instead (``anyOf: [..., {"type": "null"}]``), because strict mode has no "may be
absent". ``drop_added_nulls`` undoes that last step on an answer: ``null`` for a property that was
optional (and does not itself allow null) means "left out", so the key is removed before the original
schema or Pydantic model validates the value (and fills in its default).

A schema with open objects (``additionalProperties`` true or a schema, ``patternProperties``, an object
without ``properties``, e.g. a ``dict[str, int]`` field) cannot be closed without changing what it accepts: ``strict_schema`` then
returns None and the schema is sent with ``"strict": false``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["allows_null", "drop_added_nulls", "strict_schema"]

_OPEN_KEYWORDS = ("patternProperties", "unevaluatedProperties", "propertyNames")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "not")
_NULL = {"type": "null"}


class _NotStrict(Exception):
    """The schema needs an open object somewhere."""


def strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` in the form OpenAI strict mode requires, or None when it cannot be made strict."""
    try:
        return _closed(schema, schema)
    except _NotStrict:
        return None


def _closed(node: Any, root: dict[str, Any]) -> Any:
    """A copy of ``node`` with every object closed and every property required (recursively)."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node and len(node) > 1:  # strict mode rejects a $ref with siblings: inline it once
        rest = {key: value for key, value in node.items() if key != "$ref"}
        node = {**_resolve(node["$ref"], root), **rest}
    out = dict(node)
    if "default" in out and out["default"] is None:
        del out["default"]  # every property is required now; a null default says nothing
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _closed(sub, root) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_closed(sub, root) for sub in out[key]]
    for key in _SCHEMA_VALUES:
        if isinstance(out.get(key), dict):
            out[key] = _closed(out[key], root)
    if out.get("type") == "object" or "properties" in out:
        open_object = "properties" not in out or any(key in out for key in _OPEN_KEYWORDS)
        if open_object or out.get("additionalProperties", False) is not False:
            raise _NotStrict  # "any object" or a dict of named values: closing it would change it
        properties = out.get("properties") or {}
        required = set(out.get("required") or ())
        out["properties"] = {name: sub if name in required else _nullable(sub, root)
                             for name, sub in properties.items()}
        out["required"] = list(properties)
        out["additionalProperties"] = False
    return out


def _nullable(schema: Any, root: dict[str, Any]) -> Any:
    return schema if allows_null(schema, root) else {"anyOf": [schema, _NULL]}


def _resolve(ref: Any, root: dict[str, Any]) -> dict[str, Any]:
    """The schema a local ``#/...`` reference points to ({} for anything else: it then accepts all)."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _deref(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        return {**_resolve(schema["$ref"], root), **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def allows_null(schema: Any, root: dict[str, Any], _depth: int = 0) -> bool:
    """Whether ``schema`` accepts ``null`` (by type, const, enum, or one of its anyOf/oneOf branches)."""
    if schema is True or schema == {}:
        return True
    node = _deref(schema, root)
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if "const" in node and node["const"] is None:
        return True
    if isinstance(node.get("enum"), list) and None in node["enum"]:
        return True
    if _depth > 20:  # a recursive schema: stop looking
        return False
    return any(allows_null(sub, root, _depth + 1) for key in ("anyOf", "oneOf")
               for sub in node.get(key) or () if isinstance(node.get(key), list))


def drop_added_nulls(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """``value`` without the nulls strict mode made the model write for properties it could leave out."""
    root = schema if root is None else root
    node = _deref(schema, root)
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [drop_added_nulls(item, node["items"], root) for item in value]
    if not isinstance(value, dict):
        return value
    properties = node.get("properties")
    if not isinstance(properties, dict):
        branch = _object_branch(node, root)
        return value if branch is None else drop_added_nulls(value, branch, root)
    required = set(node.get("required") or ())
    out = {}
    for key, item in value.items():
        sub = properties.get(key)
        if sub is not None and item is None and key not in required and not allows_null(sub, root):
            continue
        out[key] = item if sub is None else drop_added_nulls(item, sub, root)
    return out


def _object_branch(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    """The first anyOf/oneOf/allOf branch that describes an object (``Optional[Model]``), if any."""
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key) or ():
            branch = _deref(sub, root)
            if isinstance(branch.get("properties"), dict):
                return branch
    return None
