"""Run every benchmark and write benchmarks/RESULTS.md, results.json and the charts.

    python -m benchmarks.run_all            # the full suite (about 17 minutes on 2 cores)
    python -m benchmarks.run_all --quick    # smaller sizes, a few minutes
    python -m benchmarks.run_all --only throughput,overhead
    python -m benchmarks.run_all --only latency   # LLM-like latency vs the oracle (about 5 minutes)

``--only`` rewrites just those sections: the others are kept from the previous RESULTS.md and
results.json, with the date they were measured. Every table reports ratios against baselines measured
in the same run. ``bench_shared.py`` (the Redis-shared key pool across processes) is picked up when it
exists: see ``shared_pool_section``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ._common import BENCH_DIR, OUT_DIR, ROOT, Headline, Section, Table
from ._previous import kept_note, previous_sections

BENCHMARKS = ["throughput", "overhead", "streaming", "scale", "concurrency", "shared", "latency", "structured"]
PACKAGES = ["nbllm", "httpx2", "httpx-aiohttp", "aiohttp", "httpx", "openai", "anthropic", "langchain-openai",
            "langchain-core", "aiolimiter", "tqdm", "ipykernel", "jupyter_client", "pyinstrument", "pydantic",
            "jsonschema"]


# ---- the multi-process hook --------------------------------------------------------------------------
def shared_pool_section(quick: bool) -> Section | None:
    """The Redis-shared key pool benchmark, if ``benchmarks/bench_shared.py`` exists (None otherwise).

    Contract for ``bench_shared.run(quick: bool)``: return a ``benchmarks._common.Section`` (preferred), or a
    dict ``{"title": str, "columns": [...], "rows": [[...]], "headlines": [(text, met_or_None)], "notes": [...],
    "data": {...}}``. Like every table here it should report ratios against a baseline measured in the
    same run (e.g. N processes sharing one pool vs N processes each with its own, against the same keys).
    """
    if not (BENCH_DIR / "bench_shared.py").exists():
        return None
    module = importlib.import_module("benchmarks.bench_shared")
    result = module.run(quick=quick)
    if isinstance(result, Section):
        return result
    if isinstance(result, dict) and "markdown" in result and "columns" not in result:
        # bench_shared's own format: {"rows": [...], "markdown": "...table..."}
        return Section("shared", result.get("title", "6. Shared key pool across processes (Redis)"),
                       result["markdown"], _shared_headlines(result.get("rows", [])), [], list(result.get("notes", [])),
                       {"rows": result.get("rows", [])})
    if isinstance(result, dict):
        tables = [Table(list(result["columns"]), [list(r) for r in result["rows"]], result.get("caption", ""))] \
            if result.get("columns") else []
        return Section("shared", result.get("title", "Shared key pool across processes"), result.get("intro", ""),
                       [Headline(text, met) for text, met in result.get("headlines", [])], tables,
                       list(result.get("notes", [])), dict(result.get("data", {})))
    raise TypeError(f"bench_shared.run returned {type(result).__name__}; expected a Section or a dict")


def _shared_headlines(rows: list[dict[str, Any]]) -> list[Headline]:
    """Shared pool vs one pool per process, same process count and headers: 429s, throughput, lost items."""
    headlines = []
    try:
        for r in rows:
            if not r.get("shared") or "killed" in str(r.get("pool", "")):
                continue
            base = next((b for b in rows if not b.get("shared") and b["processes"] == r["processes"]
                         and b["headers"] == r["headers"]), None)
            if base is None:
                continue
            fewer = f"{base['rate_limited'] / r['rate_limited']:.0f}× fewer" if r["rate_limited"] else "no"
            headlines.append(Headline(
                f"{r['processes']} processes, limit headers {'sent' if r['headers'] else 'not sent'}: a shared pool gets "
                f"{fewer} 429s ({r['rate_limited']} vs {base['rate_limited']}), {r['fraction']:.2f} vs "
                f"{base['fraction']:.2f} of the total limit, lost {r['lost']} vs {base['lost']}", None))
        for r in rows:
            if "killed" in str(r.get("pool", "")):
                headlines.append(Headline(f"{r['pool']}: {r['fraction']:.2f} of the total limit, {r['rate_limited']} 429s, "
                                          f"lost {r['lost']}", None))
    except (KeyError, TypeError, ZeroDivisionError):
        return headlines
    return headlines


def _runner(name: str) -> Callable[[bool], Section | None]:
    if name == "shared":
        return shared_pool_section
    module = importlib.import_module(f"benchmarks.bench_{name}")
    return module.run


# ---- machine and versions ----------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        import psutil

        memory = psutil.virtual_memory().total / 2**30
    except ImportError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "nbllm"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit += " (nbllm/ has uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
        "memory_gib": round(memory, 1) if memory else None, "python": platform.python_version(),
        "commit": commit, "versions": versions,
    }


# ---- charts ----------------------------------------------------------------------------------------------
def throughput_chart(section: Section, path: Any) -> bool:
    rows = section.data.get("rows")
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems, scenarios = section.data["systems"], section.data["scenarios"]
    by = {(r["scenario"], r["system"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(systems)
    colors = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd"]
    for k, system in enumerate(systems):
        xs, heights = [], []
        for i, code in enumerate(scenarios):
            r = by.get((code, system))
            x = i + (k - (len(systems) - 1) / 2) * width
            height = r["fraction"] if r and r["lost"] == 0 else 0.0
            xs.append(x)
            heights.append(height)
            if r and r["lost"]:
                ax.text(x, 0.02, f"lost {r['lost']}", rotation=90, ha="center", va="bottom", fontsize=7, color=colors[k])
            elif r:
                ax.text(x, height + 0.01, f"{height:.2f}", ha="center", va="bottom", fontsize=7)
        ax.bar(xs, heights, width, label=system, color=colors[k % len(colors)])
    ax.axhline(0.95, color="gray", linestyle="--", linewidth=1)
    ax.text(len(scenarios) - 0.5, 0.96, "target 0.95", ha="right", va="bottom", fontsize=8, color="gray")
    titles = section.data.get("titles", {})
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([f"{c}. {titles.get(c, '')}" for c in scenarios], fontsize=8)
    ax.set_ylabel("fraction of theoretical throughput\n(runs that lost items: 0)")
    ax.set_title("Throughput under rate limits (higher is better; a run that lost items scores 0)")
    ax.set_ylim(0, max(1.3, max((r["fraction"] for r in rows if r["lost"] == 0), default=1) + 0.15))
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def overhead_chart(section: Section, path: Any) -> bool:
    rows = section.data.get("rows")
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["us_per_request"])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colors = ["#1f77b4" if r["label"].startswith("nbllm") else "#999999" for r in rows]
    ax.barh([r["label"] for r in rows], [r["us_per_request"] for r in rows], color=colors)
    for i, r in enumerate(rows):
        ax.text(r["us_per_request"], i, f" {r['us_per_request']:.0f} µs ({r['x_floor']:.2f}×)", va="center", fontsize=8)
    ax.set_xlabel("client CPU per request (µs), lower is better")
    ax.set_title("Client overhead at concurrency 64 (zero-latency simulator in another process)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, max(r["us_per_request"] for r in rows) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- the report ------------------------------------------------------------------------------------------
def write_report(sections: list[Section], info: dict[str, Any], quick: bool, total: float, only: list[str],
                 kept: str = "") -> None:
    lines = ["# nbllm benchmarks", ""]
    lines.append(f"Generated by `python -m benchmarks.run_all{' --quick' if quick else ''}"
                 f"{' --only ' + ','.join(only) if only else ''}` on {info['date']}, in {total / 60:.1f} minutes. "
                 "Every ratio compares systems measured in this same run, against `nbllm.sim` running in a separate "
                 "process (real sockets, real SSE, real 429s).")
    if kept:
        lines += ["", kept]
    lines.append("")
    lines.append("## Headlines")
    lines.append("")
    for section in sections:
        for headline in section.headlines:
            lines.append(headline.markdown().replace("- ", f"- **{section.title.split(' ', 1)[1]}** — ", 1))
    lines.append("")
    charts = [name for name in ("throughput.png", "overhead.png") if (BENCH_DIR / name).exists()
              and any(s.name == name.split(".")[0] for s in sections)]
    for name in charts:
        lines += [f"![{name}]({name})", ""]
    lines.append("## Machine")
    lines.append("")
    lines.append(f"- {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM; {info['platform']}")
    lines.append(f"- Python {info['python']}; nbllm commit {info['commit']}")
    lines.append("- " + ", ".join(f"{name} {version}" for name, version in info["versions"].items()))
    lines.append("")
    for section in sections:
        lines += [section.markdown(), ""]
    (BENCH_DIR / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    this_run = {"date": info["date"], "commit": info["commit"], "quick": quick}
    payload = {"info": info, "quick": quick, "total_seconds": total,
               "sections": {s.name: {"title": s.title, "seconds": s.seconds, "data": s.data,
                                     "headlines": [{"text": h.text, "met": h.met} for h in s.headlines],
                                     "measured": s.measured or this_run}
                            for s in sections}}
    (BENCH_DIR / "results.json").write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")


def run_sections(names: list[str], quick: bool) -> list[Section]:
    """Run each named benchmark; one that raises becomes a FAILED section instead of stopping the rest."""
    sections: list[Section] = []
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            section = _runner(name)(quick)
        except Exception:  # noqa: BLE001 - one broken benchmark must not lose the others' results
            section = Section(name, f"{name}: FAILED", "", [Headline(f"benchmark {name} raised an error", False)],
                              notes=["```\n" + traceback.format_exc()[-3000:] + "\n```"])
            print(traceback.format_exc(), file=sys.stderr, flush=True)
        if section is None:
            continue
        section.seconds = time.perf_counter() - t0
        sections.append(section)
        print(f"   {name} took {section.seconds:.0f} s", flush=True)
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info = machine_info()
    sections = run_sections(only or BENCHMARKS, args.quick)
    by_name = {s.name: s for s in sections}
    if "throughput" in by_name:
        throughput_chart(by_name["throughput"], BENCH_DIR / "throughput.png")
    if "overhead" in by_name:
        overhead_chart(by_name["overhead"], BENCH_DIR / "overhead.png")
    kept = previous_sections(BENCH_DIR, skip=set(by_name)) if only else []
    note = kept_note(kept)
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    report = sorted(sections + kept, key=lambda s: order.get(s.name, len(order)))
    total = time.perf_counter() - started
    write_report(report, info, args.quick, total, only, note)
    met = [h.met for s in sections for h in s.headlines if h.met is not None]
    print(f"== done in {total / 60:.1f} min: {sum(met)}/{len(met)} targets met; see benchmarks/RESULTS.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
