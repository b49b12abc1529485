"""One provider batch while nbllm waits for it: create it (once), poll it, collect its results.

A ``LivePart`` pairs a job-record row (``PartRecord``) with the API it lives on and the key alias that
created it. ``create`` never creates a batch twice: when the create call's answer is lost (a timeout, a
broken connection, a 5xx), the provider's batch list is searched for the batch it may have made (by
metadata tag on OpenAI, by size and time on Anthropic) before sending again. ``collect`` reads every
result line into a ``LineOutcome`` per custom_id; requests the batch ended without get one too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._client import backoff_delay
from .._exceptions import NbllmError, ProviderError
from .._store import PartRecord, ProviderJobs
from .anthropic import AnthropicBatches
from .http import Connection
from .lines import BatchRequest, payload
from .openai import OpenAIBatches
from .results import LineOutcome, read_line, unanswered
from .status import BatchState, Counts

__all__ = ["BatchAPI", "LivePart", "batch_api_for"]


class BatchAPI(Protocol):
    """What both providers' batch APIs offer (``OpenAIBatches``, ``AnthropicBatches``)."""

    conn: Connection

    async def create(self, body: bytes, *, requests: int, tag: Mapping[str, str]) -> tuple[str, str | None, BatchState]: ...
    async def retrieve(self, batch_id: str, *, requests: int) -> BatchState: ...
    async def cancel(self, batch_id: str, *, requests: int) -> BatchState: ...
    def results(self, batch_id: str, state: BatchState) -> AsyncIterator[dict[str, Any]]: ...
    async def find(self, tag: Mapping[str, str], *, since: float, requests: int,
                   known: Callable[[str], bool]) -> str | None: ...


def batch_api_for(conn: Connection) -> BatchAPI:
    """The batch API of the connection's wire format."""
    return AnthropicBatches(conn) if conn.wire_format == "anthropic" else OpenAIBatches(conn)


@dataclass
class LivePart:
    """A recorded provider batch being waited for (see module docstring)."""

    record: PartRecord
    api: BatchAPI
    fingerprints: list[str]
    requests: Sequence[BatchRequest] = ()
    state: BatchState | None = None
    polls: int = 0
    outcomes: dict[str, LineOutcome] = field(default_factory=dict)
    done: bool = False
    gone: bool = False  # the server answered 404: it does not know the batch (any more)

    @property
    def batch_id(self) -> str | None:
        return self.record.batch_id

    @property
    def tag(self) -> dict[str, str]:
        """Metadata that names this part at the provider (OpenAI keeps it on the batch)."""
        return {"nbllm_job": self.record.job, "nbllm_part": str(self.record.part)}

    @property
    def counts(self) -> Counts:
        if self.state is None:
            return Counts(validating=self.record.requests)
        return self.state.counts

    async def create(self, jobs: ProviderJobs) -> None:
        """Create the batch at the provider and record its id; the create is never sent twice blindly."""
        body = payload(self.requests, self.api.conn.wire_format)
        retry = self.api.conn.retry
        for attempt in range(retry.max_retries + 1):
            try:
                batch_id, file_id, self.state = await self.api.create(body, requests=len(self.requests), tag=self.tag)
                break
            except NbllmError as error:
                if not error.retryable or attempt == retry.max_retries:
                    raise
                found = await self.find(jobs)
                if found is not None:
                    batch_id, file_id = found, None
                    break
                await asyncio.sleep(backoff_delay(attempt, retry, getattr(error, "retry_after", None), random.random()) or 0)
        jobs.submitted(self.record.id, batch_id, status=self.state.status if self.state else "validating",
                       input_file_id=file_id)
        self.record = jobs.get(self.record.id) or self.record

    async def find(self, jobs: ProviderJobs) -> str | None:
        """The provider batch this part created even though its answer never arrived, if there is one."""
        return await self.api.find(self.tag, since=self.record.created_at, requests=self.record.requests,
                                   known=lambda batch_id: jobs.find(batch_id) is not None)

    async def poll(self, jobs: ProviderJobs) -> None:
        """Ask the provider how the batch is doing; a batch the server does not know is gone."""
        self.polls += 1
        try:
            self.state = await self.api.retrieve(self.batch_id or "", requests=self.record.requests)
        except ProviderError as error:
            if error.status != 404:
                raise
            jobs.gone(self.record.id)
            self.outcomes = {fp: unanswered(fp, "gone", self.batch_id) for fp in self.fingerprints}
            self.done = self.gone = True
            return
        jobs.seen(self.record.id, self.state.status, self.state.counts.as_dict())

    async def collect(self) -> dict[str, LineOutcome]:
        """Every request's outcome, read from the ended batch's result lines."""
        state, record = self.state, self.record
        assert state is not None and state.ended and record.batch_id is not None
        if state.status == "failed":  # OpenAI rejected the input as a whole; nothing ran
            return {fp: unanswered(fp, "failed", record.batch_id, state.problems) for fp in self.fingerprints}
        mine = set(self.fingerprints)
        latency = max(time.time() - record.created_at, 0.0)
        alias = self.api.conn.key.alias
        outcomes: dict[str, LineOutcome] = {}
        async for line in self.api.results(record.batch_id, state):
            outcome = read_line(self.api.conn.provider, line, key_alias=alias, batch_id=record.batch_id,
                                latency=latency)
            if outcome.custom_id in mine:
                outcomes[outcome.custom_id] = outcome
        fate = {"expired": "expired", "cancelled": "cancelled"}.get(state.status, "missing")
        for fp in self.fingerprints:
            if fp not in outcomes:
                outcomes[fp] = unanswered(fp, fate, record.batch_id)
        return outcomes
