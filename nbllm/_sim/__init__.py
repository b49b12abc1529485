"""A local OpenAI- and Anthropic-compatible LLM server with deterministic answers, limits and faults.

Example::

    from nbllm._sim import Simulator, SimConfig, KeyProfile

    with Simulator(SimConfig(keys={"sk-a": KeyProfile(alias="a", rpm=60)})) as sim:
        ...  # point an OpenAI client at sim.base_url + "/v1", an Anthropic one at sim.base_url
"""

from __future__ import annotations

from ._config import Faults, KeyProfile, SimConfig
from ._runner import Simulator, default_simulator, serve_forever

__all__ = ["Faults", "KeyProfile", "SimConfig", "Simulator", "default_simulator", "serve_forever"]
