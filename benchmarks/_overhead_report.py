"""The client-overhead section of RESULTS.md: CPU per request against the aiohttp floor, and where
nbllm's extra CPU goes (by thread, by library against the floor's own profile, by function), in µs per
request. Pure: measured rows and profile summaries in, ``Section`` out."""

from __future__ import annotations

from typing import Any

from ._common import Headline, Section, Table

TARGET = 1.25
NBLLM_TARGET_LABEL = "nbllm: pool + progress + store on (the target configuration)"
RAW_FLOOR_LABEL = "asyncio Protocol + llhttp, bare (a lower floor: no timeouts, TLS, errors or pool rules)"
ENGINE_THREAD, WRITER_THREAD = "nbllm-engine", "nbllm-store"


def _find(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["label"].startswith(prefix) and r.get("cpu_us")), None)


def _times(row: dict[str, Any] | None, floor: dict[str, Any] | None) -> str:
    return f"{row['cpu_us'] / floor['cpu_us']:.2f}×" if row and floor else "—"


def main_table(rows: list[dict[str, Any]], floor: dict[str, Any] | None, n: int, rounds: int, warmup: int,
               concurrency: int) -> Table:
    table = Table(["client", "CPU µs / request (best)", "all runs (µs)", "× aiohttp floor", "requests / s (best)",
                   "answered"], [],
                  f"{n} requests after {warmup} warm-up, concurrency {concurrency}, zero-latency simulator in another "
                  f"process; CPU of the whole client process; each client ran {rounds}× (interleaved), best run shown:")
    for r in rows:
        if r.get("cpu_us") is None:
            table.rows.append([r["label"], "failed", "—", "—", "—", r["error"][:80]])
            continue
        table.rows.append([r["label"], f"{r['cpu_us']:.0f}", " / ".join(f"{v:.0f}" for v in r["cpu_us_all"]),
                           _times(r, floor), f"{r['rps']:.0f}", f"{r['ok']}/{r['n']}"])
    return table


def headlines(rows: list[dict[str, Any]]) -> list[Headline]:
    floor = _find(rows, "aiohttp, lean")
    nb, off = _find(rows, NBLLM_TARGET_LABEL), _find(rows, "nbllm, store off")
    sdk, httpx2 = _find(rows, "openai SDK ("), _find(rows, "nbllm with NBLLM_TRANSPORT=httpx2")
    over_aiohttp, bare = _find(rows, "nbllm with NBLLM_TRANSPORT=aiohttp"), _find(rows, "asyncio Protocol")
    transport, trusting = _find(rows, "nbllm's HTTP layer alone"), _find(rows, "aiohttp lean + trust_env")
    out = []
    if nb and floor:
        out.append(Headline(
            f"nbllm client CPU ≤ {TARGET}× the aiohttp floor with a key pool, a progress bar and the store on: "
            f"{nb['cpu_us']:.0f} µs/request = {_times(nb, floor)} the floor ({floor['cpu_us']:.0f} µs)"
            + (f"; with the store off {off['cpu_us']:.0f} µs = {_times(off, floor)}" if off else ""),
            nb["cpu_us"] / floor["cpu_us"] <= TARGET))
    if nb and bare:
        out.append(Headline(
            f"the same against the lowest floor, a bare asyncio Protocol with llhttp ({bare['cpu_us']:.0f} µs, no "
            f"timeouts, TLS, errors or pool rules): nbllm is {_times(nb, bare)} that — what a pool, retries, progress "
            "and a durable store cost on top of the least a request can cost in Python", None))
    if nb and over_aiohttp:
        out.append(Headline(
            f"nbllm's own HTTP/1.1 client vs nbllm over aiohttp (`NBLLM_TRANSPORT=aiohttp`): {over_aiohttp['cpu_us']:.0f} "
            f"→ {nb['cpu_us']:.0f} µs per request ({over_aiohttp['cpu_us'] / nb['cpu_us']:.2f}× less; why it is the "
            "default)", nb["cpu_us"] <= over_aiohttp["cpu_us"]))
    if nb and sdk:
        out.append(Headline(f"nbllm vs the official openai SDK: {sdk['cpu_us'] / nb['cpu_us']:.2f}× less CPU per request "
                            f"({nb['cpu_us']:.0f} vs {sdk['cpu_us']:.0f} µs), with a key pool, progress and a store the "
                            "SDK does not have", nb["cpu_us"] <= sdk["cpu_us"]))
    if nb and httpx2:
        out.append(Headline(f"nbllm's default transport vs httpx2's (`NBLLM_TRANSPORT=httpx2`): "
                            f"{httpx2['cpu_us'] / nb['cpu_us']:.2f}× less CPU", nb["cpu_us"] <= httpx2["cpu_us"]))
    if nb and transport and off:
        out.append(Headline(
            f"where nbllm's {nb['cpu_us']:.0f} µs go (best runs; differences of noisy numbers): its HTTP layer alone "
            f"(`nbllm._client.http`, on the engine loop) {transport['cpu_us']:.0f} µs; without the store "
            f"{off['cpu_us']:.0f} µs, so batch + pool + retry + progress ≈ {off['cpu_us'] - transport['cpu_us']:.0f} µs "
            f"and the store ≈ {nb['cpu_us'] - off['cpu_us']:.0f} µs per request (profile below)", None))
    if trusting and floor:
        out.append(Headline(
            f"aiohttp's `trust_env=True` alone costs {trusting['cpu_us'] - floor['cpu_us']:.0f} µs per request "
            f"({trusting['cpu_us']:.0f} vs {floor['cpu_us']:.0f} µs): it re-reads the proxy variables and ~/.netrc on "
            "every request", None))
    return out


# ---- the profile, in µs per request --------------------------------------------------------------------------
def thread_table(nb: dict[str, Any]) -> Table:
    threads = sorted(nb.get("threads_us", {}).items(), key=lambda x: -x[1])
    return Table(["thread", "CPU µs / request"], [[name, f"{us:.0f}"] for name, us in threads if us >= 0.5],
                 f"nbllm's CPU by thread in its best run ({nb['cpu_us']:.0f} µs/request in all; psutil):")


def library_table(nb: dict[str, Any], floor: dict[str, Any], profiles: dict[str, Any]) -> Table:
    """Self time by library on the event-loop thread, nbllm vs the floor, scaled to each one's real µs."""
    engine_us = nb.get("threads_us", {}).get(ENGINE_THREAD, nb["cpu_us"])
    mine = {lib: share * engine_us for lib, share in profiles["nbllm"]["libraries_all"]}
    base = {lib: share * floor["cpu_us"] for lib, share in profiles["floor"]["libraries_all"]}
    libs = sorted(set(mine) | set(base), key=lambda lib: -(mine.get(lib, 0.0) - base.get(lib, 0.0)))[:15]
    return Table(["library, or C function (self time)", "floor µs / request", "nbllm µs / request", "extra µs"],
                 [[lib, f"{base.get(lib, 0.0):.1f}", f"{mine.get(lib, 0.0):.1f}",
                   f"{mine.get(lib, 0.0) - base.get(lib, 0.0):+.1f}"] for lib in libs],
                 f"Where the event-loop thread's CPU goes, nbllm ({engine_us:.0f} µs/request on `{ENGINE_THREAD}`) vs "
                 f"the floor ({floor['cpu_us']:.0f} µs, all on its one thread): pyinstrument shares of each one's "
                 "profiled run × its best unprofiled CPU; the largest differences first:")


def function_table(nb: dict[str, Any], profile: dict[str, Any]) -> Table:
    engine_us = nb.get("threads_us", {}).get(ENGINE_THREAD, nb["cpu_us"])
    inclusive = dict(profile.get("nbllm_inclusive", []))
    own = dict(profile.get("nbllm_self", []))
    names = sorted(set(inclusive) | set(own), key=lambda name: -inclusive.get(name, own.get(name, 0.0)))[:18]
    return Table(["nbllm function", "inclusive µs / request (itself and what it calls)", "self µs / request"],
                 [[name, f"{inclusive.get(name, 0.0) * engine_us:.1f}" if name in inclusive else "—",
                   f"{own[name] * engine_us:.1f}" if name in own else "—"] for name in names],
                 f"nbllm's functions on `{ENGINE_THREAD}` (its own code is {profile['nbllm_share'] * 100:.0f} % of that "
                 "thread's busy CPU; a coroutine is on the stack only while it runs):")


def writer_table(nb: dict[str, Any], writer: list[Any], measured: int) -> Table:
    writer_us = nb.get("threads_us", {}).get(WRITER_THREAD, 0.0)
    return Table(["function on the store's writer thread (self CPU)", "µs / request", "calls / request"],
                 [[name, f"{share * writer_us:.1f}", f"{calls / measured:.3g}"] for name, share, calls in writer],
                 f"The store's writer thread (`{WRITER_THREAD}`, {writer_us:.0f} µs/request): cProfile on CPU time, "
                 "shares × the thread's CPU in the best run (calls counted over warm-up and run):")


def overhead_section(rows: list[dict[str, Any]], profiles: dict[str, Any], n: int, rounds: int, warmup: int,
                     concurrency: int, quick: bool, seconds: float) -> Section:
    floor, nb = _find(rows, "aiohttp, lean"), _find(rows, NBLLM_TARGET_LABEL)
    tables = [main_table(rows, floor, n, rounds, warmup, concurrency)]
    notes = [
        "nbllm runs `llm.map(prompts, progress=\"text\")` (a tqdm bar into the captured stderr: the terminal's "
        "front-end; a notebook shows a widget instead) with a one-key pool (rpm 10 000 000, so the limiter path "
        "runs) and the SQLite store on (a temp dir), waiting for the store's last commit: every answer is recorded. "
        "The other clients do nothing but send and parse. The bare Protocol client is no client anyone should "
        "use (no timeouts, TLS, error handling, limits): it is there so that the aiohttp floor is not mistaken for "
        "the least a request can cost. httpx/httpx2 get `Limits(max_connections=100, "
        "max_keepalive_connections=100)` (the defaults keep only 20 alive, which costs reconnects).",
        "Measured CPU includes every thread of the client process. This 2-core machine is noisy (the same client "
        "varies by up to 2× between runs), hence the best of several interleaved runs; the simulator is warmed up first.",
    ]
    nb_profile, floor_profile = profiles.get("nbllm", {}), profiles.get("floor", {})
    if nb and floor and nb_profile.get("libraries") and floor_profile.get("libraries"):
        tables += [thread_table(nb), library_table(nb, floor, profiles), function_table(nb, nb_profile)]
        if nb_profile.get("writer"):
            tables.append(writer_table(nb, nb_profile["writer"], n + warmup))
        notes.append("Profiles: `benchmarks/out/profile_nbllm.html` and `profile_floor.html` (and `.txt`); the top of "
                     "nbllm's call tree is below.")
    for name, profile in profiles.items():
        if profile.get("error"):
            notes.append(f"Profiling {name} failed: {profile['error']}")
    appendix = f"```\n{nb_profile['text'].strip(chr(10))}\n```" if nb_profile.get("text") else ""
    data_rows = [{"label": r["label"], "us_per_request": r["cpu_us"], "all_us": r["cpu_us_all"],
                  "x_floor": r["cpu_us"] / floor["cpu_us"] if floor else None, "rps": r["rps"],
                  "threads_us": r.get("threads_us", {})} for r in rows if r.get("cpu_us")]
    data = {"rows": data_rows, "floor_us": floor["cpu_us"] if floor else None, "rounds": rounds, "n": n,
            "profiles": {k: {key: v for key, v in p.items() if key != "text"} for k, p in profiles.items()}}
    return Section("overhead", "2. Client overhead (CPU per request)", "Lower is better. " + ("QUICK mode. " if quick else ""),
                   headlines(rows), tables, notes, data, seconds, appendix)
