"""Client overhead: CPU seconds per request against a zero-latency simulator in another process.

Each client runs in its own fresh interpreter (``_common.run_isolated``) and sends the same ``N``
chat-completion requests at concurrency 64; the CPU of the whole client process (every thread) is
measured with ``time.process_time()`` around the measured phase, after a warm-up of 200 requests
that opens the connections. Plain aiohttp is the floor the target is set against: nothing but a socket,
HTTP/1.1 and JSON (no cookie jar, the body encoded once, the answer decoded with ``json.loads``). Beside
it, a lower floor (``client_protocol``: an ``asyncio.Protocol`` with llhttp and nothing a real client
needs) says how far nbllm is from what a request costs in Python at the least.

nbllm runs in the configuration the CPU target is about: a key pool, a text progress bar and the store
on; the same with the store off is the row beside it. Then nbllm and the floor are profiled on the same
workload (``_profile.py``): CPU by thread, pyinstrument on the event-loop thread, cProfile on the store's
writer thread, all scaled to µs per request of the best unprofiled run; the report is
``_overhead_report.py``. Full profile: ``benchmarks/out/profile_nbllm.html``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import OUT_DIR, Section, SimProcess, arithmetic_prompts, run_isolated
from ._overhead_report import NBLLM_TARGET_LABEL, RAW_FLOOR_LABEL, overhead_section
from ._profile import (profile_store_writers, summarize_loop_profile, summarize_writer_profiles, thread_cpu,
                       thread_cpu_since)

MODEL = "gpt-4o-mini"
CONCURRENCY = 64
WARMUP = 200
N_REQUESTS = 3000
ROUNDS = 3  # each client runs this many times, interleaved; the best run counts (this machine is noisy)

# (label, client function, extra environment, extra arguments)
VARIANTS = [
    ("aiohttp, lean (floor)", "client_aiohttp", {}, {}),
    (NBLLM_TARGET_LABEL, "client_nbllm", {}, {}),
    (RAW_FLOOR_LABEL, "client_protocol", {}, {}),
    ("nbllm with NBLLM_TRANSPORT=aiohttp", "client_nbllm", {"NBLLM_TRANSPORT": "aiohttp"}, {}),
    ("nbllm with NBLLM_TRANSPORT=httpx2", "client_nbllm", {"NBLLM_TRANSPORT": "httpx2"}, {}),
    ("nbllm, store off (store=False)", "client_nbllm", {}, {"store": False}),
    ("openai SDK (AsyncOpenAI + semaphore)", "client_openai", {}, {}),
    ("openai SDK + DefaultAioHttpClient", "client_openai_aiohttp", {}, {}),
    ("httpx 0.28 AsyncClient", "client_httpx", {}, {}),
    ("httpx2 AsyncClient", "client_httpx2", {}, {}),
    ("httpx2 + httpx_aiohttp AiohttpTransport", "client_httpx2_aiohttp", {}, {}),
    ("nbllm's HTTP layer alone (nbllm._client.http transport)", "client_nbllm_transport", {}, {}),
    ("aiohttp with its defaults (json=, response.json(), cookie jar)", "client_aiohttp", {}, {"lean": False}),
    ("aiohttp lean + trust_env=True", "client_aiohttp", {}, {"trust_env": True}),
]


def _body(prompt: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}


async def _drive(send: Any, prompts: list[str]) -> int:
    """Send every prompt with CONCURRENCY workers; return how many answers had text."""
    todo = iter(prompts)
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for prompt in todo:
            if await send(prompt):
                ok += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ok


async def _measure(send: Any, prompts: list[str], profile: str = "") -> dict[str, Any]:
    """Warm up, then time the rest; with ``profile`` (an HTML path) under pyinstrument, summarised."""
    await _drive(send, prompts[:WARMUP])
    profiler = _loop_profiler() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    ok = await _drive(send, prompts[WARMUP:])
    out = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "ok": ok, "n": len(prompts) - WARMUP}
    if profiler is not None:
        profiler.stop()
        out["profile"] = summarize_loop_profile(profiler, Path(profile))
    return out


def _loop_profiler() -> Any:
    """A started pyinstrument profiler of the calling thread; async_mode "disabled" samples only what runs."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def _prompts(n: int) -> list[str]:
    return arithmetic_prompts(n + WARMUP, seed=11)[0]


# ---- clients (each runs in its own process) ------------------------------------------------------------
def client_aiohttp(url: str, n: int, trust_env: bool = False, lean: bool = True, profile: str = "") -> dict[str, Any]:
    """The floor: plain aiohttp, lean (no cookie jar, the body encoded once with ``json.dumps``, the answer
    decoded with ``json.loads``). ``lean=False`` is aiohttp as most code uses it (``json=``,
    ``response.json()``, the default cookie jar); ``trust_env=True`` (proxy and .netrc from the environment)
    makes aiohttp read the environment and ~/.netrc in a thread pool on every request."""
    import aiohttp

    async def main() -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cookie_jar": aiohttp.DummyCookieJar()} if lean else {}
        headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(trust_env=trust_env, **kwargs) as session:
            async def send(prompt: str) -> bool:
                if lean:
                    async with session.post(url + "/chat/completions", data=json.dumps(_body(prompt)).encode(),
                                            headers=headers) as response:
                        data = json.loads(await response.read())
                else:
                    async with session.post(url + "/chat/completions", json=_body(prompt), headers=headers) as response:
                        data = await response.json()
                return bool(data["choices"][0]["message"]["content"])

            return await _measure(send, _prompts(n), profile)

    return asyncio.run(main())


def client_protocol(url: str, n: int) -> dict[str, Any]:
    """A lower floor than aiohttp: an ``asyncio.Protocol`` per connection, the request's bytes written by
    hand, the answer parsed by llhttp (``httptools``), a list of idle connections, the body decoded with
    ``json.loads``. No timeouts, TLS, errors or anything else a real client needs: what a request costs in
    Python at the least, so that a ratio against aiohttp is not mistaken for a ratio against the possible."""
    from urllib.parse import urlsplit

    import httptools

    class Connection(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser, self.body, self.done = httptools.HttpResponseParser(self), [], None
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            body, self.body = b"".join(self.body), []
            self.done.set_result(body)

    async def main() -> dict[str, Any]:
        parts = urlsplit(url)
        loop, idle = asyncio.get_running_loop(), []
        head = (f"POST {parts.path}/chat/completions HTTP/1.1\r\nhost: {parts.netloc}\r\n"
                "authorization: Bearer sk-bench\r\ncontent-type: application/json\r\ncontent-length: ").encode()

        async def send(prompt: str) -> bool:
            body = json.dumps(_body(prompt)).encode()
            conn = idle.pop() if idle else (await loop.create_connection(Connection, parts.hostname, parts.port))[1]
            conn.done = loop.create_future()
            conn.transport.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            data = json.loads(await conn.done)
            idle.append(conn)
            return bool(data["choices"][0]["message"]["content"])

        return await _measure(send, _prompts(n))

    return asyncio.run(main())


def _httpx_like(module: Any, url: str, n: int, transport: Any = None) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        limits = module.Limits(max_connections=100, max_keepalive_connections=100)
        kwargs = {"transport": transport()} if transport else {"limits": limits}
        async with module.AsyncClient(headers={"Authorization": "Bearer sk-bench"}, timeout=60, **kwargs) as client:
            async def send(prompt: str) -> bool:
                response = await client.post(url + "/chat/completions", json=_body(prompt))
                return bool(response.json()["choices"][0]["message"]["content"])

            return await _measure(send, _prompts(n))

    return asyncio.run(main())


def client_httpx(url: str, n: int) -> dict[str, Any]:
    import httpx

    return _httpx_like(httpx, url, n)


def client_httpx2(url: str, n: int) -> dict[str, Any]:
    import httpx2

    return _httpx_like(httpx2, url, n)


def client_httpx2_aiohttp(url: str, n: int) -> dict[str, Any]:
    import httpx2
    from httpx_aiohttp.httpx2 import AiohttpTransport

    return _httpx_like(httpx2, url, n, transport=lambda: AiohttpTransport(
        limits=httpx2.Limits(max_connections=100, max_keepalive_connections=100)))


def client_nbllm_transport(url: str, n: int) -> dict[str, Any]:
    """nbllm's own HTTP layer alone (``nbllm._client.http.get_transport().post``, on the engine loop, the way
    ``nbllm._client.attempts`` calls it), without the batch, pool, retries, store or progress: the rest of nbllm's
    cost is nbllm's total minus this."""
    import json as _json

    from nbllm import _engine
    from nbllm._client import http as _http

    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    timeouts = _http.Timeouts()

    async def main() -> dict[str, Any]:
        transport = _http.get_transport()

        async def send(prompt: str) -> bool:
            async with asyncio.timeout(timeouts.total):
                async with transport.post(url + "/chat/completions", headers, _body(prompt), timeouts) as response:
                    if response.status != 200:
                        return False
                    data = _json.loads(await response.aread())
            return bool(data["choices"][0]["message"]["content"])

        return await _measure(send, _prompts(n))

    return _engine.run_sync(main())


def _openai(url: str, n: int, aiohttp_client: bool) -> dict[str, Any]:
    import openai

    async def main() -> dict[str, Any]:
        http_client = openai.DefaultAioHttpClient() if aiohttp_client else None
        client = openai.AsyncOpenAI(api_key="sk-bench", base_url=url, http_client=http_client)
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def send(prompt: str) -> bool:
            async with semaphore:
                completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}])
            return bool(completion.choices[0].message.content)

        try:
            return await _measure(send, _prompts(n))
        finally:
            await client.close()

    return asyncio.run(main())


def client_openai(url: str, n: int) -> dict[str, Any]:
    return _openai(url, n, aiohttp_client=False)


def client_openai_aiohttp(url: str, n: int) -> dict[str, Any]:
    return _openai(url, n, aiohttp_client=True)


def client_nbllm(url: str, n: int, profile: str = "", store: bool = True, progress: str = "text") -> dict[str, Any]:
    """``llm.map`` with a key pool (with a limit, so the limiter path runs), a text progress bar (into the
    captured stderr) and the store on: the configuration of the CPU target. ``profile``: an HTML path for
    pyinstrument on the engine thread, plus cProfile on the store's writer thread."""
    import nbllm
    from nbllm import _engine

    prompts = _prompts(n)
    writers = profile_store_writers() if profile and store else []
    with tempfile.TemporaryDirectory() as tmp:
        pool = nbllm.KeyPool([{"key": "sk-bench-overhead-0001", "alias": "k", "base_url": url, "rpm": 10_000_000}])
        llm = nbllm.LLM(MODEL, pool=pool, concurrency=CONCURRENCY,
                        store=os.path.join(tmp, "store.sqlite3") if store else False)
        llm.map(prompts[:WARMUP], progress=progress)
        if store:
            llm.store.flush()
        # the engine thread does all of nbllm's work but the store's writes: profile that thread
        profiler = _engine.run_sync(_call(_loop_profiler)) if profile else None
        threads = thread_cpu()
        cpu, wall = time.process_time(), time.perf_counter()
        results = llm.map(prompts[WARMUP:], progress=progress)
        if store:
            llm.store.flush()  # rows still queued for the writer thread are part of the batch's cost
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        out: dict[str, Any] = {"cpu": cpu, "wall": wall, "ok": sum(1 for r in results if r.ok), "n": n,
                               "threads": thread_cpu_since(threads), "stored": llm.store.count() if store else 0}
        if profiler is not None:
            _engine.run_sync(_call(profiler.stop))
            out["profile"] = summarize_loop_profile(profiler, Path(profile))
        if store:
            llm.store.close()  # ends the writer thread, which completes its profile
    if writers:
        out["writer_profile"] = summarize_writer_profiles(writers)
    return out


async def _call(function: Any) -> Any:
    return function()


# ---- the benchmark -------------------------------------------------------------------------------------
def run(quick: bool = False) -> Section:
    from nbllm.sim import SimConfig

    started = time.perf_counter()
    n = 1500 if quick else N_REQUESTS
    rounds = 1 if quick else ROUNDS
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in VARIANTS}
    errors: dict[str, str] = {}
    with SimProcess(SimConfig(ttft=0, ttft_jitter=0, tokens_per_second=0, arithmetic_accuracy=(1, 0, 0))) as sim:
        url = sim.base_url + "/v1"
        run_isolated("benchmarks.bench_overhead:client_aiohttp", {"url": url, "n": 1000})  # warm the simulator up
        for round_ in range(rounds):
            # rotate the order each round, so no client always runs first or after the same neighbour
            shift = round_ * len(VARIANTS) // max(rounds, 1)
            for label, function, env, extra in VARIANTS[shift:] + VARIANTS[:shift]:
                try:
                    result = run_isolated(f"benchmarks.bench_overhead:{function}", {"url": url, "n": n, **extra}, env=env)
                    results[label].append(result)
                    print(f"  overhead round {round_ + 1}/{rounds} {label:50s} {result['cpu'] / result['n'] * 1e6:7.0f} µs/req  "
                          f"{result['n'] / result['wall']:6.0f} req/s", flush=True)
                except Exception as exc:  # noqa: BLE001
                    errors[label] = str(exc)[-300:]
                    print(f"  overhead {label}: FAILED {errors[label]}", flush=True)
        profiles = _profiles(url, n)
    rows = []
    for label, *_ in VARIANTS:
        runs = results[label]
        if not runs:
            rows.append({"label": label, "cpu_us": None, "error": errors.get(label, "no result")})
            continue
        best = min(runs, key=lambda r: r["cpu"] / r["n"])
        per_request = sorted(r["cpu"] / r["n"] * 1e6 for r in runs)
        rows.append({"label": label, "cpu_us": per_request[0], "cpu_us_all": per_request,
                     "rps": max(r["n"] / r["wall"] for r in runs), "ok": min(r["ok"] for r in runs), "n": n, "error": "",
                     "threads_us": {k: v / best["n"] * 1e6 for k, v in best.get("threads", {}).items()}})
    return overhead_section(rows, profiles, n, rounds, WARMUP, CONCURRENCY, quick, time.perf_counter() - started)


def _profiles(url: str, n: int) -> dict[str, Any]:
    """nbllm (engine thread + store writer) and the floor, profiled on the same workload."""
    out: dict[str, Any] = {}
    for name, function in (("nbllm", "client_nbllm"), ("floor", "client_aiohttp")):
        try:
            result = run_isolated(f"benchmarks.bench_overhead:{function}",
                                  {"url": url, "n": n, "profile": str(OUT_DIR / f"profile_{name}.html")})
            out[name] = {**result["profile"], "writer": result.get("writer_profile", [])}
        except Exception as exc:  # noqa: BLE001
            out[name] = {"error": str(exc)[-500:]}
    return out


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv).markdown())
