"""``nbllm demo``: the async-API seed (10 calls serial vs concurrent) and a streamed answer.

Runs on the embedded simulator when no key is configured, on your provider otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time

from ._api import LLM

__all__ = ["main"]

PROMPT = "Hello, how are you?"
SONG = "Write me a 1 verse song about sparkling water."


def _generate_serially(llm: LLM, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        llm.generate([PROMPT])
    return time.perf_counter() - start


async def _generate_concurrently(llm: LLM, n: int) -> float:
    async def async_generate() -> None:
        await llm.agenerate([PROMPT])

    start = time.perf_counter()
    await asyncio.gather(*(async_generate() for _ in range(n)))
    return time.perf_counter() - start


def _table(n: int, serial: float, concurrent: float) -> str:
    rows = [("mode", f"{n} calls", "per call", "speedup"),
            ("serial (generate)", f"{serial:.2f} s", f"{serial / n:.2f} s", "1.0x"),
            ("concurrent (agenerate)", f"{concurrent:.2f} s", f"{concurrent / n:.2f} s", f"{serial / concurrent:.1f}x")]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(n: int = 10, model: str | None = None) -> float:
    """Print the serial/concurrent table and stream a song; return the speedup."""
    llm = LLM(model, temperature=0.9, store=False)
    print(f"nbllm demo — model {llm.runner.model!r}, {n} calls of {PROMPT!r}\n")
    llm.invoke(PROMPT)  # warm up: connection and simulator start-up are not what we measure
    concurrent = asyncio.run(_generate_concurrently(llm, n))
    serial = _generate_serially(llm, n)
    print(_table(n, serial, concurrent))
    print(f"\nConcurrent executed in {concurrent:0.2f} seconds; serial in {serial:0.2f} seconds "
          f"(speedup {serial / concurrent:.1f}x — network-bound calls overlap).\n")
    print(f"Streaming {SONG!r}:\n")
    for chunk in llm.stream(SONG):
        print(chunk, end="|", flush=True)
    print("\n", file=sys.stdout)
    return serial / concurrent
