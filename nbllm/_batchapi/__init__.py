"""Provider batch APIs: the same prompts at half the price, answered within 24 hours, resumable.

- ``options``: per-batch limits of each provider, the poll schedule, the batch price factor (pure).
- ``lines``: batch lines from ``CallSpec``s through the provider's ``build_request``; splitting (pure).
- ``results``: result lines → ``Response`` or the error an online call would raise (pure).
- ``status``: both providers' batch objects → status, ended, four counts (pure).
- ``http``: ``Connection`` (and ``connect``) — management calls on nbllm's transport, with its retry rules.
- ``openai`` / ``anthropic``: the two APIs (files + batches; message batches).
- ``part``: one provider batch being waited for (create once, poll, collect).
- ``job``: ``ProviderBatchJob`` — one round: re-attach, record, create, poll, collect into the store.

The job record lives in the store (``nbllm._store``, ``store.provider_jobs``); ``LLM.amap(...,
mode="batch")`` (``nbllm._api``) runs the rounds, retries what failed and answers from the store.
"""

from .http import Connection, connect
from .job import BatchItem, ProviderBatchJob
from .lines import BatchRequest, batch_request, payload, split_requests
from .options import BatchAPIOptions, BatchLimits, PollSchedule, batch_cost, limits_for
from .part import batch_api_for
from .results import LineOutcome, read_line, unanswered
from .status import BatchState, Counts, read_status, sum_counts

__all__ = [
    "BatchAPIOptions",
    "BatchItem",
    "BatchLimits",
    "BatchRequest",
    "BatchState",
    "Connection",
    "Counts",
    "LineOutcome",
    "PollSchedule",
    "ProviderBatchJob",
    "batch_api_for",
    "batch_cost",
    "batch_request",
    "connect",
    "limits_for",
    "payload",
    "read_line",
    "read_status",
    "split_requests",
    "sum_counts",
    "unanswered",
]
