"""The latency benchmark's scenarios and the pure arithmetic around them: simulator settings, what the
oracle is told, the ideal wall time, and each key's achieved rate from the simulator's samples.

    scenario = SCENARIOS[0]
    config = scenario.sim_config()                    # nbllm.sim.SimConfig: limits, latency, faults
    ideal = ideal_wall(scenario, prompts)             # the same policy as the oracle on a perfect clock
    rates = achieved_rates(samples, scenario)         # {alias: requests/s with the first burst taken out}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._oracle import OracleKey, ideal_send_times

WINDOW_SECONDS = 1.0
"""The simulator's buckets hold one second of each key's limit: a real burst, but a small one."""
MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class LatencyKey:
    """One key of a scenario: requests per second, and why it is dead if it is ("revoked", "quota")."""

    alias: str
    rps: float
    dead: str = ""

    @property
    def key(self) -> str:
        return f"sk-latency-{self.alias}-{self.alias * 8}"[:40]

    @property
    def rpm(self) -> int:
        return round(self.rps * 60)


@dataclass(frozen=True)
class Variant:
    """One nbllm row of a scenario: a label and extra ``LLM``/``amap`` settings (empty: the defaults)."""

    label: str
    llm: dict[str, Any] = field(default_factory=dict)
    amap: dict[str, Any] = field(default_factory=dict)
    target: float | None = 0.95  # nbllm ÷ oracle this row must reach; None: for reference only


@dataclass(frozen=True)
class LatencyScenario:
    code: str
    title: str
    keys: tuple[LatencyKey, ...]
    items: int
    quick_items: int
    median: float  # seconds, the simulator's lognormal median latency
    sigma: float = 0.5
    told: bool = True  # nbllm is given each key's rpm
    stall: float = 0.0
    stall_seconds: float = 10.0
    error_500: float = 0.0
    variants: tuple[Variant, ...] = (Variant("nbllm (defaults)"),)
    processes: int = 1  # > 1: that many nbllm processes share the keys through Redis
    seed: int = 11

    @property
    def live(self) -> tuple[LatencyKey, ...]:
        return tuple(k for k in self.keys if not k.dead)

    @property
    def rate(self) -> float:
        """Requests per second all live keys allow together."""
        return sum(k.rps for k in self.live)

    def sim_config(self) -> Any:
        from nbllm.sim import Faults, KeyProfile, SimConfig

        profiles = {k.key: KeyProfile(alias=k.alias, rpm=k.rpm, revoked=k.dead == "revoked",
                                      quota_tokens=0 if k.dead == "quota" else None) for k in self.keys}
        faults = Faults(error_500=self.error_500, stall=self.stall, stall_seconds=self.stall_seconds)
        return SimConfig(keys=profiles, ttft=self.median, ttft_sigma=self.sigma, tokens_per_second=0,
                         window_seconds=WINDOW_SECONDS, faults=faults, seed=self.seed, arithmetic_accuracy=(1, 0, 0))

    def oracle_keys(self) -> list[OracleKey]:
        """Everything true about the keys: limits exactly as the simulator enforces them, and which are dead."""
        return [OracleKey(k.key, k.alias, rpm=k.rpm, dead=bool(k.dead)) for k in self.keys]

    def nbllm_keys(self, base_url: str | None = None) -> list[dict[str, Any]]:
        """What a user configures: every key, with its limit when the scenario tells it (and ``base_url``)."""
        where = {"base_url": base_url} if base_url else {}
        return [{"key": k.key, "alias": k.alias, "rpm": k.rpm if self.told else None, **where} for k in self.keys]


def first_latency(config: Any, prompt: str) -> float:
    """Seconds the simulator takes to answer ``prompt`` the first time (its pure draw; no 500s)."""
    from nbllm._sim._hashing import stable_hash
    from nbllm._sim._pacing import draw_latency, nonstream_delay, plan_pacing

    pacing = plan_pacing(config, 1.0, 0.5, 0, draw=draw_latency(config, stable_hash(prompt), 1))
    return nonstream_delay(config, pacing, 0, 1.0)


def ideal_wall(scenario: LatencyScenario, prompts: list[str]) -> dict[str, float]:
    """The oracle's policy on a perfect clock: each prompt sent, in order, at the first slot the keys allow,
    answered after its own first-attempt latency. ``wall`` is the last answer; ``sends`` the last send;
    ``simple`` the textbook bound, items / rate + median latency, which ignores the first burst and the tail."""
    config = scenario.sim_config()
    sends = ideal_send_times(scenario.oracle_keys(), WINDOW_SECONDS, len(prompts))
    finish = [t + first_latency(config, p) for t, p in zip(sends, prompts)]
    return {"wall": max(finish), "sends": sends[-1], "simple": len(prompts) / scenario.rate + scenario.median}


def achieved_rates(samples: list[tuple[float, dict[str, int]]], scenario: LatencyScenario) -> dict[str, Any]:
    """Each live key's requests/s while the client was still sending, with its first burst taken out.

    The span runs from the first admitted request to the last; a key's own bucket (one window of its
    limit) is subtracted, because that burst is there once per run, not per second. A key used at its
    full limit throughout scores its limit.
    """
    active = [(t, counts) for t, counts in samples if counts.get("total", 0) > 0]
    if len(active) < 2:
        return {"span": 0.0, "keys": {}}
    final = active[-1][1]
    start = active[0][0]
    end = next(t for t, counts in active if counts.get("total", 0) >= final.get("total", 0))
    span = max(end - start, 1e-9)
    keys = {}
    for k in scenario.live:
        burst = k.rps * WINDOW_SECONDS
        admitted = final.get(k.alias, 0)
        keys[k.alias] = {"admitted": admitted, "rps": max(0.0, admitted - burst) / span, "limit": k.rps}
    return {"span": span, "keys": keys}


def interleave(lists: list[list[str]]) -> list[str]:
    """One list that takes each list's items in turn: the order in which N equal processes send them."""
    out: list[str] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out
