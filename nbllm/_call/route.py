"""Where an LLM's calls go: its keys, wire format, server and store, resolved from its settings.

``resolve_route(settings)`` turns settings into a ``Route``: the model string resolved to a wire format
and a model name, and the keys — those given (``api_key=``, ``keys=``, ``pool=``), else the pool read
once per process from the environment, else the embedded simulator. With no key configured, nbllm
answers from its simulator (``nbllm.sim``) on a loopback port and says so once, so every example and
notebook runs offline; set a key and the same code talks to a provider.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._client import Target, resolve_model
from .._keys import ApiKey, KeyPool
from .._store import Store, default_store_path

if TYPE_CHECKING:
    from .settings import LLMSettings

__all__ = ["DefaultRoute", "Route", "default_model", "default_route", "reset_defaults", "resolve_route",
           "resolve_store", "shared_store"]


@dataclass(frozen=True)
class Route:
    """Resolved settings: the target of every call, the model name sent, and the label that keeps one
    server's cached answers apart from another's (``"simulator"``, the base URL, or ``"default"``)."""

    target: Target
    model: str
    endpoint: str


def resolve_route(settings: LLMSettings) -> Route:
    """Keys, wire format, base URL and model of ``settings`` (see module docstring)."""
    pool, route = settings.explicit_pool, None
    if pool is None:
        route = default_route(simulate=False)
        route = None if route is not None and route.simulated else route  # None: no key anywhere
    model_string = settings.model or (default_model(route) if pool is None else "gpt-4o-mini")
    wire_format, model, prefix_url = resolve_model(model_string, settings.provider)
    explicit_url = settings.base_url or prefix_url
    if pool is None and route is None:
        if explicit_url:  # no key anywhere, but a server was named: a local one that needs no key
            pool = KeyPool([ApiKey("", alias="no-key")])
        else:
            route = default_route()
    if route is not None:
        pool = route.pool
    base_url = explicit_url or (route.base_url_for(wire_format) if route else None)
    # the cache must not confuse simulator answers with a provider's, nor one server's with another's
    endpoint = "simulator" if route and route.simulated else (explicit_url or "default")
    assert pool is not None
    target = Target(pool, wire_format, base_url, settings.auth_header, settings.retry, settings.timeouts)
    return Route(target, model, endpoint)


def resolve_store(setting: Store | str | Path | bool | None) -> Store | None:
    """The store a ``store=`` setting names: the shared one (None/True), none (False), a path or a Store."""
    if setting is False:
        return None
    if setting is None or setting is True:
        return shared_store()
    if isinstance(setting, Store):
        return setting
    return Store(setting)

_lock = threading.Lock()
_route: DefaultRoute | None = None
_store: Store | None = None
_store_env: tuple[str | None, str | None] | None = None
_SIM_KEY = "sim-local-key"


@dataclass
class DefaultRoute:
    pool: KeyPool
    simulated: bool
    sim_base_url: str | None = None

    def base_url_for(self, wire_format: str) -> str | None:
        if self.sim_base_url is None:
            return None
        return self.sim_base_url + ("/v1" if wire_format == "openai" else "")


def default_route(simulate: bool = True) -> DefaultRoute | None:
    """The pool shared by every ``LLM`` that was given no keys (created on first use).

    Keys from the environment if there are any; else the simulator, or None with ``simulate=False``.
    """
    global _route
    with _lock:
        if _route is None:
            pool = KeyPool.from_env()
            if len(pool):
                _route = DefaultRoute(pool, simulated=False)
            elif simulate:
                _route = _simulator_route()
        return _route


def _simulator_route() -> DefaultRoute:
    from .._sim import default_simulator

    simulator = default_simulator()
    pool = KeyPool([{"key": _SIM_KEY, "alias": "simulator"}])
    pool.simulated = True
    print(
        f"nbllm: no API key configured, so answers come from the embedded simulator at {simulator.base_url}. "
        "Set OPENAI_API_KEY / ANTHROPIC_API_KEY (or API_KEY + BASE_URL in .env) to use a real provider.",
        file=sys.stderr,
    )
    return DefaultRoute(pool, simulated=True, sim_base_url=simulator.base_url)


def default_model(route: DefaultRoute | None) -> str:
    """``NBLLM_MODEL``, else a small model of the provider the keys belong to."""
    if os.environ.get("NBLLM_MODEL"):
        return os.environ["NBLLM_MODEL"]
    providers = {k.provider for k in route.pool.keys} if route else set()
    if providers == {"anthropic"}:
        return "anthropic:claude-haiku-4-5"
    return "gpt-4o-mini"


def shared_store() -> Store:
    """The store every LLM without ``store=`` writes to (``NBLLM_STORE`` or the user cache folder).

    Follows ``NBLLM_STORE`` if it changes while the process runs.
    """
    global _store, _store_env
    # checked on every call, so it must be cheap: compare the variables, not the (created) path
    env = (os.environ.get("NBLLM_STORE"), os.environ.get("XDG_CACHE_HOME"))
    store = _store
    if store is not None and env == _store_env:
        return store
    with _lock:
        path = default_store_path()
        if _store is None or _store.path != path:
            _store = Store(path)
        _store_env = env
        return _store


def reset_defaults() -> None:
    """Forget the default pool and store (tests, or after changing the environment)."""
    global _route, _store, _store_env
    with _lock:
        _store_env = None
        _route = None
        if _store is not None:
            _store.close()
        _store = None
