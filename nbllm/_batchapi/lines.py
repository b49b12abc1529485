"""Batch request lines from call specs, and jobs split by the providers' limits. Pure: no I/O.

```python
request = batch_request(OpenAIProvider(), spec, custom_id=fingerprint)
parts = split_requests(requests, limits_for("openai"))        # one model per part, ≤ 50 000, ≤ 200 MB
payload(parts[0], "openai")   # the JSONL file to upload;  "anthropic": the {"requests": [...]} body
```

A line's body is what the provider's ``build_request`` makes for an online call (without streaming),
so whatever a ``CallSpec`` carries — parameters today, a response schema tomorrow — reaches the batch
line unchanged, and a batch answer equals the online answer to the same request.

**custom_id** is the item's store fingerprint (64 hex digits: within Anthropic's 64-character
``^[a-zA-Z0-9_-]`` pattern). It names the request, not its position: identical prompts of one call are
distinct samples with distinct fingerprints, and a rerun after a restart, whose list of prompts may
differ, maps every result line back to its items through the same fingerprints.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._client import CallSpec, Provider
from .._exceptions import ConfigurationError
from .options import BatchLimits

__all__ = ["BatchRequest", "batch_request", "payload", "split_requests"]

OPENAI_BATCH_URL = "/v1/chat/completions"
# what an Anthropic create body adds around its requests: {"requests":[ … ]}
_ANTHROPIC_ENVELOPE = len(b'{"requests":[]}')


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: its custom_id, model, and its line as the provider wants it (JSON bytes)."""

    custom_id: str
    model: str
    line: bytes


def batch_request(provider: Provider, spec: CallSpec, custom_id: str) -> BatchRequest:
    """The batch line for ``spec``: OpenAI ``{custom_id, method, url, body}``, Anthropic ``{custom_id, params}``."""
    body = provider.build_request(replace(spec, stream=False), None).body
    if provider.name == "anthropic":
        item = {"custom_id": custom_id, "params": body}
    else:
        item = {"custom_id": custom_id, "method": "POST", "url": OPENAI_BATCH_URL, "body": body}
    line = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return BatchRequest(custom_id, spec.model, line)


def split_requests(requests: Sequence[BatchRequest], limits: BatchLimits) -> list[list[BatchRequest]]:
    """``requests`` in parts that each fit ``limits``; input order kept within a model.

    Greedy: a part is closed when the next request would pass the request count or the byte size
    (each line counts its separator). With ``one_model`` every part holds one model only.
    """
    groups: dict[str, list[BatchRequest]] = {}
    for request in requests:
        groups.setdefault(request.model if limits.one_model else "", []).append(request)
    parts: list[list[BatchRequest]] = []
    for group in groups.values():
        current: list[BatchRequest] = []
        size = _ANTHROPIC_ENVELOPE
        for request in group:
            cost = len(request.line) + 1
            if cost + _ANTHROPIC_ENVELOPE > limits.max_bytes:
                raise ConfigurationError(
                    f"One request is {cost:,} bytes, more than a batch may hold ({limits.max_bytes:,}); "
                    "send it with mode='online'."
                )
            if current and (len(current) >= limits.max_requests or size + cost > limits.max_bytes):
                parts.append(current)
                current, size = [], _ANTHROPIC_ENVELOPE
            current.append(request)
            size += cost
        if current:
            parts.append(current)
    return parts


def payload(part: Sequence[BatchRequest], wire_format: str) -> bytes:
    """What is sent for one part: the JSONL file (OpenAI) or the create body (Anthropic)."""
    if wire_format == "anthropic":
        return b'{"requests":[' + b",".join(r.line for r in part) + b"]}"
    return b"".join(r.line + b"\n" for r in part)
