"""The results table's shape, and the pure conversions between rows and nbllm's data.

``row_values`` turns one recorded attempt into the values of one row (every text from outside through
``redact()``), ``response_from_row`` reads a cached ``Response`` back, ``request_fingerprint`` is the cache
key. No I/O: ``Store`` (``store.py``) does the reading and writing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any, Mapping

from .._secrets import redact
from .._types import Response, Usage

__all__ = ["COLUMNS", "HEDGES_COLUMN", "INSERT", "RESPONSE_COLUMNS", "SCHEMA", "RequestFingerprints", "canonical_json",
           "request_fingerprint", "response_from_row", "row_dict", "row_values", "unstored_row_values"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    batch TEXT,
    item_index INTEGER,
    created_at REAL NOT NULL,
    provider TEXT,
    base_url TEXT,
    model TEXT,
    request_json TEXT,
    ok INTEGER NOT NULL,
    text TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency REAL,
    ttft REAL,
    key_alias TEXT,
    error_type TEXT,
    error_message TEXT,
    hedges INTEGER
);
-- cache lookups: newest ok row of a fingerprint is the last entry of (fingerprint, ok) in this index
CREATE INDEX IF NOT EXISTS results_fingerprint ON results (fingerprint, ok, id);
CREATE INDEX IF NOT EXISTS results_batch ON results (batch, item_index);
"""

COLUMNS = (
    "id", "fingerprint", "batch", "item_index", "created_at", "provider", "base_url", "model",
    "request_json", "ok", "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency",
    "ttft", "key_alias", "error_type", "error_message", "hedges",
)
# requests raced beside the answer on other keys (hedging); added in schema 3, so last
HEDGES_COLUMN = "ALTER TABLE results ADD COLUMN hedges INTEGER"
INSERT = f"INSERT INTO results ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * (len(COLUMNS) - 1))})"
RESPONSE_COLUMNS = (
    "id, fingerprint, text, model, provider, finish_reason, prompt_tokens, completion_tokens, "
    "latency, ttft, key_alias"
)


# One encoder for every call: ``json.dumps`` with options builds a new JSONEncoder each time (~2 µs of the
# ~8 µs a fingerprint costs). The output is exactly ``json.dumps`` with the same options (fingerprints of
# existing stores must not change). ``encode`` keeps no state between calls, so threads may share it.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def request_fingerprint(request: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a request dict.

    The dict is ``{"provider", "base_url", "model", "messages", "params", "sample"}``; ``sample`` tells
    apart identical prompts inside one batch. It must never contain a key.
    """
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


class RequestFingerprints:
    """``request_fingerprint`` of requests that differ only in ``messages`` and ``sample`` (one batch's
    prompts): the same digests, with the part they share encoded and hashed once.

    The canonical JSON sorts keys, so every request reads
    ``{"base_url":…,"messages":…,"model":…,"params":…,"provider":…,"sample":…}``: a fixed head, the
    messages, a fixed middle, the sample. ``tests/test_store.py`` checks the digests against
    ``request_fingerprint`` on generated requests.
    """

    __slots__ = ("_head", "_middle")

    def __init__(self, provider: str, base_url: str, model: str, params: Mapping[str, Any]) -> None:
        encode = _CANONICAL.encode
        self._head = hashlib.sha256(f'{{"base_url":{encode(base_url)},"messages":'.encode())
        self._middle = f',"model":{encode(model)},"params":{encode(params)},"provider":{encode(provider)},"sample":'

    def __call__(self, messages: Any, sample: int) -> str:
        digest = self._head.copy()
        digest.update(f"{_CANONICAL.encode(messages)}{self._middle}{_CANONICAL.encode(sample)}}}".encode())
        return digest.hexdigest()


def _clean(text: Any) -> str | None:
    """Text from outside on its way to disk: stringified and scrubbed of anything key-shaped."""
    return None if text is None else redact(str(text))


def _answer_values(answer: Response | None) -> tuple[Any, ...]:
    """text, finish_reason, prompt_tokens, completion_tokens, latency, ttft (all None for a failure)."""
    if answer is None:
        return (None,) * 6
    return (
        _clean(answer.text), answer.finish_reason, answer.usage.prompt_tokens,
        answer.usage.completion_tokens, answer.latency, answer.time_to_first_token,
    )


def row_values(
    fingerprint: str, request: Mapping[str, Any], response: Response | None,
    error: BaseException | None, batch: str | None, index: int | None, created_at: float,
) -> tuple[Any, ...]:
    """The values of one results row, in ``COLUMNS[1:]`` order."""
    answer = response if error is None else None
    request_json = canonical_json({"messages": request.get("messages"), "params": request.get("params")})
    alias = answer.key_alias if answer is not None else getattr(error, "key_alias", None)
    return (
        fingerprint, batch, index, created_at,
        _clean(request.get("provider") or (answer.provider if answer else None)),
        _clean(request.get("base_url")),
        _clean(request.get("model") or (answer.model if answer else None)),
        redact(request_json),
        int(answer is not None),
        *_answer_values(answer),
        _clean(alias),
        type(error).__name__ if error is not None else None,
        _clean(error),
        answer.hedges if answer is not None else None,
    )


def response_from_row(row: tuple[Any, ...]) -> Response:
    """A cached Response from a tuple in ``RESPONSE_COLUMNS`` order.

    Plain tuples, not ``sqlite3.Row``: lookups by column name dominated ``lookup_many`` at 100 000 rows.
    """
    _, _, text, model, provider, finish, prompt, completion, latency, ttft, alias = row
    return Response(
        text=text or "",
        usage=Usage(prompt or 0, completion or 0),
        model=model or "",
        finish_reason=finish,
        latency=latency or 0.0,
        time_to_first_token=ttft,
        key_alias=alias,
        provider=provider or "",
        cached=True,
    )


def row_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(zip(row.keys(), row))
    out["ok"] = bool(out["ok"])
    return out


def unstored_row_values(fingerprint: str, batch: str | None, index: int | None, created_at: float,
                        reason: str) -> tuple[Any, ...]:
    """The row written in place of an answer that could not be written: ``ok=0`` and why."""
    return (fingerprint, batch, index, created_at, *(None,) * 4, 0, *(None,) * 7, "StoreWriteError",
            f"the answer could not be stored: {reason}", None)
