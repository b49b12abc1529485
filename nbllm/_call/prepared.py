"""``PreparedCall``: a call ready to send — its spec, its fingerprint in the store, and its schema;
``CallPreparer`` makes them from prompts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._client import CallSpec
from .._store import RequestFingerprints
from .._structured import Schema
from .._types import MessagesInput, Response, normalize_messages

__all__ = ["CallPreparer", "PreparedCall"]


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


class CallPreparer:
    """Makes the ``PreparedCall`` of a prompt from a checked spec without messages (``CallRunner.preparer``).

    ``preparer(prompt, sample)``: the messages are the prompt after the system prompt, the fingerprint (if
    ``fingerprints`` is given) covers them and ``sample``. Raises ``ConfigurationError`` for a prompt that
    could not be sent.
    """

    __slots__ = ("fingerprints", "max_reasks", "schema", "spec", "system")

    def __init__(self, spec: CallSpec, system: str | None, schema: Schema | None, max_reasks: int,
                 fingerprints: RequestFingerprints | None) -> None:
        self.spec, self.system, self.schema, self.max_reasks = spec, system, schema, max_reasks
        self.fingerprints = fingerprints

    def __call__(self, prompt: MessagesInput, sample: int = 0) -> PreparedCall:
        spec = dataclasses.replace(self.spec, messages=normalize_messages(prompt, self.system))
        fingerprint = None if self.fingerprints is None else self.fingerprints(spec.messages, sample)
        return PreparedCall(spec, fingerprint, self.schema, self.max_reasks)
