"""Structured answers, the pure part: ``schema=`` normalised, answers extracted, judged, and re-asked.

- ``schema``: ``as_schema`` turns a Pydantic model or a JSON Schema dict into a ``Schema`` that
  validates answers into precise errors (``SchemaMismatch``).
- ``strict``: the OpenAI strict-mode form of a schema, and the way back for its answers.
- ``extract``: the JSON value in an answer (fenced, amid prose), without repairing anything.
- ``verdict``: ``judge`` an answer; the messages of a re-ask and of prompt instructions.

The loop that sends, judges and re-asks is ``nbllm._call`` (it needs the network); this package does
no I/O.
"""

from .extract import NotJSON, extract_json
from .schema import Schema, SchemaMismatch, as_schema
from .strict import drop_added_nulls, strict_schema
from .verdict import (
    TRUNCATED,
    Verdict,
    correction,
    judge,
    reask_messages,
    with_instructions,
)

__all__ = [
    "TRUNCATED",
    "NotJSON",
    "Schema",
    "SchemaMismatch",
    "Verdict",
    "as_schema",
    "correction",
    "drop_added_nulls",
    "extract_json",
    "judge",
    "reask_messages",
    "strict_schema",
    "with_instructions",
]
