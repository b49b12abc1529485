"""One round of a provider-batch job: re-attach, record, create, poll, collect — on the engine loop.

```python
job = ProviderBatchJob(target, store, job_id="3f9c…", endpoint="default", options=BatchAPIOptions())
outcomes = await job.run(items, on_outcome=finish)   # {fingerprint: LineOutcome} for these items
```

In order: (1) open batches of the job record that hold any of these prompts are re-attached, each
polled with the key alias that created it; (2) the other prompts become new parts (split by the
providers' limits), recorded with their fingerprints *before* anything is sent; (3) each new part is
created at the provider and its id recorded; (4) every part is polled on the backoff schedule until
it ends; (5) an ended part's results are written to the results table (all of them, also those of
prompts this call does not hold), and only then is the part marked collected. Interrupting the wait
cancels nothing at the provider: a rerun finds the open parts in the record and goes on waiting.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._client import CallSpec, Target
from .._exceptions import ConfigurationError, NbllmError, NoKeyAvailableError
from .._keys import ApiKey
from .._store import PartPlan, Store
from .http import connect
from .lines import BatchRequest, batch_request, split_requests
from .options import BatchAPIOptions
from .part import LivePart, batch_api_for
from .results import LineOutcome
from .status import Counts, sum_counts

__all__ = ["BatchItem", "ProviderBatchJob"]


@dataclass(frozen=True)
class BatchItem:
    """One prompt of the call: its position, store fingerprint (= custom_id), spec, and stored request."""

    index: int
    fingerprint: str
    spec: CallSpec
    request: dict[str, Any]


def _stderr(message: str) -> None:
    print(f"nbllm: {message}", file=sys.stderr)


class ProviderBatchJob:
    """Runs rounds of one job (see module docstring). ``on_counts(counts, waiting)`` gets the provider's
    counts after every poll, and how many requests ended batches still hold uncollected; ``say``
    reports what happened at the provider (stderr by default)."""

    def __init__(self, target: Target, store: Store, *, job_id: str, endpoint: str, options: BatchAPIOptions,
                 on_counts: Callable[[Counts, int], None] | None = None, say: Callable[[str], None] = _stderr) -> None:
        self.target, self.store, self.jobs = target, store, store.provider_jobs
        self.job_id, self.endpoint, self.options = job_id, endpoint, options
        self.on_counts, self.say = on_counts, say
        self._warned: set[str] = set()

    async def run(self, items: Sequence[BatchItem],
                  on_outcome: Callable[[BatchItem, LineOutcome], None] | None = None) -> dict[str, LineOutcome]:
        """Get every item answered or failed by provider batches; ``on_outcome`` as each part is collected."""
        by_fp = {item.fingerprint: item for item in items}
        parts = await self._attach(by_fp)
        held = {fp for part in parts for fp in part.fingerprints}
        parts += await self._plan([item for item in items if item.fingerprint not in held])
        for part in parts:
            if part.batch_id is None:
                await self._create(part)
        await self._wait(parts, by_fp, on_outcome)
        return {fp: outcome for part in parts for fp, outcome in part.outcomes.items() if fp in by_fp}

    # ---- (1) re-attach ------------------------------------------------------------------------------
    async def _attach(self, by_fp: dict[str, BatchItem]) -> list[LivePart]:
        parts: list[LivePart] = []
        for part_id, held in (await asyncio.to_thread(self.jobs.open_parts_with, by_fp)).items():
            record = self.jobs.get(part_id)
            assert record is not None
            conn = self._connection(record.key_alias, record.batch_id)
            part = LivePart(record, batch_api_for(conn), self.jobs.fingerprints(part_id))
            if record.batch_id is None and not await self._adopt(part):
                continue  # never created: its prompts are planned afresh below
            parts.append(part)
            self.say(f"re-attached to provider batch {record.batch_id or part.batch_id} ({len(held):,} of these "
                     f"prompts, key '{record.key_alias}'); nothing is sent again.")
        return parts

    async def _adopt(self, part: LivePart) -> bool:
        """A part recorded but with no batch id: find the batch its lost create made, or give it up."""
        found = await part.find(self.jobs)
        if found is None:
            self.jobs.gone(part.record.id)
            return False
        self.jobs.submitted(part.record.id, found, status="validating")
        part.record = self.jobs.get(part.record.id) or part.record
        return True

    def _connection(self, alias: str, batch_id: str | None = None) -> Any:
        target = self.target
        key = next((k for k in target.pool.keys if k.alias == alias), None)
        if key is None:
            aliases = ", ".join(repr(k.alias) for k in target.pool.keys) or "none"
            raise ConfigurationError(
                f"Provider batch {batch_id or '(being created)'} holds some of these prompts and was created with "
                f"the key '{alias}', which these keys do not include ({aliases}). Add that key under the same "
                "alias to re-attach to it, or let it go: nbllm.provider_batches().forget(...) — its prompts are "
                "then sent again."
            )
        return connect(target.wire_format, key.base_url or target.base_url, key,
                       key.auth_header or target.auth_header, target.timeouts, target.retry)

    # ---- (2) plan and record, (3) create ------------------------------------------------------------
    async def _plan(self, fresh: list[BatchItem]) -> list[LivePart]:
        if not fresh:
            return []
        key = self._key_for(fresh[0].spec.model)
        conn = self._connection(key.alias)
        limits = self.options.limits(self.target.wire_format)

        def build() -> list[list[BatchRequest]]:  # JSON for up to 100 000 lines: off the engine loop
            return split_requests([batch_request(conn.provider, item.spec, item.fingerprint) for item in fresh], limits)

        chunks = await asyncio.to_thread(build)
        plans = [PartPlan(self.target.wire_format, conn.provider.base_url, self.endpoint, chunk[0].model, key.alias,
                          [r.custom_id for r in chunk]) for chunk in chunks]
        records = await asyncio.to_thread(self.jobs.plan, self.job_id, plans)
        api = batch_api_for(conn)
        return [LivePart(record, api, list(plan.fingerprints), chunk)
                for record, plan, chunk in zip(records, plans, chunks)]

    def _key_for(self, model: str) -> ApiKey:
        """The key that creates new batches: the first live key serving the model (batch limits are an
        organisation's, so spreading one job over keys gains nothing)."""
        pool = self.target.pool
        for key in pool.keys:
            if key.serves(self.target.wire_format, model) and not pool.key_state(key.alias).disabled:
                return key
        raise NoKeyAvailableError(f"No live key serves {model!r} to create a provider batch with; "
                                  "see pool.status() and add a key.")

    async def _create(self, part: LivePart) -> None:
        try:
            await part.create(self.jobs)
        except NbllmError as error:  # the provider refused the batch: its items fail with that error
            self.jobs.forget(part.record.id)
            part.outcomes = {fp: LineOutcome(fp, "failed", error=error) for fp in part.fingerprints}
            part.done = True
            return
        self.say(f"submitted provider batch {part.batch_id} ({part.record.requests:,} requests, key "
                 f"'{part.record.key_alias}'); interrupting the wait does not cancel it.")

    # ---- (4) poll, (5) collect ----------------------------------------------------------------------
    async def _wait(self, parts: list[LivePart], by_fp: dict[str, BatchItem],
                    on_outcome: Callable[[BatchItem, LineOutcome], None] | None) -> None:
        schedule, polls = self.options.poll, 0
        while True:
            for part in parts:
                if not part.done:
                    await self._step(part, by_fp, on_outcome)
            if self.on_counts is not None:
                waiting = sum(part.counts.processed for part in parts if not part.done)
                self.on_counts(sum_counts(part.counts for part in parts), waiting)
            if all(part.done for part in parts):
                return
            await schedule.sleep(schedule.delay(polls))
            polls += 1

    async def _step(self, part: LivePart, by_fp: dict[str, BatchItem],
                    on_outcome: Callable[[BatchItem, LineOutcome], None] | None) -> None:
        try:
            await part.poll(self.jobs)
            if not part.done and part.state is not None and part.state.ended:
                part.outcomes = await part.collect()
                await self._record(part, by_fp)
                self.jobs.collected(part.record.id)
                part.done = True
        except NbllmError as error:
            if not error.retryable:
                raise
            self._warn_once(part.batch_id or "", f"asking about provider batch {part.batch_id} failed ({error}); "
                                                 "asking again at the next poll.")
            return
        if part.gone:
            self.say(f"the server no longer knows provider batch {part.batch_id} (a restarted simulator, or a "
                     f"deleted batch); its {part.record.requests:,} prompts are sent again.")
        if part.done and on_outcome is not None:
            for fp, outcome in part.outcomes.items():
                if fp in by_fp:
                    on_outcome(by_fp[fp], outcome)

    async def _record(self, part: LivePart, by_fp: dict[str, BatchItem]) -> None:
        """Write every outcome to the results table and wait until it is committed."""
        for fp, outcome in part.outcomes.items():
            item = by_fp.get(fp)
            request = item.request if item is not None else {"model": part.record.model}
            where = {"batch": self.job_id, "index": item.index} if item is not None else {"batch": part.record.job}
            request = {**request, "provider": self.target.wire_format, "base_url": part.record.base_url}
            if outcome.response is not None:
                self.store.record(fp, request, outcome.response, **where)
            else:
                self.store.record(fp, request, error=outcome.error, **where)
        await asyncio.to_thread(self.store.flush)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.say(message)
