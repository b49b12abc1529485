"""Running the simulator: on a daemon thread with its own event loop, or blocking in the foreground."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Callable

from aiohttp import web

from ._config import KeyProfile, SimConfig
from ._server import SimServer

__all__ = ["Simulator", "default_simulator", "serve_forever"]

_SHUTDOWN_TIMEOUT = 1.0  # seconds open streams get to finish when the simulator stops


async def _start_site(server: SimServer, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start the aiohttp app on ``host:port`` and return its runner and the bound port."""
    runner = web.AppRunner(server.make_app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return runner, bound


class Simulator:
    """An OpenAI- and Anthropic-compatible server on loopback, for demos, tests and benchmarks.

    Example::

        with Simulator(SimConfig(ttft=0, tokens_per_second=0)) as sim:
            client = openai.OpenAI(base_url=sim.base_url + "/v1", api_key="sk-test")
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            print(sim.stats()["total"])

    Anthropic clients use ``base_url=sim.base_url`` (no ``/v1``). ``clock`` (seconds,
    monotonic) drives batch timelines; tests pass one they move by hand, the default is
    the server's event loop.
    """

    def __init__(
        self, config: SimConfig | None = None, *, host: str = "127.0.0.1", clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self._server = SimServer(self.config, clock=clock)  # clock: seconds for batch timelines (tests pass their own)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<Simulator {where}>"

    @property
    def running(self) -> bool:
        """Tell whether the server thread is up."""
        return self._port is not None

    @property
    def port(self) -> int:
        """Return the bound port; raises if the simulator is not started."""
        if self._port is None:
            raise RuntimeError("The simulator is not running: call sim.start() first.")
        return self._port

    @property
    def base_url(self) -> str:
        """Return ``http://HOST:PORT``; OpenAI clients add ``/v1``, Anthropic clients use it as is."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Simulator:
        """Start serving on a daemon thread (idempotent) and return self."""
        with self._lock:
            if self._port is not None:
                return self
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="nbllm-sim", daemon=True)
            thread.start()
            future = asyncio.run_coroutine_threadsafe(
                _start_site(self._server, self.host, self.config.port), loop
            )
            try:
                self._runner, self._port = future.result(timeout)
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
                loop.close()
                raise
            self._loop, self._thread = loop, thread
            return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server and its thread's loop; safe to call twice."""
        with self._lock:
            loop, thread, runner = self._loop, self._thread, self._runner
            if loop is None or thread is None:
                return
            self._loop = self._thread = self._runner = None
            self._port = None
            if runner is not None:
                future: Future[Any] = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
                try:
                    future.result(timeout)
                except Exception:  # a slow stream must not keep the caller from stopping
                    pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Return counters per key (alias or masked key) and a "total" entry.

        Each has requests, ok, rate_limited, unauthorized, quota, server_errors,
        disconnects, bad_requests, client_aborts, tokens, prompt_tokens,
        completion_tokens, max_in_flight and peak_rpm (most requests admitted in
        any 60 s).
        """
        return self._server.state.stats()

    def batch_stats(self) -> dict[str, Any]:
        """Return what the batch APIs saw: batches_created (and openai_batches, anthropic_batches,
        by_key), batch_lines, files_uploaded, batches_cancelled, batches_deleted."""
        return self._server.batches.stats()

    def reset_stats(self) -> None:
        """Zero all counters (rate-limit buckets and quotas are kept)."""
        self._server.state.reset_stats()

    def revoke(self, key: str) -> None:
        """Make ``key`` get 401 from its next request on; thread-safe while serving."""
        self._server.state.revoke(key)

    def set_profile(self, key: str, profile: KeyProfile) -> None:
        """Add or replace a key's profile while serving; thread-safe."""
        self._server.state.set_profile(key, profile)


_default: Simulator | None = None
_default_lock = threading.Lock()


def default_simulator() -> Simulator:
    """Return the process-wide simulator with `SimConfig` defaults, started on first use."""
    global _default
    with _default_lock:
        if _default is None or not _default.running:
            _default = Simulator(SimConfig()).start()
        return _default


def serve_forever(config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve in the foreground until interrupted (for ``nbllm sim``); prints the base URL."""
    server = SimServer(config or SimConfig())

    async def main() -> None:
        """Start, announce the URL, and wait until cancelled by Ctrl-C."""
        runner, bound = await _start_site(server, host, port)
        base = f"http://{host}:{bound}"
        print(f"nbllm simulator listening on {base}", flush=True)
        print(f"  OpenAI:    base_url={base}/v1", flush=True)
        print(f"  Anthropic: base_url={base}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
