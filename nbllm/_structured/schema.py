"""What a ``schema=`` argument becomes: one ``Schema`` that describes and validates answers. Pure.

    schema = as_schema(Result)                        # a Pydantic model class ...
    schema = as_schema({"type": "object", ...})       # ... or a JSON Schema dict
    schema.validate({"expression": "1 + 1", "result": 2})   # -> Result(...), or raises SchemaMismatch
    schema.errors                                     # (on SchemaMismatch) precise, one per problem

A Pydantic model is validated by Pydantic (its validators run too, so a validator that checks the
meaning of an answer makes a wrong answer re-asked); its JSON Schema comes from
``model_json_schema()``. nbllm never imports Pydantic itself: a model class can only exist once the
user imported it. A dict is checked as a JSON Schema and answers are validated with ``jsonschema``
(imported only here, so ``import nbllm`` does not need it: ``pip install 'nbllm[structured]'``).

The root must describe a JSON object, as OpenAI's structured outputs and Anthropic's tool inputs
require. Both kinds are cached, so a batch of 10 000 prompts normalises its schema once.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
from typing import Any

from .._exceptions import ConfigurationError
from .strict import drop_added_nulls, strict_schema

__all__ = ["Schema", "SchemaMismatch", "as_schema"]

_MAX_ERRORS = 10
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


class SchemaMismatch(ValueError):
    """An answer does not fit the schema; ``errors`` says where and why, one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class Schema:
    """A normalised ``schema=``: its name and JSON Schema for the provider, and how to validate answers.

    ``json_schema`` is the schema as given (or as Pydantic generates it); ``strict_schema`` its OpenAI
    strict form, None when it has none (see ``strict.py``); ``fields`` the top-level property names, the
    columns of ``Results.to_dataframe()``.
    """

    kind = "json"

    def __init__(self, source: Any, json_schema: dict[str, Any], name: str) -> None:
        if json_schema.get("type") != "object":
            raise ConfigurationError(
                "schema= must describe a JSON object (type: object). Wrap a list or a single value in one, "
                "e.g. class Answer(BaseModel): items: list[Item]."
            )
        self.source, self.json_schema, self.name = source, json_schema, name
        self.strict_schema = strict_schema(json_schema)
        self.fields: tuple[str, ...] = tuple(json_schema.get("properties") or ())

    def __repr__(self) -> str:
        return f"<Schema {self.name} ({self.kind}): {', '.join(self.fields)}>"

    def validate(self, value: Any) -> Any:
        """The parsed answer (a model instance, or the dict itself); raises ``SchemaMismatch``."""
        raise NotImplementedError

    def dump(self, parsed: Any) -> Any:
        """A parsed answer as JSON-ready data (to show it, or to store it)."""
        return parsed

    def row(self, parsed: Any) -> dict[str, Any]:
        """The top-level fields of a parsed answer, as Python values (one row of a DataFrame)."""
        return {name: parsed.get(name) for name in self.fields} if isinstance(parsed, dict) else {}

    def _relaxed(self, value: Any) -> Any:
        # nulls the strict form made the model write for optional properties mean "left out"
        return drop_added_nulls(value, self.json_schema) if self.strict_schema is not None else value


class _PydanticSchema(Schema):
    kind = "pydantic"

    def __init__(self, model: type) -> None:
        super().__init__(model, model.model_json_schema(), _clean_name(model.__name__))  # type: ignore[attr-defined]

    def validate(self, value: Any) -> Any:
        from pydantic import (
            ValidationError,  # already imported: the user's model is a Pydantic model
        )

        try:
            return self.source.model_validate(self._relaxed(value))
        except ValidationError as error:
            raise SchemaMismatch([_pydantic_line(e) for e in error.errors()[:_MAX_ERRORS]]) from None

    def dump(self, parsed: Any) -> Any:
        return parsed.model_dump(mode="json")

    def row(self, parsed: Any) -> dict[str, Any]:
        values = parsed.model_dump()
        return {name: values.get(name) for name in self.fields}


class _JsonSchema(Schema):
    def __init__(self, schema: dict[str, Any]) -> None:
        try:
            import jsonschema
        except ImportError:
            raise ConfigurationError(
                "A JSON Schema dict needs the jsonschema package: pip install 'nbllm[structured]' "
                "(or pass a Pydantic model class instead)."
            ) from None
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ConfigurationError(f"schema= is not a valid JSON Schema: {error.message}.") from None
        super().__init__(schema, schema, _clean_name(str(schema.get("title") or "answer")))
        self._validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(self, value: Any) -> Any:
        value = self._relaxed(value)
        problems = sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if problems:
            raise SchemaMismatch([_jsonschema_line(e) for e in problems[:_MAX_ERRORS]])
        return value


def as_schema(schema: Any) -> Schema:
    """Normalise a ``schema=`` value (Pydantic model class, JSON Schema dict, or a ``Schema``)."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        return _json_schema(schema)
    if _is_pydantic_model(schema):
        return _pydantic_schema(schema)
    hint = " (pass the class, not an instance)" if _is_pydantic_model(type(schema)) else ""
    raise ConfigurationError(
        f"schema= takes a Pydantic model class or a JSON Schema dict, got {type(schema).__name__}{hint}."
    )


@functools.lru_cache(maxsize=64)
def _pydantic_schema(model: type) -> Schema:
    return _PydanticSchema(model)


_JSON_SCHEMAS: dict[str, Schema] = {}


def _json_schema(schema: dict[str, Any]) -> Schema:
    # keyed by the canonical JSON, so a dict changed after a call is normalised afresh; built from a copy
    # in the order given (the order of the properties is the order of the table's columns)
    key = json.dumps(schema, sort_keys=True, default=str)
    found = _JSON_SCHEMAS.get(key)
    if found is None:
        if len(_JSON_SCHEMAS) >= 64:
            _JSON_SCHEMAS.clear()
        found = _JSON_SCHEMAS[key] = _JsonSchema(copy.deepcopy(schema))
    return found


def _is_pydantic_model(obj: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported here: a model means it already is
    return pydantic is not None and isinstance(obj, type) and issubclass(obj, pydantic.BaseModel)


def _clean_name(name: str) -> str:
    """A name both providers accept for a schema or tool: 1-64 letters, digits, ``_`` or ``-``."""
    return _NAME_CHARS.sub("_", name).strip("_")[:64] or "answer"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pydantic_line(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "(root)"
    line = f"{where}: {error.get('msg', 'invalid')}"
    if error.get("type") != "missing" and "input" in error and not isinstance(error["input"], dict):
        line += f" (got {_shown(error['input'])})"
    return line


def _jsonschema_line(error: Any) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"
