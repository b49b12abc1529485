"""Where a client's CPU goes: CPU by thread, pyinstrument on the event-loop thread, cProfile on the
store's writer thread, all turned into µs per request.

    before = thread_cpu()
    ...                                                   # the measured phase
    threads = thread_cpu_since(before)                    # {"nbllm-engine": s, "nbllm-store": s, ...}
    writers = profile_store_writers()                     # before the store exists: cProfile each writer
    summary = summarize_loop_profile(profiler, html_path) # shares of the sampled thread's busy time

Shares come from profiled runs (the profilers slow a run down); the benchmark scales them by the CPU of
the best unprofiled run, so the µs it reports are what the client really spends.
"""

from __future__ import annotations

import cProfile
import pstats
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["profile_store_writers", "summarize_loop_profile", "summarize_writer_profiles", "thread_cpu",
           "thread_cpu_since"]


# ---- CPU by thread ---------------------------------------------------------------------------------------
def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of every live thread of this process, by thread name."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, "other (unnamed)")
        if name.startswith(("asyncio_", "ThreadPoolExecutor")):
            name = "executor threads"
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


def thread_cpu_since(before: dict[str, float]) -> dict[str, float]:
    return {name: t - before.get(name, 0.0) for name, t in thread_cpu().items()}


# ---- the store's writer thread under cProfile --------------------------------------------------------------
def profile_store_writers() -> list[cProfile.Profile]:
    """Run every store writer thread created from now on under cProfile; the list fills as they start.

    A writer's profile is complete once its thread has ended (``store.close()``).
    """
    from nbllm._store import writer as _store_writer

    profiles: list[cProfile.Profile] = []
    original = _store_writer.GroupWriter._run

    def profiled_run(self: Any) -> None:
        profile = cProfile.Profile(time.thread_time)  # CPU: the writer's waits for work are not its cost
        profiles.append(profile)
        profile.runcall(original, self)

    _store_writer.GroupWriter._run = profiled_run  # type: ignore[method-assign]
    return profiles


def summarize_writer_profiles(profiles: list[cProfile.Profile], top: int = 10) -> list[tuple[str, float, float]]:
    """[(function, share of the writer's profiled time by self time, calls)], the costliest first."""
    if not profiles:
        return []
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    rows = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(tt for _, _, tt, _, _ in rows.values()) or 1.0
    ranked = sorted(rows.items(), key=lambda item: -item[1][2])
    return [(_function_name(*where), tt / total, float(nc)) for where, (_, nc, tt, _, _) in ranked[:top]]


def _function_name(file: str, line: int, name: str) -> str:
    if file == "~":  # a C function, e.g. "<method 'commit' of 'sqlite3.Connection' objects>"
        return f"C: {name}"
    return f"{name} ({Path(file).name}:{line})"


# ---- the event-loop thread under pyinstrument --------------------------------------------------------------
def library(path: str) -> str:
    """The library a frame's file belongs to: nbllm, a site-packages distribution, or a stdlib module."""
    path = path or ""
    if "/nbllm/" in path:
        return "nbllm"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if not path or "<" in path:
        return "builtins (C)"
    return "stdlib: " + Path(path).stem


def summarize_loop_profile(profiler: Any, html_path: Path | None = None, top: int = 15) -> dict[str, Any]:
    """Self time by library, self and inclusive time of nbllm functions, and a text tree; idle loop time excluded.

    Shares are of the sampled thread's busy time. With ``html_path`` the full profile is written there
    (and a ``.txt`` beside it)."""
    root = profiler.last_session.root_frame()
    acc: dict[str, Any] = {"libraries": {}, "self": {}, "inclusive": {}, "idle": 0.0}
    _walk(root, frozenset(), acc)
    busy = sum(acc["libraries"].values()) or 1.0

    def ranked(table: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(((name, t / busy) for name, t in table.items()), key=lambda x: -x[1])[:top]

    text = profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total")
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(profiler.output_html(), encoding="utf-8")
        html_path.with_suffix(".txt").write_text(text, encoding="utf-8")
    return {"busy_seconds": busy, "idle_seconds": acc["idle"], "libraries": ranked(acc["libraries"]),
            "libraries_all": [(lib, t / busy) for lib, t in acc["libraries"].items()],
            "nbllm_self": ranked(acc["self"]), "nbllm_inclusive": ranked(acc["inclusive"]),
            "nbllm_share": sum(t for t in acc["self"].values()) / busy, "text": "\n".join(text.splitlines()[:60])}


def _walk(frame: Any, nbllm_stack: frozenset[str], acc: dict[str, Any]) -> None:
    if frame.is_synthetic:  # [self]/[await] leaves: already in their parent's total_self_time
        return
    if frame.function in ("select", "poll"):
        acc["idle"] += frame.time  # the loop waiting for I/O: not CPU
        return
    name = f"{frame.function} ({Path(frame.file_path or '').name}:{frame.line_no})"
    lib = library(frame.file_path)
    if lib == "builtins (C)":
        lib = f"C: {frame.function}"  # sqlite, json, sockets… are worth telling apart
    if frame.total_self_time:
        acc["libraries"][lib] = acc["libraries"].get(lib, 0.0) + frame.total_self_time
        if lib == "nbllm":
            acc["self"][name] = acc["self"].get(name, 0.0) + frame.total_self_time
    if lib == "nbllm" and name not in nbllm_stack:
        # with async_mode="disabled" a coroutine is on the stack only while it runs, so inclusive time is CPU
        acc["inclusive"][name] = acc["inclusive"].get(name, 0.0) + frame.time
        nbllm_stack = nbllm_stack | {name}
    for child in frame.children:
        _walk(child, nbllm_stack, acc)
