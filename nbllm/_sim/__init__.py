"""A local OpenAI- and Anthropic-compatible LLM server with deterministic answers, limits and faults.

Example::

    from nbllm._sim import Simulator, SimConfig, KeyProfile

    with Simulator(SimConfig(keys={"sk-a": KeyProfile(alias="a", rpm=60)})) as sim:
        ...  # point an OpenAI client at sim.base_url + "/v1", an Anthropic one at sim.base_url

What it serves:

- Chat: ``POST /v1/chat/completions`` and ``POST /v1/messages``, streamed or not.
- Structured outputs: OpenAI ``response_format`` (``json_schema``, strict or not, and
  ``json_object``) answers JSON that fits the schema; an Anthropic forced tool
  (``tool_choice`` ``tool`` / ``any``) answers a ``tool_use`` block, streamed as
  ``input_json_delta`` pieces; Anthropic ``output_config.format`` answers JSON text.
  Arithmetic prompts fill ``expression`` / ``result`` fields meaningfully, other fields
  get plausible values by name. `SimConfig.response_format` plays a server that
  ignores or rejects the parameter.
- Broken JSON: `Faults.broken_json` (and ``[[sim:broken_json]]`` in a prompt) truncates,
  mistypes, drops a field or writes prose around single-quoted JSON; a re-ask (the
  conversation with the bad answer and the error) rolls again at
  `Faults.broken_json_on_reask`.
- Batches: OpenAI ``/v1/files`` + ``/v1/batches`` and Anthropic ``/v1/messages/batches``,
  in memory, taking `SimConfig.batch_seconds`, each line answered as online; per-line
  errors (`Faults.batch_line_error_rate`), expiry (`Faults.batch_expire_rate`,
  `SimConfig.batch_expire_after`), cancel; `Simulator.batch_stats()` counts them.
"""

from __future__ import annotations

from ._config import Faults, KeyProfile, SimConfig
from ._runner import Simulator, default_simulator, serve_forever

__all__ = ["Faults", "KeyProfile", "SimConfig", "Simulator", "default_simulator", "serve_forever"]
