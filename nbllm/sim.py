"""The embedded simulator: an OpenAI- and Anthropic-compatible server on a loopback port.

    from nbllm.sim import Simulator, SimConfig, KeyProfile, Faults
    with Simulator(SimConfig(keys={"sk-a": KeyProfile(rpm=60)})) as sim:
        llm = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="sk-a")

Standalone: ``nbllm sim --port 8765``. With no key configured, ``nbllm.LLM()`` starts one on demand.

Besides chat it honours structured outputs (OpenAI ``response_format``, Anthropic forced
tools) and serves both providers' batch APIs; see `SimConfig`, `Faults` and
`Simulator.batch_stats`.
"""

from __future__ import annotations

from ._sim import (
    Faults,
    KeyProfile,
    SimConfig,
    Simulator,
    default_simulator,
    serve_forever,
)

__all__ = ["Faults", "KeyProfile", "SimConfig", "Simulator", "default_simulator", "serve_forever"]
