"""Throughput under rate limits: how close each client gets to what the keys allow, and what it loses.

Three keys with per-minute request limits (the simulator's buckets hold ``window_seconds`` worth, so a
burst beyond the limit gets real 429s), 0.2 s ± 50 % latency, seed-style arithmetic prompts. Scenarios:

a. limits known and told to the client        d. one key revoked, one out of quota
b. limits not told (learned from headers)     e. one slow key (5× latency)
c. limits not told and no headers             f. 5 % HTTP 500 + 3 % mid-stream disconnects (streaming)

Systems: nbllm (``llm.map``); the key-pool seed's approach (global ``AsyncLimiter``, round robin, tqdm over
``asyncio.gather``, official SDK with ``max_retries=2``: one exception loses the batch, as in the seed);
a careful official-SDK user (semaphore 64, round robin, ``gather(return_exceptions=True)``); LangChain
``abatch`` with one ``InMemoryRateLimiter`` per key. Baselines are always *told* the keys' limits (they
cannot learn them), so in b and c they have information nbllm does not get.

Theoretical minimum = items / (sum of live keys' rpm / 60) + mean latency.
"Fraction of theoretical" = theoretical / wall. A run that lost items did not do the job, however fast
it gave up: its fraction is shown in parentheses and it is left out of the "nbllm ÷ best baseline"
ratio, which compares nbllm with the best baseline that answered every item. The simulator's buckets
start full (``window_seconds`` of every live key), so a perfect client can beat the bound by that
burst; the burst-adjusted column subtracts it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from ._baselines import seed_clients, seed_tasks, with_progress
from ._common import Headline, Section, SimProcess, Table, arithmetic_prompts

MODEL = "gpt-4o-mini"
TTFT = 0.2
WINDOW = 2.0
CONCURRENCY = 64
RUN_TIMEOUT = 90.0  # a system that has not finished by then loses what is missing

# (key, alias, rpm) — the keys are placeholders the embedded simulator accepts, not real keys
KEYS = [
    ("sk-bench-aaaa-0000-0001", "a", 300),
    ("sk-bench-bbbb-0000-0002", "b", 600),
    ("sk-bench-cccc-0000-0003", "c", 1200),
]
SYSTEMS = ["nbllm", "seed (gather + AsyncLimiter)", "official SDK + semaphore", "LangChain abatch + InMemoryRateLimiter"]


@dataclass
class Scenario:
    code: str
    title: str
    short: str
    items: int
    quick_items: int
    told: bool = True  # the client gets the rpm of each key
    headers: bool = True  # the simulator sends x-ratelimit-* headers
    revoked: set[str] = field(default_factory=set)
    quota: dict[str, int] = field(default_factory=dict)  # alias -> quota_tokens
    slow: dict[str, float] = field(default_factory=dict)  # alias -> latency_scale
    error_500: float = 0.0
    disconnect: float = 0.0
    stream: bool = False

    def live(self) -> list[tuple[str, str, int]]:
        return [k for k in KEYS if k[1] not in self.revoked and k[1] not in self.quota]

    def rate(self) -> float:
        return sum(rpm for _, _, rpm in self.live()) / 60.0

    def mean_latency(self) -> float:
        live = self.live()
        total = sum(rpm for _, _, rpm in live)
        return TTFT * sum(rpm * self.slow.get(alias, 1.0) for _, alias, rpm in live) / total

    def theoretical(self, n: int) -> float:
        return n / self.rate() + self.mean_latency()

    def strict_theoretical(self, n: int) -> float:
        burst = self.rate() * WINDOW
        return max(0.0, n - burst) / self.rate() + self.mean_latency()

    def sim_config(self) -> Any:
        from nbllm.sim import Faults, KeyProfile, SimConfig

        keys = {
            key: KeyProfile(alias=alias, rpm=rpm, revoked=alias in self.revoked,
                            quota_tokens=self.quota.get(alias), latency_scale=self.slow.get(alias, 1.0))
            for key, alias, rpm in KEYS
        }
        return SimConfig(
            keys=keys, ttft=TTFT, ttft_jitter=0.5, tokens_per_second=0, window_seconds=WINDOW,
            expose_limit_headers=self.headers, faults=Faults(error_500=self.error_500, disconnect_mid_stream=self.disconnect),
            arithmetic_accuracy=(1, 0, 0), seed=7,
        )


SCENARIOS = [
    Scenario("a", "limits known (told to the client)", "limits known", 500, 150),
    Scenario("b", "limits not told, learned from headers", "learned from headers", 500, 150, told=False),
    Scenario("c", "limits not told, no headers", "unknown, no headers", 500, 150, told=False, headers=False),
    Scenario("d", "one key revoked, one out of quota", "revoked + out of quota", 300, 100, revoked={"a"},
             quota={"b": 400}),
    Scenario("e", "one slow key (c: 5× latency)", "one slow key", 500, 150, slow={"c": 5.0}),
    Scenario("f", "5 % HTTP 500 + 3 % disconnects, streaming", "500s + disconnects", 500, 150, error_500=0.05,
             disconnect=0.03, stream=True),
]


# ---- the systems ---------------------------------------------------------------------------------------
def run_nbllm(scenario: Scenario, base_url: str, prompts: list[str]) -> dict[str, Any]:
    import nbllm

    specs = [{"key": key, "alias": alias, "base_url": base_url, "rpm": rpm if scenario.told else None}
             for key, alias, rpm in KEYS]
    pool = nbllm.KeyPool(specs)
    with tempfile.TemporaryDirectory() as tmp:
        llm = nbllm.LLM(MODEL, pool=pool, concurrency=CONCURRENCY, store=os.path.join(tmp, "store.sqlite3"),
                        streaming=scenario.stream)
        start = time.perf_counter()
        if scenario.stream:
            # amap sends non-stream requests; streaming is the single-call path, so gather ainvoke
            async def main() -> list[Any]:
                return await asyncio.gather(*(llm.ainvoke(p) for p in prompts), return_exceptions=True)

            results = asyncio.run(main())
            ok = sum(1 for r in results if not isinstance(r, BaseException) and r.ok)
        else:
            results = llm.map(prompts, progress="none")
            ok = sum(1 for r in results if r.ok)
        wall = time.perf_counter() - start
        store = llm.store
        if store is not None:
            store.close()
    return {"wall": wall, "ok": ok, "note": "" if not scenario.stream else "ainvoke(streaming=True) × N, gathered"}


async def _openai_call(client: Any, prompt: str, stream: bool) -> str:
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        completion = await client.chat.completions.create(model=MODEL, messages=messages)
        return completion.choices[0].message.content
    parts = []
    response = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    async for chunk in response:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def run_seed(scenario: Scenario, base_url: str, prompts: list[str]) -> dict[str, Any]:
    """The key-pool seed (002): one AsyncLimiter(total_rate, 1), keys round robin, tqdm over gather."""
    from aiolimiter import AsyncLimiter
    from tqdm import tqdm

    total_rate = sum(rpm for _, _, rpm in KEYS) / 60.0  # the seed's user knows the nominal limits

    async def main() -> dict[str, Any]:
        clients = seed_clients([key for key, _, _ in KEYS], base_url)
        tasks = seed_tasks(prompts, clients, AsyncLimiter(total_rate, 1),
                           lambda client, text: _openai_call(client, text, scenario.stream))
        start = time.perf_counter()
        error = ""
        ok = 0
        try:
            with open(os.devnull, "w") as devnull, tqdm(total=len(tasks), file=devnull) as pbar:
                results = await asyncio.wait_for(asyncio.gather(*with_progress(tasks, pbar)), RUN_TIMEOUT)
            ok = len(results)
        except Exception as exc:  # noqa: BLE001 - the seed's batch dies with its first exception
            error = f"batch lost: {type(exc).__name__}"
        wall = time.perf_counter() - start
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.sleep(0)
        for client in clients:
            await client.close()
        return {"wall": wall, "ok": ok, "note": error}

    return asyncio.run(main())


def run_careful(scenario: Scenario, base_url: str, prompts: list[str]) -> dict[str, Any]:
    """One AsyncOpenAI per key (default retries), a Semaphore(64), round robin, gather(return_exceptions)."""
    import openai

    async def main() -> dict[str, Any]:
        clients = [openai.AsyncOpenAI(api_key=key, base_url=base_url) for key, _, _ in KEYS]
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int, prompt: str) -> str:
            async with semaphore:
                return await _openai_call(clients[i % len(clients)], prompt, scenario.stream)

        start = time.perf_counter()
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)), return_exceptions=True), RUN_TIMEOUT)
            note = ""
        except asyncio.TimeoutError:
            results, note = [], f"timed out after {RUN_TIMEOUT:.0f} s"
        wall = time.perf_counter() - start
        for client in clients:
            await client.close()
        failures = [r for r in results if isinstance(r, BaseException)]
        kinds = sorted({type(r).__name__ for r in failures})
        return {"wall": wall, "ok": len(results) - len(failures), "note": note or (", ".join(kinds) if kinds else "")}

    return asyncio.run(main())


def langchain_available() -> bool:
    try:
        import langchain_openai  # noqa: F401
        from langchain_core.rate_limiters import InMemoryRateLimiter  # noqa: F401
    except ImportError:
        return False
    return True


def run_langchain(scenario: Scenario, base_url: str, prompts: list[str]) -> dict[str, Any]:
    """ChatOpenAI per key, each with InMemoryRateLimiter(rpm/60); prompts split in proportion to rpm."""
    from langchain_core.rate_limiters import InMemoryRateLimiter
    from langchain_openai import ChatOpenAI

    async def main() -> dict[str, Any]:
        models = [
            ChatOpenAI(model=MODEL, api_key=key, base_url=base_url, streaming=scenario.stream,
                       rate_limiter=InMemoryRateLimiter(requests_per_second=rpm / 60.0, check_every_n_seconds=0.01))
            for key, _, rpm in KEYS
        ]
        # a weighted round robin: key k gets rpm_k / sum(rpm) of the prompts (the best split known limits allow)
        total = sum(rpm for _, _, rpm in KEYS)
        shares: list[list[str]] = [[] for _ in KEYS]
        credit = [0.0] * len(KEYS)
        for prompt in prompts:
            for k, (_, _, rpm) in enumerate(KEYS):
                credit[k] += rpm / total
            best = max(range(len(KEYS)), key=lambda k: credit[k])
            credit[best] -= 1.0
            shares[best].append(prompt)
        start = time.perf_counter()
        try:
            batches = await asyncio.wait_for(asyncio.gather(*(
                model.abatch(share, config={"max_concurrency": CONCURRENCY}, return_exceptions=True)
                for model, share in zip(models, shares) if share
            )), RUN_TIMEOUT)
            note = ""
        except asyncio.TimeoutError:
            batches, note = [], f"timed out after {RUN_TIMEOUT:.0f} s"
        wall = time.perf_counter() - start
        results = [r for batch in batches for r in batch]
        failures = [r for r in results if isinstance(r, BaseException)]
        kinds = sorted({type(r).__name__ for r in failures})
        return {"wall": wall, "ok": len(results) - len(failures), "note": note or (", ".join(kinds) if kinds else "")}

    return asyncio.run(main())


RUNNERS = {
    "nbllm": run_nbllm,
    "seed (gather + AsyncLimiter)": run_seed,
    "official SDK + semaphore": run_careful,
    "LangChain abatch + InMemoryRateLimiter": run_langchain,
}


def run_one(scenario: Scenario, system: str, n: int) -> dict[str, Any]:
    prompts, _ = arithmetic_prompts(n, seed=ord(scenario.code))
    with SimProcess(scenario.sim_config()) as sim:
        outcome = RUNNERS[system](scenario, sim.base_url + "/v1", prompts)
        stats = sim.stats()
    total = stats["total"]
    per_key = "/".join(str(stats.get(alias, {}).get("ok", 0)) for _, alias, _ in KEYS)
    lost = n - outcome["ok"]
    theoretical = scenario.theoretical(n)
    fraction = theoretical / outcome["wall"] if outcome["wall"] > 0 else 0.0
    strict = scenario.strict_theoretical(n) / outcome["wall"] if outcome["wall"] > 0 else 0.0
    return {
        "scenario": scenario.code, "system": system, "items": n, "wall": outcome["wall"], "ok": outcome["ok"],
        "lost": lost, "theoretical": theoretical, "fraction": fraction, "strict_fraction": strict,
        "rate_limited": total["rate_limited"], "requests": total["requests"], "quota": total["quota"],
        "unauthorized": total["unauthorized"], "server_errors": total["server_errors"],
        "disconnects": total["disconnects"], "per_key_ok": per_key, "note": outcome.get("note", ""),
    }


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    systems = [s for s in SYSTEMS if s != SYSTEMS[3] or langchain_available()]
    rows: list[dict[str, Any]] = []
    for scenario in SCENARIOS:
        n = scenario.quick_items if quick else scenario.items
        for system in systems:
            try:
                row = run_one(scenario, system, n)
            except Exception as exc:  # noqa: BLE001 - one broken baseline must not hide the others
                row = {"scenario": scenario.code, "system": system, "items": n, "wall": 0.0, "ok": 0, "lost": n,
                       "theoretical": scenario.theoretical(n), "fraction": 0.0, "strict_fraction": 0.0,
                       "rate_limited": 0, "requests": 0, "quota": 0, "unauthorized": 0, "server_errors": 0,
                       "disconnects": 0, "per_key_ok": "", "note": f"benchmark error: {type(exc).__name__}: {exc}"[:200]}
            rows.append(row)
            print(f"  throughput {scenario.code} {system:40s} wall {row['wall']:6.1f}s "
                  f"fraction {row['fraction']:.3f} lost {row['lost']} 429s {row['rate_limited']} {row['note']}",
                  flush=True)
    return _section(rows, systems, quick, time.perf_counter() - started)


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    if r["lost"]:
        return f"lost {r['lost']}/{r['items']} (stopped after {r['wall']:.1f} s)"
    return f"{r['fraction']:.3f}, lost 0"


def _section(rows: list[dict[str, Any]], systems: list[str], quick: bool, seconds: float) -> Section:
    by = {(r["scenario"], r["system"]): r for r in rows}
    summary = Table(
        ["scenario", "theoretical min (s)"] + [f"{s}" for s in systems] + ["nbllm ÷ best complete baseline"],
        [], "Fraction of theoretical throughput (theoretical / wall; higher is better) and items lost. A run that "
            "lost items did not do the job, however fast it gave up: it shows what it lost instead.",
    )
    headlines = []
    all_met = True
    for scenario in SCENARIOS:
        cells: list[Any] = [f"{scenario.code}. {scenario.title}"]
        first = by.get((scenario.code, systems[0]))
        cells.append(first["theoretical"] if first else "—")
        for system in systems:
            r = by.get((scenario.code, system))
            cells.append(_cell(r))
        nb = by.get((scenario.code, "nbllm"))
        complete = [by[(scenario.code, s)]["fraction"] for s in systems[1:]
                    if (scenario.code, s) in by and by[(scenario.code, s)]["lost"] == 0]
        if nb is None:
            cells.append("—")
        elif complete:
            cells.append(f"{nb['fraction'] / max(complete):.2f}×")
        else:
            cells.append("no baseline answered every item")
        summary.rows.append(cells)
        if nb:
            met = nb["fraction"] >= 0.95 and nb["lost"] == 0
            all_met &= met
    nb_rows = [by[(s.code, "nbllm")] for s in SCENARIOS if (s.code, "nbllm") in by]
    worst = min(nb_rows, key=lambda r: r["fraction"]) if nb_rows else None
    if worst is not None:
        headlines.append(Headline(
            f"nbllm ≥ 0.95 of theoretical throughput and 0 lost items in every scenario "
            f"(worst: scenario {worst['scenario']} at {worst['fraction']:.3f}; lost in total: "
            f"{sum(r['lost'] for r in nb_rows)})", all_met))
    for scenario in SCENARIOS:
        nb = by.get((scenario.code, "nbllm"))
        if nb is None:
            continue
        baselines = "; ".join(f"{s.split(' ')[0]} {_cell(by[(scenario.code, s)])}"
                              for s in systems[1:] if (scenario.code, s) in by)
        headlines.append(Headline(
            f"({scenario.code}) {scenario.title}: nbllm {nb['fraction']:.3f} of theoretical, lost {nb['lost']}; "
            f"baselines: {baselines}", nb["fraction"] >= 0.95 and nb["lost"] == 0))
    detail = Table(
        ["scenario", "system", "items", "wall (s)", "theoretical (s)", "fraction", "fraction (burst-adjusted)",
         "lost", "429s", "requests sent", "ok per key a/b/c", "note"],
        [[r["scenario"], r["system"], r["items"], r["wall"], r["theoretical"], r["fraction"], r["strict_fraction"],
          r["lost"], r["rate_limited"], r["requests"], r["per_key_ok"], r["note"]] for r in rows],
        "Every run (429s and requests as counted by the simulator; 'ok per key' = answers each key gave):",
    )
    keys = ", ".join(f"{alias} {rpm} rpm" for _, alias, rpm in KEYS)
    intro = (
        f"Keys: {keys}; simulator window {WINDOW:g} s (a burst beyond it gets 429s), latency {TTFT} s ± 50 %, "
        f"non-stream except f; concurrency {CONCURRENCY} where a system has a knob. "
        + ("QUICK mode: fewer items per scenario. " if quick else "")
        + "Baselines are told every key's limit in all scenarios; nbllm is told only in a, d, e, f."
    )
    notes = [
        "Theoretical minimum = items / (sum of live keys' rpm / 60) + mean latency; 'fraction' = theoretical / wall. "
        "The burst-adjusted column subtracts the simulator's initial bucket (window × rate), "
        "the true capacity of the server: a perfect client scores 1.0 there.",
        "Seed: one `AsyncLimiter(sum of rpm / 60, 1)`, keys round robin, official `openai.AsyncOpenAI(max_retries=2)` "
        "per key (the seed used `ChatOpenAI` per key), tqdm over `asyncio.gather` without `return_exceptions`: the "
        "first exception loses every item, as in the seed.",
        "Official SDK: one `AsyncOpenAI` per key with default retries (2), `asyncio.Semaphore(64)`, round robin, "
        "`gather(return_exceptions=True)`; an exception is one lost item.",
        "LangChain: one `ChatOpenAI` per key with `InMemoryRateLimiter(rpm/60, check_every_n_seconds=0.01)`, prompts split in proportion to "
        "the keys' rpm (better than round robin), `abatch(max_concurrency=64, return_exceptions=True)`.",
        "Scenario f: `llm.map` only sends non-stream requests, and the simulator's mid-stream disconnects only hit "
        "streams, so nbllm runs f as `asyncio.gather(*(llm.ainvoke(p) …))` with `streaming=True`.",
        "d: key a is revoked (401), key b runs out of quota after 400 tokens (429 insufficient_quota); only c "
        "counts as live in the theoretical minimum, so b's few answers are a small bonus.",
    ]
    f_nb = by.get(("f", "nbllm"))
    f_scenario = next((sc for sc in SCENARIOS if sc.code == "f"), None)
    if f_nb and f_scenario and f_nb["wall"] > 0:
        admitted = f_nb["requests"] - f_nb["rate_limited"]
        bound = admitted / f_scenario.rate() + f_scenario.mean_latency()
        notes.append(f"f: a request that fails with a 500 or a disconnect still used one request of its key's limit; "
                     f"nbllm needed {admitted} admitted requests for {f_nb['items']} items, which the keys serve in "
                     f"{bound:.1f} s at best: nbllm reached {bound / f_nb['wall']:.3f} of that.")
    data = {"rows": rows, "systems": systems, "scenarios": [s.code for s in SCENARIOS],
            "titles": {s.code: s.short for s in SCENARIOS}}
    return Section("throughput", "1. Throughput under rate limits", intro, headlines, [summary, detail], notes, data,
                   seconds)


if __name__ == "__main__":
    import sys

    section = run(quick="--quick" in sys.argv)
    print(section.markdown())
