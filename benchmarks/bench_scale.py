"""Scale: 100 000 seed-style arithmetic prompts against a fast simulator (another process).

Each client runs in its own interpreter, so ``ru_maxrss`` is that client's peak memory alone:

- nbllm ``llm.map`` with the store on and a text progress bar (into the captured stderr), with the
  store's and progress's functions wrapped by CPU timers (``time.thread_time`` on whichever thread calls
  them) to attribute their share of the client's CPU;
- the key-pool seed's approach: all coroutines created up front, ``asyncio.gather`` + tqdm +
  ``AsyncLimiter``, the official SDK per key.

Answers are scored the seed's way (JSON ``result`` equals the label) as a sanity check.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from typing import Any

from ._baselines import seed_clients, seed_tasks, with_progress
from ._common import (Headline, Section, SimProcess, Table, arithmetic_prompts, emit_and_exit, peak_rss_mb,
                      run_isolated)
from ._profile import thread_cpu, thread_cpu_since

MODEL = "gpt-4o-mini"
CONCURRENCY = 64
KEY_RPM = 60_000  # three keys: 3 000 requests/s in all, about what the simulator serves on one core
KEYS = [(f"sk-bench-scale-000{i}", f"k{i}", KEY_RPM) for i in range(1, 4)]
# The seed's AsyncLimiter(rate, 1): what its own client sustains with 100 000 pending tasks. At 250/s and more
# the client saturates its CPU, its connections start timing out and it stalls (0 answers in 30 s at 100 000).
SEED_RATE = 100.0
SEED_SECONDS = 30.0  # the seed is stopped after this long: it would need minutes to finish 100 000
RSS_TARGET_MB = 300.0
SHARE_TARGET = 0.01


def _score(texts: list[str | None], labels: list[int]) -> float:
    right = 0
    for text, label in zip(texts, labels):
        match = re.search(r"\{.*?\}", text or "", re.DOTALL)
        try:
            right += match is not None and int(json.loads(match.group(0)).get("result")) == label
        except (ValueError, TypeError):
            pass
    return right / len(labels)


def _instrument() -> dict[str, float]:
    """Wrap the store's and the progress's entry points with per-thread CPU timers."""
    from nbllm._progress import display as _progress_display
    from nbllm._progress import state as _progress
    from nbllm._store import store as _store
    from nbllm._store.rows import RequestFingerprints

    spent = {"store": 0.0, "progress": 0.0, "fingerprints": 0.0}
    clock = time.thread_time

    def wrap(owner: Any, name: str, bucket: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[bucket] += clock() - start

        setattr(owner, name, timed)

    for name in ("record", "lookup", "lookup_many"):
        wrap(_store.Store, name, "store")
    wrap(_store.Store, "__init__", "store")
    wrap(_progress.BatchProgress, "item_done", "progress")
    for name in ("start", "refresh", "close"):
        wrap(_progress_display.ProgressDisplay, name, "progress")
    wrap(RequestFingerprints, "__call__", "fingerprints")  # computed only for the store (cache keys)
    return spent


def scale_nbllm(url: str, n: int, store: bool) -> dict[str, Any]:
    import nbllm

    prompts, labels = arithmetic_prompts(n, seed=5)
    spent = _instrument() if store else None
    with tempfile.TemporaryDirectory() as tmp:
        pool = nbllm.KeyPool([{"key": k, "alias": a, "base_url": url, "rpm": r} for k, a, r in KEYS])
        llm = nbllm.LLM(MODEL, pool=pool, concurrency=CONCURRENCY,
                        store=os.path.join(tmp, "store.sqlite3") if store else False)
        threads_before = thread_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        results = llm.map(prompts, progress="text" if store else "none")
        if store and hasattr(llm.store, "flush"):
            llm.store.flush()  # rows still queued for a writer thread are part of the batch's cost
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        threads = thread_cpu_since(threads_before)
        rss = peak_rss_mb()
        out: dict[str, Any] = {"cpu": cpu, "wall": wall, "rss_mb": rss, "ok": sum(1 for r in results if r.ok), "n": n,
                               "accuracy": _score([getattr(r, "text", None) for r in results], labels),
                               "per_key": pool.counts(), "threads": threads}
        if store:
            out["stored"] = llm.store.count()
            out["spent"] = spent
            llm.store.close()
    return out


def scale_seed(url: str, n: int, max_seconds: float, rate: float = 0.0) -> dict[str, Any]:
    """The seed (002): every coroutine made up front, AsyncLimiter(rate, 1), round robin, tqdm + gather.

    Stopped after ``max_seconds``: every task exists from the start, so memory is at its plateau by then
    (what is still to come is only the answers' strings).
    """
    from aiolimiter import AsyncLimiter
    from tqdm import tqdm

    prompts, labels = arithmetic_prompts(n, seed=5)

    async def send(client: Any, text: str) -> str:
        completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
        return completion.choices[0].message.content

    async def main() -> dict[str, Any]:
        clients = seed_clients([k for k, _, _ in KEYS], url)
        results = seed_tasks(prompts, clients, AsyncLimiter(rate or SEED_RATE, 1), send)
        cpu, wall = time.process_time(), time.perf_counter()
        with tqdm(total=len(results)) as pbar:
            batch = asyncio.ensure_future(asyncio.gather(*with_progress(results, pbar)))
            await asyncio.wait({batch}, timeout=max_seconds)
            done = pbar.n
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out = {"cpu": cpu, "wall": wall, "rss_mb": peak_rss_mb(), "ok": done, "n": n, "accuracy": None, "error": ""}
        if not batch.done():
            # cancelling 100 000 pending tasks takes minutes: report and leave (this is a throwaway process)
            out["error"] = (f"stopped after {max_seconds:.0f} s with {done:,} answered; at that pace all {n:,} "
                            f"take ≈ {n / max(done, 1) * wall:.0f} s")
            emit_and_exit(out)
        if batch.exception() is not None:  # the seed's batch dies with its first exception
            out.update(ok=0, error=f"batch lost: {type(batch.exception()).__name__}")
            emit_and_exit(out)
        else:
            out["accuracy"] = _score(batch.result(), labels)
        for client in clients:
            await client.close()
        return out

    return asyncio.run(main())


def run(quick: bool = False) -> Section:
    from nbllm.sim import KeyProfile, SimConfig

    started = time.perf_counter()
    n = 10_000 if quick else 100_000
    config = SimConfig(keys={k: KeyProfile(alias=a, rpm=r) for k, a, r in KEYS}, ttft=0, ttft_jitter=0,
                       tokens_per_second=0, window_seconds=2, arithmetic_accuracy=(1, 0, 0))
    runs: dict[str, dict[str, Any]] = {}
    for label, target, kwargs in [
        ("nbllm (store on, text progress)", "scale_nbllm", {"store": True}),
        ("seed (gather + tqdm + AsyncLimiter)", "scale_seed", {"max_seconds": 10.0 if quick else SEED_SECONDS}),
    ]:
        with SimProcess(config) as sim:  # a fresh simulator per run: its buckets and stats start clean
            try:
                result = run_isolated(f"benchmarks.bench_scale:{target}", {"url": sim.base_url + "/v1", "n": n, **kwargs},
                                      timeout=900)
                result["rate_limited"] = sim.stats()["total"]["rate_limited"]
            except Exception as exc:  # noqa: BLE001
                result = {"error": str(exc)[-400:], "n": n}
        runs[label] = result
        if "rss_mb" in result:
            print(f"  scale {label:40s} wall {result['wall']:6.1f}s cpu {result['cpu']:6.1f}s rss {result['rss_mb']:6.0f} MB "
                  f"ok {result['ok']}/{n}", flush=True)
        else:
            print(f"  scale {label}: FAILED {result.get('error')}", flush=True)
    return _section(runs, n, quick, time.perf_counter() - started)


def _section(runs: dict[str, dict[str, Any]], n: int, quick: bool, seconds: float) -> Section:
    on = runs.get("nbllm (store on, text progress)", {})
    off = runs.get("nbllm (store off, no progress)", {})
    seed = runs.get("seed (gather + tqdm + AsyncLimiter)", {})
    table = Table(["client", "peak RSS (MB)", "wall (s)", "client CPU (s)", "CPU µs / answered item", "answered", "accuracy",
                   "429s", "note"], [], f"{n:,} prompts, fast simulator (no latency, 3 keys × {KEY_RPM:,} rpm) in another process:")
    for label, r in runs.items():
        if "rss_mb" not in r:
            table.rows.append([label, "—", "—", "—", "—", "—", "—", "—", r.get("error", "")[:120]])
            continue
        table.rows.append([label, f"{r['rss_mb']:.0f}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{r['cpu'] / max(r['ok'], 1) * 1e6:.0f}",
                           f"{r['ok']:,}/{r['n']:,}", "—" if r["accuracy"] is None else f"{r['accuracy'] * 100:.1f} %",
                           r.get("rate_limited", "—"),
                           r.get("error", "")])
    headlines = []
    if "rss_mb" in on:
        headlines.append(Headline(f"nbllm peak RSS ≤ {RSS_TARGET_MB:.0f} MB at {n:,} prompts: {on['rss_mb']:.0f} MB"
                                  + (f" (store off: {off['rss_mb']:.0f} MB)" if "rss_mb" in off else "")
                                  + (f"; the seed's approach: {seed['rss_mb']:.0f} MB = {seed['rss_mb'] / on['rss_mb']:.2f}× nbllm"
                                     if "rss_mb" in seed else ""), on["rss_mb"] <= RSS_TARGET_MB))
    share_table = None
    if "spent" in on:
        spent = dict(on["spent"])
        # a store that writes on its own thread ("nbllm-store…"): that thread's CPU is the store's too
        writer = sum(t for name, t in on.get("threads", {}).items() if name.startswith("nbllm-store"))
        if writer:
            spent["store writer thread"] = writer
        total = sum(spent.values())
        share = total / on["cpu"]
        parts = ", ".join(f"{part} {t:.2f} s" for part, t in spent.items())
        headlines.append(Headline(f"progress + store < {SHARE_TARGET:.0%} of nbllm's client CPU: {share * 100:.2f} % "
                                  f"({total:.2f} s of {on['cpu']:.1f} s: {parts})", share < SHARE_TARGET))
        rows = [[part, f"{t:.2f}", f"{t / on['cpu'] * 100:.2f} %", f"{t / on['n'] * 1e6:.1f}"] for part, t in spent.items()]
        rows.append(["together", f"{total:.2f}", f"{share * 100:.2f} %", f"{total / on['n'] * 1e6:.1f}"])
        if "cpu" in off:
            diff = on["cpu"] - off["cpu"]
            rows.append(["cross-check: CPU(store on) − CPU(store off)", f"{diff:.2f}", f"{diff / on['cpu'] * 100:.2f} %",
                         f"{diff / on['n'] * 1e6:.1f}"])
        share_table = Table(["part", "CPU (s)", "share of client CPU", "µs / item"], rows,
                            "Where nbllm's bookkeeping goes (CPU timers around the store's and progress's entry points, "
                            "on whichever thread calls them, plus the CPU of a store writer thread if there is one):")
    if "wall" in on and "wall" in seed and seed.get("ok"):
        nb_us, seed_us = on["cpu"] / on["n"] * 1e6, seed["cpu"] / seed["ok"] * 1e6
        headlines.append(Headline(f"client CPU per answered item: nbllm {nb_us:.0f} µs, the seed's approach {seed_us:.0f} µs "
                                  f"({seed_us / nb_us:.1f}× nbllm); nbllm answered {on['n'] / on['wall']:.0f} items/s, the seed "
                                  f"{seed['ok'] / seed['wall']:.0f}/s", None))
    thread_table = None
    if on.get("threads"):
        thread_table = Table(["thread", "CPU (s)", "share of client CPU"],
                             [[name, f"{t:.2f}", f"{t / on['cpu'] * 100:.1f} %"]
                              for name, t in sorted(on["threads"].items(), key=lambda x: -x[1]) if t >= 0.005],
                             "nbllm's client CPU by thread (psutil), store on:")
    tables = [table] + [t for t in (share_table, thread_table) if t]
    notes = [
        f"Each client runs in its own process, so peak RSS is that client's alone (Python + imports included). "
        f"{'QUICK mode: 10 000 prompts instead of 100 000. ' if quick else ''}",
        "The fingerprints row is the SHA-256 cache keys nbllm computes for every prompt when a store is on.",
        "Cross-check of the store's cost under steadier conditions: the overhead benchmark (section 2) runs nbllm with "
        "the store on and off.",
        f"The seed's approach runs with `AsyncLimiter({SEED_RATE:g}, 1)`: with 100 000 pending tasks its own client "
        "saturates a core from about 250/s on, its connections time out and it stalls (0 answers in 30 s in a trial). "
        f"It is stopped after {SEED_SECONDS:g} s (10 s in quick mode): every one "
        "of its tasks exists from the first second, so its memory is at its plateau; its peak RSS is a lower bound "
        "and its CPU per item counts answered items only.",
    ]
    return Section("scale", f"4. Scale ({n:,} prompts)", "", headlines, tables, notes, {"runs": runs, "n": n}, seconds)


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv).markdown())
