"""Several processes, one set of keys: with a shared pool (Redis) they keep within each key's limit together;
each limiting itself alone, N processes send N times the limit and collect 429s.

    python -m benchmarks.bench_shared            # the table
    run(quick=True)["markdown"]                  # from benchmarks/run_all.py

Every run starts its own simulator (strict 2 s windows, so overshoot really gets 429s) and, for the shared
runs, talks to a real ``redis-server`` started on a free loopback port. The worker processes are this file
run with ``--worker``; ``tests/test_shared.py`` drives the same harness.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# strict per-key limits (requests per minute): 2400 rpm = 40 requests/s in all — the keys are placeholders the embedded simulator accepts, not real keys
KEYS = {
    "sk-shared-alpha-00000001": ("alpha", 600),
    "sk-shared-bravo-00000002": ("bravo", 600),
    "sk-shared-charlie-0000003": ("charlie", 1200),
}
WARMUP_SECONDS = 1.5  # the first burst (a full bucket) is not steady-state throughput
TAIL_QUANTILE = 0.95  # the steady part ends when 95 % of all items are done
START_DELAY_SECONDS = 0.2  # from "all workers are warm" to the common start


# ---- a real redis-server ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """``redis-server`` on a loopback port in a temp dir, without persistence; kill and restart it at will."""

    def __init__(self, directory: str | Path, port: int | None = None) -> None:
        self.directory, self.port = Path(directory), port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server, or `make system-deps`).")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies with every connection and all its data (nothing is saved)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


# ---- one worker process -------------------------------------------------------------------------------
async def _work(config: dict[str, Any]) -> dict[str, Any]:
    import nbllm
    from nbllm import KeyPool

    pool = KeyPool(config["keys"], shared=config["shared"], namespace=config["namespace"])
    concurrency = {"concurrency": config["concurrency"]} if config["concurrency"] else {}  # None: nbllm's default
    llm = nbllm.LLM("gpt-4o-mini", pool=pool, store=False, **concurrency)
    # warm up before the common start, like a kernel that has run a cell: the HTTP client (created on first
    # use) and the Redis connection; otherwise a slow start on a busy machine puts a burst mid-run
    await nbllm._engine.run(_warm_up(pool, config["keys"][0]["base_url"]))
    prompts = worker_prompts(config["index"], config["items"])
    await _barrier(Path(config["barrier"]), config["index"])
    times: list[float] = []
    batch = llm.amap(prompts, progress="none")
    async for _, _result in batch:
        times.append(time.time())
    failures = [repr(r.error)[:200] for r in batch.results if r is not None and not r.ok]
    return {
        "times": times, "ok": sum(1 for r in batch.results if r is not None and r.ok), "failures": failures[:5],
        "keys": {row["alias"]: row for row in pool.status_rows()},
        "connected": pool.shared.connected if pool.shared is not None else None,
    }


def worker_prompts(index: int, items: int) -> list[str]:
    """The prompts worker ``index`` sends (distinct across workers)."""
    return [f"What is {i} + {index}? Answer as JSON" for i in range(items)]


async def _warm_up(pool: Any, base_url: str) -> None:
    from nbllm._client import Timeouts, get_transport

    # open a pooled connection first (a POST the simulator refuses without a key costs nothing)
    async with get_transport().post(base_url + "/chat/completions", {}, {}, Timeouts()) as response:
        await response.aread()
    if pool.shared is not None:
        await pool.shared.ready()


async def _barrier(folder: Path, index: int) -> None:
    """Say this worker is ready, then wait for the common start the parent writes once all are."""
    (folder / f"{index}.ready").touch()
    go = folder / "go"
    while not go.exists():
        await asyncio.sleep(0.01)
    await asyncio.sleep(max(0.0, float(go.read_text()) - time.time()))


def _worker_main(argument: str) -> None:
    result = asyncio.run(_work(json.loads(argument)))
    print(json.dumps(result), flush=True)


# ---- several workers against one simulator -----------------------------------------------------------
@dataclass
class RunResult:
    """What several processes did together."""

    processes: int
    shared: bool
    items: int
    ok: int
    rate_limited: int
    unauthorized: dict[str, int]
    throughput: float  # completed requests per second over the steady part
    limit: float  # the keys' total limit, requests per second
    wall: float
    workers: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    start_at: float = 0.0  # the common start (time.time()), so a caller can time start -> last answer

    @property
    def lost(self) -> int:
        return self.items - self.ok

    @property
    def fraction(self) -> float:
        return self.throughput / self.limit


def wait_for_answers(sim: Any, count: int, timeout: float = 60.0) -> None:
    """Block until the simulator has answered ``count`` requests (to act mid-run, whatever the start-up time)."""
    deadline = time.monotonic() + timeout
    while sim.stats()["total"]["ok"] < count and time.monotonic() < deadline:
        time.sleep(0.02)


def key_specs(base_url: str) -> list[dict[str, Any]]:
    return [{"key": k, "alias": alias, "rpm": rpm, "base_url": base_url + "/v1"} for k, (alias, rpm) in KEYS.items()]


def make_simulator(ttft: float = 0.02, headers: bool = True) -> Any:
    """The simulator every run uses; ``headers=False`` hides x-ratelimit-* (some providers send none)."""
    from nbllm.sim import KeyProfile, SimConfig, Simulator

    profiles = {k: KeyProfile(alias=alias, rpm=rpm) for k, (alias, rpm) in KEYS.items()}
    return Simulator(SimConfig(keys=profiles, ttft=ttft, ttft_jitter=0.0, tokens_per_second=0.0, window_seconds=2.0,
                               expose_limit_headers=headers))


def run_processes(sim: Any, *, processes: int, items: int, shared: str | None, namespace: str = "nbllm:bench:",
                  concurrency: int | None = 8, during: Callable[[float], None] | None = None,
                  keys: list[dict[str, Any]] | None = None) -> RunResult:
    """Run ``processes`` workers of ``items`` each against ``sim``; ``during(start_at)`` runs meanwhile.

    ``keys``: the key specs every worker's pool gets (default: `key_specs`, limits told); ``concurrency``
    None leaves nbllm's default."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for index in range(processes):
            config = {"keys": keys or key_specs(sim.base_url), "shared": shared, "namespace": namespace, "index": index,
                      "items": items, "concurrency": concurrency, "barrier": tmp}
            out, err = open(Path(tmp) / f"{index}.out", "w+"), open(Path(tmp) / f"{index}.err", "w+")
            procs.append((subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config)],
                                           stdout=out, stderr=err, env={**os.environ, "PYTHONWARNINGS": "default"}), out, err))
        start_at = _start_together(Path(tmp), [proc for proc, _, _ in procs])
        if during is not None:
            during(start_at)
        workers, stderr = [], []
        for proc, out, err in procs:
            proc.wait(300)
            out.seek(0), err.seek(0)
            text, errors = out.read(), err.read()
            stderr.append(errors)
            lines = [line for line in text.splitlines() if line.startswith("{")]
            workers.append(json.loads(lines[-1]) if lines else {"times": [], "ok": 0, "failures": [errors[-2000:]], "keys": {}})
            out.close(), err.close()
    return _summarise(sim, workers, stderr, processes, items, shared is not None, start_at)


def _start_together(folder: Path, procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> float:
    """Once every worker is warm (or has died), give them a common start time; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        not (folder / f"{i}.ready").exists() and proc.poll() is None for i, proc in enumerate(procs)
    ):
        time.sleep(0.02)
    start_at = time.time() + START_DELAY_SECONDS
    (folder / "go.tmp").write_text(repr(start_at))
    (folder / "go.tmp").rename(folder / "go")  # atomic: no worker reads a half-written time
    return start_at


def _summarise(sim: Any, workers: list[dict[str, Any]], stderr: list[str], processes: int, items: int,
               shared: bool, start_at: float) -> RunResult:
    stats = sim.stats()
    all_times = sorted(t for w in workers for t in w["times"])
    # steady part: after the first burst (timed from the first answer: a worker may start late), until the
    # tail (one process alone can keep every key busy, so demand stays above the limit to the last items)
    begin = (all_times[0] if all_times else start_at) + WARMUP_SECONDS
    end = all_times[int(len(all_times) * TAIL_QUANTILE)] if all_times else begin
    steady = [t for t in all_times if begin <= t <= end]
    throughput = len(steady) / (end - begin) if end > begin + 1 else 0.0
    return RunResult(
        processes=processes, shared=shared, items=processes * items, ok=sum(w["ok"] for w in workers),
        rate_limited=stats["total"]["rate_limited"],
        unauthorized={alias: stats.get(alias, {}).get("unauthorized", 0) for alias, _ in KEYS.values()},
        throughput=throughput, limit=sum(rpm for _, rpm in KEYS.values()) / 60.0,
        wall=(all_times[-1] - all_times[0]) if all_times else 0.0, workers=workers, stderr=stderr, start_at=start_at,
    )


# ---- the table ----------------------------------------------------------------------------------------
def run(quick: bool = False) -> dict:
    """Processes × {shared, not shared} (× limit headers sent or not) → 429s, throughput / total limit, lost items."""
    if shutil.which("redis-server") is None:
        return {"rows": [], "markdown": "_bench_shared skipped: redis-server is not installed (`make system-deps`)._"}
    seconds = 6.0 if quick else 12.0
    cases = [(4, True)] if quick else [(2, True), (4, True), (4, False)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(tmp).start()
        try:
            for processes, headers in cases:
                items = int(seconds * 40 / processes)
                for shared in (False, True):
                    with make_simulator(headers=headers) as sim:
                        result = run_processes(sim, processes=processes, items=items, shared=redis.url if shared else None,
                                               namespace=f"nbllm:bench:{processes}:{time.time_ns()}:")
                    rows.append(_row(result, "shared (Redis)" if shared else "per process", headers))
            if not quick:
                rows.append(_outage_row(redis, items=int(seconds * 10)))
        finally:
            redis.stop()
    return {"rows": rows, "markdown": _markdown(rows)}


def _outage_row(redis: RedisServer, items: int, down_seconds: float = 3.0) -> dict[str, Any]:
    """Four processes, shared; Redis is SIGKILLed ~3 s into the run and restarted (empty) 3 s later."""
    def outage(start_at: float) -> None:
        wait_for_answers(sim, 160)  # the first burst and 3 s of steady state
        redis.kill()
        time.sleep(down_seconds)
        redis.start()

    with make_simulator() as sim:
        result = run_processes(sim, processes=4, items=items, shared=redis.url, namespace=f"nbllm:bench:outage:{time.time_ns()}:",
                               during=outage)
    return _row(result, f"shared, Redis killed for {down_seconds:g} s", True)


def _row(result: RunResult, pool: str, headers: bool) -> dict[str, Any]:
    return {"processes": result.processes, "pool": pool, "headers": headers, "shared": result.shared, "items": result.items,
            "rate_limited": result.rate_limited, "fraction": round(result.fraction, 3),
            "lost": result.lost, "wall": round(result.wall, 1)}


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Processes sharing 3 keys (600/600/1200 rpm = 40 req/s together) against one simulator with strict 2 s windows.",
        "Without limit headers a process cannot see what the others use; with them it backs off after the fact (429s).",
        "Lost items: prompts that failed after nbllm's 12 rate-limit retries.",
        "",
        "| processes | pool | limit headers | items | 429s | steady throughput / total limit | lost items | wall (s) |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['pool']} | {'sent' if r['headers'] else 'none'} | {r['items']} | {r['rate_limited']} | {r['fraction']:.2f} | {r['lost']} | {r['wall']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        print(run(quick="--quick" in sys.argv)["markdown"])
