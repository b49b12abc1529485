"""Shared pieces of the benchmarks: the simulator in its own process, isolated client runs, prompts, tables.

```python
with SimProcess(SimConfig(keys={...}, ttft=0.2)) as sim:     # a separate process: its CPU is not ours
    url = sim.base_url + "/v1"
    ...
    sim.stats()["total"]["rate_limited"]

result = run_isolated("benchmarks.bench_overhead:client_aiohttp", {"url": url, "n": 5000})  # fresh process
```
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

# The seed's prompt (002: the key-pool blog), word for word.
SEED_TEMPLATE = """
    请将以下表达式的计算结果返回为 JSON 格式：
    {{
      "expression": "{question}",
      "result": ?
    }}
    """


# ---- the simulator in another process ----------------------------------------------------------------
def _sim_child(config: Any, conn: Any, sample_every: float | None = None) -> None:
    import logging

    from nbllm.sim import Simulator

    # clients that give up mid-request (cancelled baselines) make aiohttp log tracebacks: not news here
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)

    sim = Simulator(config).start()
    conn.send(sim.base_url)
    samples: list[tuple[float, dict[str, int]]] = []
    while True:
        try:
            if sample_every and not conn.poll(sample_every):
                samples.append((time.monotonic(), admitted_counts(sim.stats())))
                continue
            message = conn.recv()
        except EOFError:
            break
        if message == "stats":
            conn.send(sim.stats())
        elif message == "samples":
            conn.send(samples + [(time.monotonic(), admitted_counts(sim.stats()))])
        elif message == "reset":
            sim.reset_stats()
            samples.clear()
            conn.send(True)
        elif message == "cpu":
            conn.send(time.process_time())
        elif message == "stop":
            break
    sim.stop(timeout=2)
    conn.send("stopped")


def admitted_counts(stats: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Requests each key (and "total") let through its limiter so far: sent minus every kind of refusal."""
    refused = ("rate_limited", "unauthorized", "quota", "bad_requests")
    return {name: row["requests"] - sum(row[r] for r in refused) for name, row in stats.items()}


class SimProcess:
    """``nbllm.sim.Simulator`` serving from a spawned child process; ``stats()`` asks it over a pipe.

    With ``sample_every`` (seconds) the child also records every key's admitted requests at that pace:
    ``samples()`` returns ``[(monotonic time, {alias: admitted, "total": ...}), ...]``, the time series
    the latency benchmark turns into each key's achieved rate. The clock is the machine's monotonic
    clock, the same in every process.
    """

    def __init__(self, config: Any, sample_every: float | None = None) -> None:
        self.config = config
        self.sample_every = sample_every
        self._process: Any = None
        self._conn: Any = None
        self.base_url = ""

    def __enter__(self) -> SimProcess:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_sim_child, args=(self.config, child, self.sample_every), daemon=True)
        self._process.start()
        if not parent.poll(60):
            self._process.kill()
            raise RuntimeError("the simulator process did not start within 60 s")
        self.base_url = parent.recv()
        self._conn = parent
        return self

    def stats(self) -> dict[str, dict[str, Any]]:
        self._conn.send("stats")
        return self._conn.recv()

    def samples(self) -> list[tuple[float, dict[str, int]]]:
        self._conn.send("samples")
        return self._conn.recv()

    def reset_stats(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def cpu(self) -> float:
        self._conn.send("cpu")
        return self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(5):
                self._conn.recv()
        except (OSError, EOFError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2)


# ---- running a client in a fresh process ---------------------------------------------------------------
_MARK = "BENCH-RESULT:"


def run_isolated(target: str, kwargs: dict[str, Any], env: dict[str, str] | None = None,
                 timeout: float = 600) -> dict[str, Any]:
    """Run ``module:function(**kwargs)`` in a new interpreter and return the dict it returns.

    The child prints its result as one JSON line; stderr is kept for the error message only.
    """
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("PYTHONHASHSEED", "0")
    command = [sys.executable, "-m", "benchmarks._child", target, json.dumps(kwargs)]
    proc = subprocess.run(command, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"{target} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def emit_and_exit(result: dict[str, Any]) -> None:
    """From a ``run_isolated`` child: report ``result`` and leave at once, skipping all clean-up.

    For a client that is stopped mid-run with 100 000 tasks pending, whose cancellation alone takes minutes.
    """
    sys.stdout.flush()
    print(_MARK + json.dumps(result), flush=True)
    os._exit(0)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- prompts -------------------------------------------------------------------------------------------
def arithmetic_expression(rng: random.Random, operators: int = 2) -> tuple[str, int]:
    """The seed's ``generate_arithmetic_expression`` with a seeded generator."""
    ops = ["+", "-", "*"]
    expression = f"{rng.randint(1, 100)} {rng.choice(ops)} {rng.randint(1, 100)}"
    for _ in range(operators - 1):
        expression = f"{expression} {rng.choice(ops)} {rng.randint(1, 100)}"
    result = eval(expression)  # noqa: S307 - our own digits and operators
    return expression.replace("*", "x"), result


def arithmetic_prompts(n: int, seed: int = 0, tag: str = "") -> tuple[list[str], list[int]]:
    """``n`` distinct seed-style prompts and their answers; ``tag`` makes the set unique per run."""
    rng = random.Random(seed)
    prompts, labels, seen = [], [], set()
    while len(prompts) < n:
        question, label = arithmetic_expression(rng)
        if question in seen:
            continue
        seen.add(question)
        prompt = SEED_TEMPLATE.format(question=question)
        prompts.append(prompt + (f"\n({tag} #{len(prompts)})" if tag else ""))
        labels.append(label)
    return prompts, labels


# ---- report pieces --------------------------------------------------------------------------------------
@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""

    def markdown(self) -> str:
        def cell(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
            return str(value).replace("|", "\\|").replace("\n", " ")

        lines = []
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Headline:
    """One result; ``met`` tells whether its target was met, None when it has no target (a ratio for information)."""

    text: str
    met: bool | None

    def markdown(self) -> str:
        mark = {True: "✅ met", False: "❌ NOT met", None: "ℹ️ no target"}[self.met]
        return f"- {mark}: {self.text}"


@dataclass
class Section:
    """What one benchmark module returns to ``run_all``."""

    name: str
    title: str
    intro: str = ""
    headlines: list[Headline] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers, for results.json and the chart
    seconds: float = 0.0
    appendix: str = ""  # raw markdown after the notes (e.g. a profile's text tree)
    raw: str = ""  # the whole section's markdown, as an earlier run wrote it (see _previous.py)
    measured: dict[str, Any] = field(default_factory=dict)  # an earlier run's date and commit, for kept sections

    def markdown(self) -> str:
        if self.raw:
            return self.raw
        parts = [f"## {self.title}", ""]
        if self.intro:
            parts += [self.intro, ""]
        if self.headlines:
            parts += [h.markdown() for h in self.headlines] + [""]
        for table in self.tables:
            parts += [table.markdown(), ""]
        if self.notes:
            parts += [f"- {note}" for note in self.notes] + [""]
        if self.appendix:
            parts += [self.appendix, ""]
        parts.append(f"_This benchmark took {self.seconds:.0f} s._")
        return "\n".join(parts)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
