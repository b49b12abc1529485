"""Shared fixtures: an isolated environment (no real keys, a temporary store) and simulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbllm._call import reset_defaults
from nbllm._sim import KeyProfile, SimConfig, Simulator

KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "API_KEY", "BASE_URL", "OPENAI_BASE_URL",
            "ANTHROPIC_BASE_URL", "NBLLM_MODEL", "NBLLM_RPM", "NBLLM_TPM", "NBLLM_SHARED_POOL",
            "NBLLM_SHARED_NAMESPACE")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch) -> Iterator[None]:
    """No key from the developer's environment or .env leaks into a test; each test has its own store."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBLLM_STORE", str(tmp_path / "store.sqlite3"))
    monkeypatch.chdir(tmp_path)  # no .env from the checkout is found
    reset_defaults()
    yield
    reset_defaults()


@pytest.fixture(scope="session")
def fast_sim() -> Iterator[Simulator]:
    """A simulator that answers at once and accepts any key."""
    with Simulator(SimConfig(ttft=0.0, tokens_per_second=0.0)) as sim:
        yield sim


@pytest.fixture(scope="session")
def streaming_sim() -> Iterator[Simulator]:
    """A simulator that streams at a human pace (first token after 50 ms, 200 tokens/s)."""
    with Simulator(SimConfig(ttft=0.05, ttft_jitter=0.0, tokens_per_second=200.0)) as sim:
        yield sim


@pytest.fixture
def make_sim():
    """``make_sim(**{key: KeyProfile(...)}, **config)``: a simulator that knows exactly these keys (others
    get 401), answering at once unless configured otherwise; use it as a context manager."""

    def make(keys: dict[str, KeyProfile], **config) -> Simulator:
        config.setdefault("ttft", 0.0)
        config.setdefault("tokens_per_second", 0.0)
        return Simulator(SimConfig(keys=dict(keys), **config))

    return make


# ---- fixtures added by the Jupyter tests below this line ----------------------------------------------
