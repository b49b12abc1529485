"""Seed 000's table: "Hello, how are you?" serial vs concurrent, against the default-latency simulator.

LangChain's async page measured 10 calls: 1.39 s concurrent vs 5.77 s serial (4.2×). Here nbllm runs
the page's code (``llm.generate([p])`` in a loop vs ``asyncio.gather(*(llm.agenerate([p]) ...))``)
against ``nbllm.sim`` with its default settings (0.25 s ± 20 % to the first token, 60 tokens/s) in
another process; LangChain's ``ChatOpenAI`` runs the same code against the same server as the baseline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._common import Headline, Section, SimProcess, Table

PROMPT = "Hello, how are you?"
TARGET_10 = 9.0


def _nbllm(url: str, n: int) -> dict[str, float]:
    import nbllm

    llm = nbllm.LLM("gpt-4o-mini", base_url=url, api_key="sk-bench-concurrency", store=False, temperature=0.9)
    llm.generate([PROMPT])  # warm-up: engine thread, connection

    async def concurrent() -> list[Any]:
        return await asyncio.gather(*(llm.agenerate([PROMPT]) for _ in range(n)))

    start = time.perf_counter()
    results = asyncio.run(concurrent())
    concurrent_s = time.perf_counter() - start
    assert all(r.generations[0][0].text for r in results)
    start = time.perf_counter()
    for _ in range(n):
        assert llm.generate([PROMPT]).generations[0][0].text
    serial_s = time.perf_counter() - start
    return {"serial": serial_s, "concurrent": concurrent_s}


def _langchain(url: str, n: int) -> dict[str, float] | None:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_openai import ChatOpenAI
    except ImportError:
        return None
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=url, api_key="sk-bench-concurrency", temperature=0.9)
    llm.generate([[HumanMessage(PROMPT)]])  # warm-up

    async def concurrent() -> list[Any]:
        return await asyncio.gather(*(llm.agenerate([[HumanMessage(PROMPT)]]) for _ in range(n)))

    start = time.perf_counter()
    asyncio.run(concurrent())
    concurrent_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n):
        llm.generate([[HumanMessage(PROMPT)]])
    serial_s = time.perf_counter() - start
    return {"serial": serial_s, "concurrent": concurrent_s}


def run(quick: bool = False) -> Section:
    from nbllm.sim import SimConfig

    started = time.perf_counter()
    sizes = [10] if quick else [10, 100]
    rows: list[dict[str, Any]] = []
    with SimProcess(SimConfig()) as sim:
        url = sim.base_url + "/v1"
        for n in sizes:
            nb = _nbllm(url, n)
            rows.append({"system": "nbllm", "n": n, **nb})
            print(f"  concurrency nbllm n={n}: serial {nb['serial']:.2f}s concurrent {nb['concurrent']:.2f}s", flush=True)
            if n == 10:
                lc = _langchain(url, n)
                if lc:
                    rows.append({"system": "LangChain ChatOpenAI", "n": n, **lc})
                    print(f"  concurrency LangChain n={n}: serial {lc['serial']:.2f}s concurrent {lc['concurrent']:.2f}s",
                          flush=True)
    table = Table(["system", "prompts", "serial (s)", "concurrent (s)", "speed-up"], [],
                  "Default simulator (0.25 s ± 20 % to the first token, 60 tokens/s; the answers are ~10 tokens):")
    table.rows.append(["LangChain OpenAI (seed 000, the real API, 2023)", 10, 5.77, 1.39, f"{5.77 / 1.39:.1f}×"])
    for r in rows:
        table.rows.append([r["system"], r["n"], f"{r['serial']:.2f}", f"{r['concurrent']:.2f}",
                           f"{r['serial'] / r['concurrent']:.1f}×"])
    headlines = []
    for r in rows:
        if r["system"] == "nbllm":
            met = r["serial"] / r["concurrent"] >= TARGET_10 if r["n"] == 10 else None
            target = f" (target ≥ {TARGET_10:g}×)" if r["n"] == 10 else " (ideal: ≈ n×)"
            headlines.append(Headline(f"nbllm {r['n']} prompts: concurrent is {r['serial'] / r['concurrent']:.1f}× faster "
                                      f"than serial{target}", met))
    lc = next((r for r in rows if r["system"].startswith("LangChain")), None)
    nb10 = next((r for r in rows if r["system"] == "nbllm" and r["n"] == 10), None)
    if lc and nb10:
        headlines.append(Headline(f"LangChain ChatOpenAI on the same server, 10 prompts: {lc['serial'] / lc['concurrent']:.1f}×; "
                                  f"nbllm concurrent {lc['concurrent'] / nb10['concurrent']:.2f}× LangChain's speed", None))
    notes = ["Serial: `llm.generate([p])` in a loop; concurrent: `asyncio.gather(*(llm.agenerate([p]) for _ in range(n)))`, "
             "as on the seed's page. The row from the seed is its own measurement against the real API, for reference."]
    return Section("concurrency", "5. Seed 000: serial vs concurrent", "", headlines, [table], notes, {"rows": rows},
                   time.perf_counter() - started)


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv).markdown())
