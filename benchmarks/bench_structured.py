"""Structured answers with ~15 % broken JSON: correct items and extra requests — the seed, instructor, nbllm.

Every system gets the same prompts (the key-pool seed's arithmetic template) from the same simulator in
another process, with ``Faults(broken_json=0.15)`` — truncated, wrong type, missing field, or prose around
a single-quoted dict, whichever the request's mode allows (a strict schema can only be cut short) — and
the simulator's default accuracy (1.5 % wrong results, 1.5 % prose).

- **the seed's parse-and-count**: plain requests; its ``re_parse_json`` (a regex and ``json.loads``) and
  ``int(result)``; a broken or wrong answer is lost (``except_cnt``, ``not_equal``, or an exception).
- **instructor** (``Mode.JSON_SCHEMA``, ``max_retries=3``) with the same validating model, run in its
  own virtual environment (see ``_instructor_client``), when it installs from the package index.
- **nbllm**: ``await llm.amap(prompts, schema=Checked)`` (``_arith_model.Checked`` checks the result too),
  and once against a server that refuses ``response_format`` (instructions in the prompt instead).

Requests are counted by the simulator; extra requests = requests − prompts.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ._arith_model import Checked
from ._common import OUT_DIR, ROOT, Headline, Section, SimProcess, Table, arithmetic_prompts

BROKEN = 0.15
INSTRUCTOR = "instructor==1.17.0"
_VENV = OUT_DIR / "instructor-venv"


def _sim_config(**extra: Any) -> Any:
    from nbllm.sim import Faults, SimConfig

    return SimConfig(ttft=0.02, ttft_jitter=0.0, tokens_per_second=0.0, faults=Faults(broken_json=BROKEN), **extra)


# ---- the seed: parse and count -------------------------------------------------------------------------
def _seed_parse(text: str) -> dict | None:
    """The seed's ``re_parse_json``: the first ``{...}`` (non-greedy), then ``json.loads``."""
    match = re.search(r"\{.*?\}", text, re.DOTALL)
    return json.loads(match.group(0)) if match else None


def _seed_score(text: str) -> int | None:
    try:
        parsed = _seed_parse(text)
        return None if parsed is None or parsed.get("result") is None else int(parsed["result"])
    except Exception:  # noqa: BLE001 - the seed prints these and counts them nowhere: lost
        return None


async def _seed(url: str, prompts: list[str], concurrency: int) -> list[int | None]:
    import openai

    client, gate = openai.AsyncOpenAI(base_url=url, api_key="sk-bench-seed"), asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> int | None:
        async with gate:
            answer = await client.chat.completions.create(model="gpt-4o-mini",
                                                          messages=[{"role": "user", "content": prompt}])
        return _seed_score(answer.choices[0].message.content or "")

    try:
        return await asyncio.gather(*(one(p) for p in prompts))
    finally:
        await client.close()


# ---- instructor, in its own environment ----------------------------------------------------------------
def _instructor_python() -> tuple[Path | None, str]:
    """The instructor venv's interpreter (created on first use), or None and why it is not there."""
    python = _VENV / "bin" / "python"
    if python.exists():
        return python, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", INSTRUCTOR], check=True, capture_output=True,
                       text=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        return None, f"{INSTRUCTOR} did not install: {detail.strip().splitlines()[-1] if detail.strip() else error}"
    return python, ""


def _instructor(url: str, prompts: list[str], concurrency: int) -> dict[str, Any]:
    python, why = _instructor_python()
    if python is None:
        return {"error": why}
    args = json.dumps({"url": url, "prompts": prompts, "concurrency": concurrency})
    proc = subprocess.run([str(python), "-m", "benchmarks._instructor_client"], input=args, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT:"):
            return json.loads(line.removeprefix("BENCH-RESULT:"))
    return {"error": f"instructor's client failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}


# ---- nbllm ----------------------------------------------------------------------------------------------
def _nbllm(url: str, prompts: list[str], concurrency: int) -> tuple[list[int | None], Any]:
    import nbllm

    llm = nbllm.LLM("gpt-4o-mini", base_url=url, api_key="sk-bench-nbllm", store=False, progress="none",
                    concurrency=concurrency)
    rows = llm.map(prompts, schema=Checked)
    return [r.parsed.result if r.ok else None for r in rows], rows.summary()


# ---- the run ----------------------------------------------------------------------------------------
def _measure(name: str, config: Any, client: Any, prompts: list[str], labels: list[int]) -> dict[str, Any]:
    with SimProcess(config) as sim:
        url = sim.base_url + "/v1"
        start = time.perf_counter()
        outcome = client(url)
        seconds = time.perf_counter() - start
        stats = sim.stats()["total"]
    if isinstance(outcome, dict) and "error" in outcome:
        return {"system": name, "error": outcome["error"]}
    results = outcome["results"] if isinstance(outcome, dict) else outcome
    correct = sum(r == label for r, label in zip(results, labels))
    wrong = sum(r is not None and r != label for r, label in zip(results, labels))
    return {"system": name, "correct": correct, "wrong": wrong, "lost": len(prompts) - correct - wrong,
            "requests": stats["requests"], "extra": stats["requests"] - len(prompts), "seconds": seconds,
            **({"version": outcome["version"]} if isinstance(outcome, dict) and "version" in outcome else {})}


def run(quick: bool = False) -> Section:
    started = time.perf_counter()
    n, concurrency = (300, 32) if quick else (2000, 64)
    prompts, labels = arithmetic_prompts(n, seed=13)
    rows = [
        _measure("the seed's parse-and-count", _sim_config(), lambda url: asyncio.run(_seed(url, prompts, concurrency)),
                 prompts, labels),
        _measure("instructor (JSON_SCHEMA, max_retries=3)", _sim_config(),
                 lambda url: _instructor(url, prompts, concurrency), prompts, labels),
        _measure("nbllm, schema=Checked", _sim_config(), lambda url: _nbllm(url, prompts, concurrency)[0],
                 prompts, labels),
        _measure("nbllm, server without response_format", _sim_config(response_format="reject"),
                 lambda url: _nbllm(url, prompts, concurrency)[0], prompts, labels),
    ]
    return _section(rows, n, time.perf_counter() - started)


def _section(rows: list[dict[str, Any]], n: int, seconds: float) -> Section:
    table = Table(["system", "correct", "wrong", "lost", "requests", "extra requests", "wall s"],
                  [[r["system"], f"{r['correct']}/{n}", r["wrong"], r["lost"], r["requests"],
                    f"{r['extra']} (+{100 * r['extra'] / n:.0f} %)", round(r["seconds"], 1)]
                   if "error" not in r else [r["system"], "—", "—", "—", "—", "—", r["error"]] for r in rows])
    seed, instructor, nbllm_row, fallback = rows
    headlines = [Headline(f"{BROKEN:.0%} broken answers: nbllm returned {nbllm_row['correct']}/{n} correct with "
                          f"{nbllm_row['extra']} extra requests; without response_format {fallback['correct']}/{n} "
                          f"({fallback['extra']} extra)", nbllm_row["correct"] == n and fallback["correct"] == n),
                 Headline(f"the seed's parse-and-count kept {seed['correct']}/{n} ({seed['lost']} lost, "
                          f"{seed['wrong']} wrong)", None)]
    if "error" in instructor:
        headlines.append(Headline(f"instructor not measured: {instructor['error']}", None))
    else:
        headlines.append(Headline(f"instructor {instructor.get('version', '')}: {instructor['correct']}/{n} correct "
                                  f"with {instructor['extra']} extra requests", None))
    notes = ["instructor's lost items are answers cut off at the token limit: it raises IncompleteOutputException "
             "on finish_reason=length instead of re-asking; nbllm re-asks them (and retries once with a larger "
             "max_tokens when a limit it sent caused the cut).",
             "The same 15 % of first answers break in every row; the kinds differ: under a strict schema the simulator, "
             "like OpenAI, can only cut an answer short, while plain requests (the seed, the fallback row) get every "
             "kind. Extra requests are those broken answers plus the 1.5 % wrong results the validator rejects.",
             "Wall times are for information: the seed and instructor use the openai SDK, and instructor's include "
             "starting its interpreter.",
             "instructor runs in its own virtual environment: 1.17.0 pins jiter<0.15, which would move openai "
             "back to 3.3.0 next to nbllm's test dependencies."]
    return Section("structured", "8. Structured answers with broken JSON", __doc__.split("\n\n")[1], headlines,
                   [table], notes, {"rows": rows, "n": n}, seconds)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv).markdown())
