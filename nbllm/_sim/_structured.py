"""What shape a request asks its answer to take: OpenAI ``response_format``, Anthropic forced tools. Pure.

Example::

    openai_shape({"type": "json_schema", "json_schema": {"name": "Math", "schema": {...}, "strict": True}},
                 messages, support="honour")
    # -> Shape(mode="json_schema", schema={...}, strict=True, name="Math")

``support`` is `SimConfig.response_format`: "honour" validates like OpenAI (strict schemas
must close every object; ``json_object`` needs the word "json" in the messages), "ignore"
answers as if the parameter were absent, "reject" answers 400 as servers without
structured outputs do. Anthropic tools are not affected by it: ``tool_choice`` of type
``tool`` (or ``any``) forces a ``tool_use`` answer; ``auto``/``none``/absent keeps text.
Anthropic's ``output_config.format`` (native JSON outputs) is honoured as a strict schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from ._arith import json_template
from ._badrequest import BadRequest
from ._tokens import content_text

__all__ = ["Shape", "anthropic_shape", "openai_shape", "schema_in_text", "strict_problem", "template_schema"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_SCHEMA_KEYS = ("properties", "$defs", "$schema", "definitions")


@dataclass(frozen=True)
class Shape:
    """The form an answer must take.

    ``mode`` "json_schema" and "json_object" answer JSON as text; "tool" answers a
    ``tool_use`` block named ``name`` whose input follows ``schema``.
    """

    mode: Literal["json_schema", "json_object", "tool"]
    schema: Any = None
    strict: bool = False
    name: str = ""


def openai_shape(response_format: Any, messages: Sequence[Any], support: str = "honour") -> Shape | None:
    """Validate ``response_format`` and return the shape it asks for (None for text or when ignored)."""
    if response_format is None:
        return None
    if support == "reject":
        raise BadRequest(
            "Unsupported parameter: 'response_format' is not supported by this server (no structured outputs).",
            "response_format",
            "unsupported_parameter",
        )
    if support == "ignore":
        return None
    if not isinstance(response_format, dict):
        raise BadRequest("Invalid type for 'response_format': expected an object.", "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        if not any("json" in content_text(m.get("content")).lower() for m in messages if isinstance(m, dict)):
            raise BadRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                "messages",
            )
        return Shape("json_object")
    if kind != "json_schema":
        raise BadRequest(
            f"Invalid value: {json.dumps(kind)}. Supported values are: 'text', 'json_object', and 'json_schema'.",
            "response_format.type",
            "invalid_value",
        )
    return _json_schema_shape(response_format.get("json_schema"))


def _json_schema_shape(spec: Any) -> Shape:
    """Validate the ``json_schema`` member of a response_format."""
    if not isinstance(spec, dict):
        raise BadRequest("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(
            "Invalid 'response_format.json_schema.name': must be 1-64 letters, digits, underscores or dashes.",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        message = "Invalid type for 'response_format.json_schema.schema': expected an object."
        raise BadRequest(message, "response_format")
    strict = spec.get("strict") is True
    if strict:
        problem = strict_problem(schema)
        if problem:
            raise BadRequest(f"Invalid schema for response_format '{name}': {problem}", "response_format")
    return Shape("json_schema", schema, strict, name)


def strict_problem(schema: dict[str, Any]) -> str | None:
    """Return why OpenAI strict mode would refuse ``schema`` (every object closed and fully required), or None."""
    if schema.get("type") != "object":
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: {json.dumps(schema.get('type'))}'."
    for path, node in _subschemas(schema, ()):
        if node.get("type") != "object" and "properties" not in node:
            continue
        context = f"In context={path!r}, "
        if node.get("additionalProperties") is not False:
            return context + "'additionalProperties' is required to be supplied and to be false."
        properties = node.get("properties") or {}
        required = node.get("required") or []
        missing = [key for key in properties if key not in required]
        if missing:
            return (
                context + "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
    return None


def _subschemas(node: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Return every schema object inside ``node`` with its path (properties, items, anyOf, $defs...)."""
    if not isinstance(node, dict):
        return []
    found = [(path, node)]
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items() if isinstance(node.get(key), dict) else ():
            found += _subschemas(sub, (*path, key, name))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or []) if isinstance(node.get(key), list) else ():
            found += _subschemas(sub, (*path, key, str(i)))
    if isinstance(node.get("items"), dict):
        found += _subschemas(node["items"], (*path, "items"))
    return found


def anthropic_shape(tools: Any, tool_choice: Any, output_config: Any = None) -> Shape | None:
    """Validate ``tools`` / ``tool_choice`` (and ``output_config.format``); return a forced shape or None."""
    declared = _anthropic_tools(tools)
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise BadRequest("output_config.format.schema: Field required", "output_config")
        return Shape("json_schema", fmt["schema"], True, "output")
    if tool_choice is None:
        return None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") not in ("auto", "any", "tool", "none"):
        raise BadRequest(
            "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        )
    kind = tool_choice["type"]
    if kind in ("auto", "none"):
        return None
    if not declared:
        raise BadRequest(f"tool_choice: tool_choice of type '{kind}' requires tools to be provided")
    if kind == "any":
        name = next(iter(declared))  # with several tools the model would pick one; the first, deterministically
    else:
        name = tool_choice.get("name")
        if name not in declared:
            raise BadRequest(f"tool_choice.name: Tool '{name}' not found in provided tools")
    tool = declared[name]
    return Shape("tool", tool["input_schema"], tool.get("strict") is True, name)


def _anthropic_tools(tools: Any) -> dict[str, dict[str, Any]]:
    """Return the custom tools by name, raising like Anthropic on malformed entries."""
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise BadRequest("tools: Input should be a valid list")
    declared: dict[str, dict[str, Any]] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not _TOOL_NAME.match(tool["name"]):
            raise BadRequest(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, ...): the simulator never calls it
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise BadRequest(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if tool["name"] in declared:
            raise BadRequest("tools: Tool names must be unique.")
        declared[tool["name"]] = tool
    return declared


def schema_in_text(text: str) -> dict[str, Any] | None:
    """Return the JSON Schema a prompt quotes (as clients do for servers without structured outputs), if any."""
    template = json_template(text)
    if template is None or not any(key in template for key in ('"type"', *_SCHEMA_KEYS)):
        return None
    try:
        found = json.loads(template)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    if any(key in found for key in _SCHEMA_KEYS) or found.get("type") == "object":
        return found
    return None


def template_schema(text: str) -> dict[str, Any] | None:
    """Return a schema read off a JSON answer template in a prompt, e.g. ``{"name": "?", "age": ?}``."""
    template = json_template(text)
    if template is None:
        return None
    try:
        found = json.loads(re.sub(r'(:\s*)("\?"|\?)', r"\1null", template))
    except ValueError:
        return None
    return _inferred(found) if isinstance(found, dict) else None


def _inferred(example: Any) -> dict[str, Any]:
    """Return the schema an example value implies; a placeholder (null) leaves the type to the field name."""
    if isinstance(example, dict):
        properties = {key: _inferred(value) for key, value in example.items()}
        return {"type": "object", "properties": properties, "required": list(example)}
    if isinstance(example, list):
        return {"type": "array", "items": _inferred(example[0]) if example else {}}
    if example is None:
        return {}
    if isinstance(example, bool):
        return {"type": "boolean"}
    if isinstance(example, int):
        return {"type": "integer"}
    if isinstance(example, float):
        return {"type": "number"}
    return {"type": "string"}
