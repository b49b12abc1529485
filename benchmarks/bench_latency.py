"""LLM-like latency: nbllm beside an oracle client that knows every key's true limits and state.

    python -m benchmarks.bench_latency [--quick] [B,C]   # prints the section (optionally some scenarios)
    python -m benchmarks.run_all --only latency       # and writes it into RESULTS.md

Real LLM calls take seconds with a heavy tail, so a batch is bound by the keys' limits *and* by how many
requests are in flight. Each scenario runs, with the same prompts against a fresh simulator (same seed,
so each prompt meets the same latency in every run), the oracle (``_oracle.py``: unlimited concurrency,
a mirror of every key's buckets, no hedging) and nbllm with the settings a user gets by default, and
reports nbllm ÷ oracle speed. The simulator runs in its own process; each client runs in a fresh
interpreter. Scenarios and the pure arithmetic: ``_latency_model.py``; the report: ``_latency_report.py``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
from typing import Any

from ._common import Section, SimProcess, arithmetic_prompts, run_isolated
from ._latency_model import (MODEL, WINDOW_SECONDS, LatencyKey, LatencyScenario, Variant, achieved_rates,
                             ideal_wall, interleave)
from ._latency_report import latency_section

SAMPLE_EVERY = 0.1  # seconds between the simulator's counts of admitted requests (per-key rates)
HEDGE_TARGET = 1.05

_B_KEYS = (LatencyKey("fast", 16), LatencyKey("mid", 8), LatencyKey("slow", 4),
           LatencyKey("revoked", 8, dead="revoked"), LatencyKey("no-quota", 8, dead="quota"))
_TEN = (LatencyKey("k1", 10), LatencyKey("k2", 10), LatencyKey("k3", 10))

SCENARIOS = [
    LatencyScenario("A", "3 keys 10/5/5 rps, median 3 s, limits learned", (LatencyKey("a", 10), LatencyKey("b", 5),
                    LatencyKey("c", 5)), items=400, quick_items=200, median=3.0, told=False,
                    variants=(Variant("nbllm (defaults)"),
                              # hedging is on by default: the same client without it shows the scheduling alone
                              Variant("nbllm, hedge=False", amap={"hedge": False}))),
    LatencyScenario("B", "16/8/4 rps + revoked + out of quota, median 0.8 s, limits told", _B_KEYS, items=500,
                    quick_items=250, median=0.8, seed=12),
    LatencyScenario("C", "same keys as B, limits learned from headers", _B_KEYS, items=500, quick_items=250,
                    median=0.8, told=False, seed=12),
    LatencyScenario("D", "heavy tail: 3 % stalled 10 s, 3 % HTTP 500, median 1 s, limits told", _TEN, items=450,
                    quick_items=240, median=1.0, stall=0.03, stall_seconds=10.0, error_500=0.03, seed=13,
                    variants=(Variant("nbllm (defaults)", target=None),
                              Variant("nbllm, hedge=False", amap={"hedge": False}, target=None),
                              Variant("nbllm, hedge=True", amap={"hedge": True}, target=HEDGE_TARGET))),
    LatencyScenario("E", "4 processes share 3 keys × 10 rps through Redis, median 1 s, limits not told", _TEN,
                    items=600, quick_items=300, median=1.0, told=False, processes=4, seed=14),
]
SHARES_ORACLE = {"C": "B"}  # C differs from B only in what nbllm is told: the oracle (told all) runs once


def hedge_supported() -> bool:
    """True once ``LLM.amap`` takes ``hedge=`` as a parameter of its own (``**overrides`` go to the provider)."""
    import nbllm

    parameter = inspect.signature(nbllm.LLM.amap).parameters.get("hedge")
    return parameter is not None and parameter.kind is not inspect.Parameter.VAR_KEYWORD


# ---- clients (each in a fresh interpreter) ---------------------------------------------------------------
def nbllm_client(url: str, keys: list[dict[str, Any]], prompts: list[str], llm: dict[str, Any],
                 amap: dict[str, Any]) -> dict[str, Any]:
    """``llm.map(prompts)`` with the store on (a temp file, as the default store is a file) and ``llm``/``amap`` extras."""
    import nbllm

    pool = nbllm.KeyPool([{**k, "base_url": url} for k in keys])
    with tempfile.TemporaryDirectory() as tmp:
        model = nbllm.LLM(MODEL, pool=pool, store=os.path.join(tmp, "store.sqlite3"), **llm)
        start = time.monotonic()
        results = model.map(prompts, **amap)
        wall = time.monotonic() - start
        failures = sorted({type(r.error).__name__ for r in results if not r.ok})
        hedges = sum(getattr(r, "hedges", 0) for r in results if r.ok)  # requests raced on another key
        model.store.close()
    note = ", ".join(failures + ([f"{hedges} hedged"] if hedges else []))
    return {"wall": wall, "ok": sum(1 for r in results if r.ok), "lost": sum(1 for r in results if not r.ok),
            "note": note}


# ---- one run ---------------------------------------------------------------------------------------------
def _prompts(scenario: LatencyScenario, n: int) -> list[str]:
    return arithmetic_prompts(n, seed=ord(scenario.code), tag=f"latency {scenario.code}")[0]


def _measure(scenario: LatencyScenario, system: str, target: str, kwargs: dict[str, Any], n: int) -> dict[str, Any]:
    """Run one client against a fresh simulator; add what the simulator saw."""
    with SimProcess(scenario.sim_config(), sample_every=SAMPLE_EVERY) as sim:
        outcome = run_isolated(target, {**kwargs, "url": sim.base_url + "/v1"}, timeout=600)
        stats, samples = sim.stats(), sim.samples()
    return _row(scenario, system, n, outcome, stats, samples)


def _row(scenario: LatencyScenario, system: str, n: int, outcome: dict[str, Any], stats: dict[str, Any],
         samples: list[Any]) -> dict[str, Any]:
    total = stats["total"]
    per_key = {k.alias: stats.get(k.alias, {}).get("rate_limited", 0) for k in scenario.keys}
    return {"scenario": scenario.code, "system": system, "items": n, "wall": outcome["wall"], "ok": outcome["ok"],
            "lost": n - outcome["ok"], "rate_limited": total["rate_limited"], "per_key_429": per_key,
            "server_errors": total["server_errors"], "unauthorized": total["unauthorized"], "quota": total["quota"],
            "max_in_flight": total["max_in_flight"], "rates": achieved_rates(samples, scenario),
            "note": outcome.get("note", ""), "statuses": outcome.get("statuses")}


def _oracle_row(scenario: LatencyScenario, prompts: list[str]) -> dict[str, Any]:
    row = _measure(scenario, "oracle", "benchmarks._oracle:oracle_client",
                   {"keys": [k.to_json() for k in scenario.oracle_keys()], "prompts": prompts,
                    "window_seconds": WINDOW_SECONDS}, len(prompts))
    row["ideal"] = ideal_wall(scenario, prompts)
    return row


def _skipped(scenario: LatencyScenario, variant: Variant, n: int, why: str) -> dict[str, Any]:
    return {"scenario": scenario.code, "system": variant.label, "items": n, "skipped": why}


def run_scenario(scenario: LatencyScenario, n: int, oracle: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The oracle (unless given) and every nbllm variant of one single-process scenario."""
    prompts = _prompts(scenario, n)
    rows = [oracle or _oracle_row(scenario, prompts)]
    for variant in scenario.variants:
        if "hedge" in variant.amap and not hedge_supported():
            rows.append(_skipped(scenario, variant, n, "not implemented yet: `LLM.amap` has no `hedge=` parameter"))
            continue
        try:
            rows.append(_measure(scenario, variant.label, "benchmarks.bench_latency:nbllm_client",
                                 {"keys": scenario.nbllm_keys(), "prompts": prompts, "llm": variant.llm,
                                  "amap": variant.amap}, n))
        except Exception as exc:  # noqa: BLE001 - one broken run must not hide the others
            rows.append(_skipped(scenario, variant, n, f"benchmark error: {type(exc).__name__}: {exc}"[:300]))
    return rows


# ---- scenario E: several processes through Redis -----------------------------------------------------------
def run_shared_scenario(scenario: LatencyScenario, n: int) -> list[dict[str, Any]]:
    """One oracle process vs ``scenario.processes`` nbllm processes sharing the keys through a real Redis."""
    from . import bench_shared

    per_process = n // scenario.processes
    lists = [bench_shared.worker_prompts(i, per_process) for i in range(scenario.processes)]
    rows = [_oracle_row(scenario, interleave(lists))]
    label = f"nbllm × {scenario.processes} processes, shared pool (Redis)"
    if shutil.which("redis-server") is None:
        return rows + [_skipped(scenario, scenario.variants[0], n, "redis-server is not installed (`make system-deps`)")]
    with tempfile.TemporaryDirectory() as tmp:
        redis = bench_shared.RedisServer(tmp).start()
        try:
            with SimProcess(scenario.sim_config(), sample_every=SAMPLE_EVERY) as sim:
                result = bench_shared.run_processes(
                    sim, processes=scenario.processes, items=per_process, shared=redis.url, concurrency=None,
                    namespace=f"nbllm:latency:{time.time_ns()}:", keys=scenario.nbllm_keys(sim.base_url + "/v1"))
                stats, samples = sim.stats(), sim.samples()
        finally:
            redis.stop()
    last = max((t for w in result.workers for t in w["times"]), default=result.start_at)
    failures = sorted({f for w in result.workers for f in w.get("failures", [])})
    outcome = {"wall": last - result.start_at, "ok": result.ok, "note": "; ".join(failures)[:200]}
    return rows + [_row(scenario, label, per_process * scenario.processes, outcome, stats, samples)]


# ---- the benchmark -----------------------------------------------------------------------------------------
def run(quick: bool = False, codes: str = "") -> Section:
    """Every scenario (or those whose codes ``codes`` lists, e.g. "B,C"), oracle first."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    oracles: dict[str, dict[str, Any]] = {}
    chosen = [s for s in SCENARIOS if not codes or s.code in codes.upper().split(",")]
    for scenario in chosen:
        n = scenario.quick_items if quick else scenario.items
        shared_from = oracles.get(SHARES_ORACLE.get(scenario.code, ""))
        oracle = {**shared_from, "scenario": scenario.code} if shared_from else None
        if scenario.processes > 1:
            found = run_shared_scenario(scenario, n)
        else:
            found = run_scenario(scenario, n, oracle)
        oracles[scenario.code] = found[0]
        for row in found:
            _print(row)
        rows += found
    return latency_section(chosen, rows, quick, time.perf_counter() - started, SHARES_ORACLE)


def _print(row: dict[str, Any]) -> None:
    if "skipped" in row:
        print(f"  latency {row['scenario']} {row['system']:45s} skipped: {row['skipped']}", flush=True)
        return
    print(f"  latency {row['scenario']} {row['system']:45s} wall {row['wall']:6.1f}s lost {row['lost']} "
          f"429s {row['rate_limited']} in flight ≤ {row['max_in_flight']} {row['note']}", flush=True)


if __name__ == "__main__":
    import sys

    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(run(quick="--quick" in sys.argv, codes=arguments[0] if arguments else "").markdown())
