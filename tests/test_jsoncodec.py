"""The provider JSON reader: with or without orjson, it accepts and refuses exactly what ``json`` does."""

from __future__ import annotations

import json

import pytest

from nbllm._client import jsoncodec

DOCUMENTS = [
    b'{"choices":[{"message":{"content":"147"}}],"usage":{"prompt_tokens":25}}',
    '{"text":"caf\u00e9 \u2014 \U0001f600"}',
    b'{"a":1,"a":2}',           # duplicate keys: the last wins
    b"-0.0",
    b"NaN",                     # json accepts, orjson refuses
    b"1e400",                   # inf in json, refused by orjson
    b'"\\ud800"',               # a lone surrogate
    b"\xef\xbb\xbf{}",          # a UTF-8 byte-order mark
    '{"x": 1}'.encode("utf-16"),  # not UTF-8: json detects the encoding
    b"",
    b"{",
    b"not json",
    b'{"a": 1} trailing',
]


def _outcome(function, document):
    try:
        return ("ok", repr(function(document)))
    except ValueError:
        return ("ValueError", None)


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("with_orjson", [True, False])
def test_loads_is_json_loads(document, with_orjson, monkeypatch):
    if not with_orjson:
        monkeypatch.setattr(jsoncodec, "_orjson", None)
    elif jsoncodec._orjson is None:
        pytest.skip("orjson is not installed")
    assert _outcome(jsoncodec.loads, document) == _outcome(json.loads, document)
