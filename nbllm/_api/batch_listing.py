"""What was submitted to the providers' batch APIs, from the store's job record; and cancelling it.

    nbllm.provider_batches()                     # provider, id, status, counts, created: a table
    nbllm.provider_batches()[-1].cancel()        # the same as nbllm.cancel_provider_batch("batch_…")
    nbllm.provider_batches().forget("batch_…")   # stop re-attaching to it; a rerun sends its prompts again

Statuses and counts are those of the last poll (``refresh()`` asks the provider again). A batch is
asked about with the key that created it: the record names its alias, so the LLM (or, by default, the
keys from the environment) must hold a key of that alias. Interrupting ``amap(mode="batch")`` never
cancels a provider batch; only ``cancel`` does, and the answers it finished stay collectable.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .. import _engine
from .._batchapi import BatchState, batch_api_for, connect
from .._call import default_route, shared_store
from .._exceptions import ConfigurationError
from .._format import format_count
from .._store import PartRecord, Store

if TYPE_CHECKING:
    from .llm import LLM

__all__ = ["ProviderBatchInfo", "ProviderBatchList", "cancel_provider_batch", "provider_batches"]

_COLUMNS = ("provider", "id", "status", "validating", "in progress", "completed", "failed", "requests",
            "created", "key", "model")


@dataclass(frozen=True)
class ProviderBatchInfo:
    """One provider batch as recorded: where it went, with which key alias, and how it stood last."""

    provider: str
    id: str | None
    status: str
    counts: dict[str, int]
    created: datetime
    requests: int
    key_alias: str
    model: str | None
    job: str
    open: bool
    store: Store = field(repr=False, compare=False)

    def cancel(self, llm: LLM | None = None) -> ProviderBatchInfo:
        """Cancel the batch at the provider (see ``cancel_provider_batch``)."""
        return cancel_provider_batch(self._batch_id(), llm=llm, store=self.store)

    def refresh(self, llm: LLM | None = None) -> ProviderBatchInfo:
        """Ask the provider how the batch stands now."""
        return _run_on(self._batch_id(), "retrieve", llm, self.store)

    def forget(self) -> None:
        """Stop waiting for this batch: a rerun of its call sends its prompts again (it is not cancelled)."""
        record = self.store.provider_jobs.find(self._batch_id())
        if record is not None:
            self.store.provider_jobs.forget(record.id)

    def _batch_id(self) -> str:
        if self.id is None:
            raise ConfigurationError("This batch was recorded but never created at the provider; nothing to do.")
        return self.id

    def cells(self) -> list[str]:
        c = self.counts
        values = [c.get(k, 0) for k in ("validating", "in_progress", "completed", "failed")]
        return [self.provider, self.id or "(not created)", self.status, *map(format_count, values),
                format_count(self.requests), self.created.strftime("%Y-%m-%d %H:%M:%S"), self.key_alias, self.model or ""]


def _info(record: PartRecord, store: Store) -> ProviderBatchInfo:
    return ProviderBatchInfo(
        provider=record.wire_format, id=record.batch_id, status=record.status, counts=dict(record.counts),
        created=datetime.fromtimestamp(record.created_at), requests=record.requests, key_alias=record.key_alias,
        model=record.model, job=record.job, open=record.open, store=store,
    )


class ProviderBatchList(list):
    """``provider_batches()``: a list of ``ProviderBatchInfo`` that prints (and renders) as a table."""

    def get(self, batch_id: str) -> ProviderBatchInfo:
        for info in self:
            if info.id == batch_id:
                return info
        raise ConfigurationError(f"No provider batch {batch_id!r} in the job record.")

    def forget(self, batch_id: str) -> None:
        self.get(batch_id).forget()

    def __repr__(self) -> str:
        if not self:
            return "No provider batches recorded."
        rows = [list(_COLUMNS)] + [info.cells() for info in self]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in info.cells()) + "</tr>"
                       for info in self)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _store_of(store: Store | None, llm: LLM | None) -> Store:
    if store is not None:
        return store
    chosen = llm.store if llm is not None else shared_store()
    if chosen is None:
        raise ConfigurationError("This LLM has store=False, so it keeps no job record of provider batches.")
    return chosen


def provider_batches(*, llm: LLM | None = None, store: Store | None = None, open_only: bool = False) -> ProviderBatchList:
    """Every provider batch in the job record (of ``store``, ``llm``'s store, or the shared one), oldest first."""
    chosen = _store_of(store, llm)
    records = chosen.provider_jobs.parts()
    return ProviderBatchList(_info(r, chosen) for r in records if r.open or not open_only)


def cancel_provider_batch(batch_id: str, *, llm: LLM | None = None, store: Store | None = None) -> ProviderBatchInfo:
    """Cancel a provider batch, with the key (alias) that created it, from ``llm``'s keys or the default ones.

    The lines it finished keep their answers: a rerun of its call collects them, and its other items
    fail as cancelled (they are not sent again).
    """
    return _run_on(batch_id, "cancel", llm, _store_of(store, llm))


def _run_on(batch_id: str, action: str, llm: LLM | None, store: Store) -> ProviderBatchInfo:
    record = store.provider_jobs.find(batch_id)
    if record is None:
        raise ConfigurationError(f"No provider batch {batch_id!r} in the job record of {store.path}.")
    pool = llm.pool if llm is not None else default_route().pool  # type: ignore[union-attr]
    key = next((k for k in pool.keys if k.alias == record.key_alias), None)
    if key is None:
        raise ConfigurationError(f"Provider batch {batch_id} was created with the key '{record.key_alias}', which "
                                 "these keys do not include: pass llm= with that key (under the same alias).")
    api = batch_api_for(connect(record.wire_format, record.base_url, key, key.auth_header))
    state: BatchState = _engine.run_sync(getattr(api, action)(batch_id, requests=record.requests))
    store.provider_jobs.seen(record.id, state.status, state.counts.as_dict())
    return _info(store.provider_jobs.get(record.id) or record, store)
