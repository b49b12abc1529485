"""The latency benchmark's section of RESULTS.md: the nbllm ÷ oracle headline table, one table per
scenario, and the check that the oracle is as fast as the keys allow. Pure: rows in, ``Section`` out."""

from __future__ import annotations

from typing import Any

from ._common import Headline, Section, Table
from ._latency_model import WINDOW_SECONDS, LatencyScenario

ORACLE_SLACK = 1.05  # the oracle's wall may exceed the ideal policy's on a perfect clock by this much
SHARED_429_BUDGET = 3  # 429s per key in total, for processes sharing keys through Redis


def speed_ratio(oracle: dict[str, Any], row: dict[str, Any]) -> float | None:
    """nbllm ÷ oracle speed = oracle wall ÷ nbllm wall (same items); None when either did not run."""
    if "skipped" in row or "skipped" in oracle or not row.get("wall"):
        return None
    return oracle["wall"] / row["wall"]


def send_ratio(oracle: dict[str, Any], row: dict[str, Any]) -> float | None:
    """The same ratio over the send phase only (first to last admitted request): scheduling alone, free of
    which prompts happened to be sent last and how long those took."""
    mine, theirs = row.get("rates", {}).get("span"), oracle.get("rates", {}).get("span")
    return theirs / mine if mine and theirs else None


def _fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def _key_rates(row: dict[str, Any]) -> str:
    keys = row.get("rates", {}).get("keys", {})
    return ", ".join(f"{alias} {k['rps']:.1f}/{k['limit']:g}" for alias, k in keys.items()) or "—"


def _verdict(scenario: LatencyScenario, target: float | None, row: dict[str, Any], ratio: float | None) -> bool | None:
    if target is None:
        return None
    if ratio is None:
        return False
    met = ratio >= target and row["lost"] == 0
    if scenario.processes > 1:
        met &= max(row["per_key_429"].values(), default=0) <= SHARED_429_BUDGET
    return met


def _scenario_rows(scenario: LatencyScenario, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    mine = [r for r in rows if r["scenario"] == scenario.code]
    return mine[0], mine[1:]


def _targets(scenario: LatencyScenario) -> dict[str, float | None]:
    return {v.label: v.target for v in scenario.variants} | \
        {f"nbllm × {scenario.processes} processes, shared pool (Redis)": scenario.variants[0].target}


def headline_table(scenarios: list[LatencyScenario], rows: list[dict[str, Any]]) -> tuple[Table, list[Headline]]:
    table = Table(["scenario", "nbllm run", "oracle wall (s)", "nbllm wall (s)", "nbllm ÷ oracle speed",
                   "send phase only", "lost", "429s", "target"], [],
                  "**nbllm ÷ oracle** (oracle wall ÷ nbllm wall for the same prompts; 1.0 = as fast as perfect "
                  "knowledge of the keys allows, above 1.0 only by hedging or by luck in which prompts are sent "
                  "last — see the send-phase column). 429s as counted by the simulator:")
    headlines = []
    for scenario in scenarios:
        oracle, others = _scenario_rows(scenario, rows)
        targets = _targets(scenario)
        for row in others:
            target = targets.get(row["system"])
            goal = f"≥ {target:g}" if target else "reference"
            if "skipped" in row:
                table.rows.append([f"{scenario.code}. {scenario.title}", row["system"], f"{oracle['wall']:.1f}",
                                   "—", "skipped", "—", "—", "—", goal])
                if target:
                    headlines.append(Headline(f"({scenario.code}) {row['system']}: ≥ {target:g} of the oracle — "
                                              f"{row['skipped']}", False))
                continue
            ratio = speed_ratio(oracle, row)
            sending = send_ratio(oracle, row)
            table.rows.append([f"{scenario.code}. {scenario.title}", row["system"], f"{oracle['wall']:.1f}",
                               f"{row['wall']:.1f}", f"**{ratio:.2f}**", _fmt(sending), row["lost"], _429s(scenario, row),
                               goal])
            headlines.append(Headline(
                f"({scenario.code}) {scenario.title} — {row['system']}: {ratio:.2f} of the oracle's speed "
                f"({row['wall']:.1f} s vs {oracle['wall']:.1f} s; send phase alone {_fmt(sending)}), lost {row['lost']}, "
                f"{_429s(scenario, row)} 429s"
                + (f" (budget ≤ {SHARED_429_BUDGET} per key)" if scenario.processes > 1 else ""),
                _verdict(scenario, target, row, ratio)))
    return table, headlines


def _429s(scenario: LatencyScenario, row: dict[str, Any]) -> str:
    if scenario.processes <= 1 or not row.get("per_key_429"):
        return str(row["rate_limited"])
    return f"{row['rate_limited']} (" + "/".join(str(v) for v in row["per_key_429"].values()) + " per key)"


def scenario_table(scenario: LatencyScenario, rows: list[dict[str, Any]]) -> Table:
    oracle, _ = _scenario_rows(scenario, rows)
    keys = ", ".join(f"{k.alias} {k.rps:g} rps" + (f" ({k.dead})" if k.dead else "") for k in scenario.keys)
    table = Table(["system", "wall (s)", "items/s", "÷ oracle", "send phase (s)", "lost", "429s", "peak in flight",
                   "achieved rps / limit per live key", "note"], [],
                  f"**{scenario.code}. {scenario.title}** — {oracle['items']} prompts; keys {keys}; lognormal latency "
                  f"median {scenario.median:g} s, σ {scenario.sigma:g}"
                  + (f"; {scenario.stall:.0%} of requests stalled {scenario.stall_seconds:g} s" if scenario.stall else "")
                  + (f"; {scenario.error_500:.0%} HTTP 500" if scenario.error_500 else "") + ":")
    for row in [r for r in rows if r["scenario"] == scenario.code]:
        if "skipped" in row:
            table.rows.append([row["system"], "—", "—", "—", "—", "—", "—", "—", "—", row["skipped"]])
            continue
        ratio = speed_ratio(oracle, row)
        table.rows.append([row["system"], f"{row['wall']:.1f}", f"{row['ok'] / row['wall']:.1f}", _fmt(ratio),
                           f"{row['rates']['span']:.1f}", row["lost"], _429s(scenario, row), row["max_in_flight"],
                           _key_rates(row), row.get("note", "")])
    return table


def oracle_table(scenarios: list[LatencyScenario], rows: list[dict[str, Any]],
                 shares: dict[str, str]) -> tuple[Table, Headline]:
    table = Table(["scenario", "oracle wall (s)", "ideal wall (s)", "oracle ÷ ideal time", "ideal: last send (s)",
                   "items / rate + median (s)", "oracle 429s", "oracle requests (HTTP status: count)"], [],
                  "**Is the oracle as fast as the keys allow?** The ideal is the oracle's own policy on a perfect "
                  "clock: each prompt in order at the first slot the buckets allow (first burst included), answered "
                  "after the latency the simulator draws for it (its pure function). The oracle should be within "
                  f"{ORACLE_SLACK:.2f}× of it and see no 429s:")
    ok = True
    for scenario in scenarios:
        oracle, _ = _scenario_rows(scenario, rows)
        ideal = oracle["ideal"]
        slower = oracle["wall"] / ideal["wall"]
        ok &= oracle["rate_limited"] == 0 and oracle["lost"] == 0 and slower <= ORACLE_SLACK
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted((oracle.get("statuses") or {}).items()))
        shared = f" (the run of {shares[scenario.code]})" if scenario.code in shares else ""
        table.rows.append([f"{scenario.code}{shared}", f"{oracle['wall']:.1f}", f"{ideal['wall']:.1f}",
                           f"{slower:.3f}", f"{ideal['sends']:.1f}", f"{ideal['simple']:.1f}",
                           oracle["rate_limited"], statuses])
    headline = Headline(f"the oracle is a sound reference: 0 429s, 0 lost and within {ORACLE_SLACK:.2f}× of the ideal "
                        "wall time in every scenario", ok)
    return table, headline


def latency_section(scenarios: list[LatencyScenario], rows: list[dict[str, Any]], quick: bool, seconds: float,
                    shares: dict[str, str]) -> Section:
    summary, headlines = headline_table(scenarios, rows)
    check, oracle_headline = oracle_table(scenarios, rows, shares)
    tables = [summary] + [scenario_table(s, rows) for s in scenarios] + [check]
    intro = (
        "Real LLM calls take seconds, with a heavy tail. Every scenario runs the **oracle** — plain aiohttp, "
        "unlimited concurrency, told every key's true limits and which keys are dead, a mirror of each key's "
        "buckets, each request on the live key that admits it soonest, no hedging, a 500 retried at once — and "
        "nbllm with the settings a user gets (`llm.map(prompts)`, default concurrency, store on, a `KeyPool` of "
        "every key, dead ones included), each in a fresh interpreter against a fresh simulator in its own process "
        "(same seed: each prompt's first answer takes the same time in every run). "
        + ("QUICK mode: fewer prompts. " if quick else "")
    )
    notes = [
        f"The simulator's buckets hold {WINDOW_SECONDS:g} s of each key's limit (the first burst); latency is "
        "lognormal per prompt and attempt (`SimConfig.ttft_sigma`), stalls are `Faults.stall`; answers are not "
        "streamed (`llm.map` sends non-stream requests).",
        "Send phase: from the first to the last request the keys admitted (the simulator's counts, sampled every "
        "0.1 s). The wall time adds the latency of the last prompts sent, and each prompt's latency is fixed, so a "
        "client that happens to send its slowest prompts earlier finishes sooner: where nbllm's order differs from "
        "the oracle's (E: four processes, each at its own pace) the wall ratio can tip either way by a few percent; "
        "the send-phase ratio compares the scheduling alone.",
        "Achieved rps per key: requests the key admitted minus its first burst (one bucket), over the span from "
        "the first to the last admitted request of the run — the honest steady rate; the burst alone would let a "
        "short run look faster than the limit. Peak in flight is the simulator's count.",
        "Dead keys: `revoked` answers 401, `no-quota` answers 429 insufficient_quota from its first request. The "
        "oracle never sends to them; nbllm learns it (those 401s/429s are not rate-limit 429s and are not "
        "counted above).",
        "E: the oracle is one process sending the four processes' prompts in turn; nbllm runs four processes "
        "(`benchmarks/bench_shared.py`'s workers: store off, default concurrency, limits not told) started "
        "together, timed from the common start to the last answer in any of them.",
        "D: the ideal wall ignores the 500s (the simulator rolls them by arrival order, not per prompt), so "
        "it is a little optimistic there. Hedging (on by default): once nothing is left to start, a request "
        "that has run past its key's p95 is raced on another key, at most 5 % of the batch; `hedge=False` is "
        "the same client without it; the note says how many answers had a hedge beside them. Hedges go out "
        "after the last item started, so with hedging the send phase (and the achieved rps, over that span) "
        "includes them and looks slower than the scheduling was: compare the `hedge=False` rows for that "
        "(A and D run both).",
    ]
    data = {"rows": rows, "scenarios": [s.code for s in scenarios]}
    return Section("latency", "7. LLM-like latency: nbllm ÷ oracle", intro, [oracle_headline] + headlines, tables,
                   notes, data, seconds)
