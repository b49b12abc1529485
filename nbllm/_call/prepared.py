"""``PreparedCall``: a call ready to send — its spec, its fingerprint in the store, and its schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._client import CallSpec
from .._structured import Schema
from .._types import Response

__all__ = ["PreparedCall"]


@dataclass(frozen=True)
class PreparedCall:
    """A call ready to send: the spec, and its fingerprint in the store (None when nothing is stored).

    With ``schema=``: ``schema`` validates the answer, ``max_reasks`` bounds the re-asks, and ``previous``
    is an answer already read from the store, judged before anything is sent (a batch reads its cache
    hits in one go and passes on those that no longer fit).
    """

    spec: CallSpec
    fingerprint: str | None = None
    schema: Schema | None = None
    max_reasks: int = 2
    previous: Response | None = None

    def stored_request(self) -> dict[str, Any]:
        """What the store records about the request (never a key)."""
        spec = self.spec
        params = spec.extra | {"temperature": spec.temperature, "max_tokens": spec.max_tokens}
        if spec.output is not None:  # for the record only: the fingerprint never includes the schema
            params["response_schema"] = spec.output.name if spec.output.native else f"{spec.output.name} (in prompt)"
        return {"model": spec.model, "messages": spec.messages, "params": params}
