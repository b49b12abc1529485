"""The key-pool seed's client (002), shared by the benchmarks that compare against it.

    clients = seed_clients(keys, base_url)                  # one AsyncOpenAI per key, max_retries=2
    tasks = seed_tasks(prompts, clients, AsyncLimiter(rate, 1), send)   # keys round robin, one limiter
    with tqdm(total=len(tasks)) as pbar:
        results = await asyncio.gather(*with_progress(tasks, pbar))     # the first exception loses the batch

Every coroutine is made up front and gathered without ``return_exceptions``, as the seed does; ``send``
makes the request (stream or not), so each benchmark keeps its own way of reading the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

__all__ = ["SEED_MAX_RETRIES", "seed_clients", "seed_tasks", "with_progress"]

SEED_MAX_RETRIES = 2  # the official SDK's default, which the seed kept


def seed_clients(keys: Sequence[str], base_url: str) -> list[Any]:
    """One official ``AsyncOpenAI`` per key."""
    import openai

    return [openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=SEED_MAX_RETRIES) for key in keys]


def seed_tasks(prompts: Sequence[str], clients: Sequence[Any], limiter: Any,
               send: Callable[[Any, str], Awaitable[Any]]) -> list[Coroutine[Any, Any, Any]]:
    """The seed's ``call_llm`` coroutine per prompt: one shared limiter, keys round robin."""

    async def call_llm(client: Any, text: str) -> Any:
        async with limiter:
            return await send(client, text)

    return [call_llm(clients[i % len(clients)], text) for i, text in enumerate(prompts)]


def with_progress(tasks: Sequence[Coroutine[Any, Any, Any]], pbar: Any) -> list[Coroutine[Any, Any, Any]]:
    """The seed's ``_run_task_with_progress`` around each task: one tqdm update per finished task."""

    async def _run_task_with_progress(task: Coroutine[Any, Any, Any]) -> Any:
        result = await task
        pbar.update(1)
        return result

    return [_run_task_with_progress(task) for task in tasks]
