"""Batches over real sockets: per-key limits, bad keys, faults — zero lost items, zero needless 429s."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nbllm
from nbllm import KeyPool
from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator
from nbllm._store.store import Store

KEYS = {
    "sk-test-alpha-0000000001": KeyProfile(alias="alpha", rpm=1500),
    "sk-test-bravo-0000000002": KeyProfile(alias="bravo", rpm=3000),
    "sk-test-charlie-000000003": KeyProfile(alias="charlie", rpm=6000),
}


def pool_for(sim: Simulator, keys: dict[str, KeyProfile], tell_limits: bool = True) -> KeyPool:
    return KeyPool([
        {"key": k, "alias": p.alias, "base_url": sim.base_url + "/v1", "rpm": p.rpm if tell_limits else None}
        for k, p in keys.items()
    ])


def arithmetic(n: int, offset: int = 0) -> list[str]:
    return [f'What is {i} + {i + offset}? Answer as JSON {{"result": ?}}' for i in range(n)]


def run_batch(sim: Simulator, keys: dict[str, KeyProfile], n: int, tell_limits: bool = True, **llm_kw):
    pool = pool_for(sim, keys, tell_limits)
    llm = nbllm.LLM("gpt-4o-mini", pool=pool, concurrency=llm_kw.pop("concurrency", 64), **llm_kw)
    results = llm.map(arithmetic(n), progress="none")
    return llm, pool, results


def sim_with(keys, **config) -> Simulator:
    config.setdefault("ttft", 0.0)
    config.setdefault("tokens_per_second", 0.0)
    config.setdefault("window_seconds", 2.0)  # strict: a burst of more than 2 s worth gets 429
    config.setdefault("arithmetic_accuracy", (1.0, 0.0, 0.0))  # so each answer proves its prompt's order
    return Simulator(SimConfig(keys=keys, **config))


def assert_all_answered(results, n: int) -> None:
    assert len(results) == n and all(r.ok for r in results), [r for r in results if not r.ok][:3]
    for i, r in enumerate(results):
        assert f'"result": {2 * i}' in r.text, (i, r.text)


def test_mixed_limits_zero_429s_and_work_in_proportion_to_limits():
    with sim_with(KEYS) as sim:
        _, pool, results = run_batch(sim, KEYS, 420)
        stats = sim.stats()
    assert_all_answered(results, 420)
    assert stats["total"]["rate_limited"] == 0
    counts = pool.counts()
    assert sum(counts.values()) == 420
    assert counts["alpha"] < counts["bravo"] < counts["charlie"]  # proportional, not round robin
    assert counts["charlie"] > 2.5 * counts["alpha"]


def test_unknown_limits_are_learned_from_headers_without_429s():
    with sim_with(KEYS) as sim:
        _, pool, results = run_batch(sim, KEYS, 420, tell_limits=False)
        stats = sim.stats()
    assert_all_answered(results, 420)
    assert stats["total"]["rate_limited"] == 0
    assert [row["rpm"] for row in pool.status()] == [1500, 3000, 6000] and all(row["learned"] for row in pool.status())


def test_limits_without_headers_are_guessed_from_429s_and_nothing_is_lost():
    with sim_with(KEYS, expose_limit_headers=False) as sim:
        _, pool, results = run_batch(sim, KEYS, 420, tell_limits=False)
    assert_all_answered(results, 420)
    limited = [row for row in pool.status() if row["rate_limited"]]
    assert limited and all(row["rpm"] and row["learned"] for row in limited)  # a limit was guessed from the 429s


def test_revoked_key_mid_batch_is_disabled_and_its_work_moves():
    keys = dict(KEYS)
    with sim_with(keys, ttft=0.05) as sim:
        pool = pool_for(sim, keys)
        llm = nbllm.LLM("gpt-4o-mini", pool=pool, concurrency=32)

        async def main():
            batch = llm.amap(arithmetic(300), progress="none")
            task = asyncio.ensure_future(batch)
            while batch.progress.done < 60:  # revoke a third of the way in, while requests are in flight
                await asyncio.sleep(0.005)
            sim.revoke("sk-test-charlie-000000003")
            return await task

        results = asyncio.run(main())
        stats = sim.stats()
    assert_all_answered(results, 300)
    charlie = pool.key_state("charlie")
    assert charlie.disabled and "401" in charlie.disabled
    assert stats["charlie"]["unauthorized"] <= 32  # at most the requests in flight when it was revoked


def test_out_of_quota_key_is_disabled_and_the_batch_goes_on():
    keys = dict(KEYS)
    keys["sk-test-quota-000000001"] = KeyProfile(alias="quota", rpm=3000, quota_tokens=400)
    with sim_with(keys, ttft=0.02) as sim:
        _, pool, results = run_batch(sim, keys, 300)
        stats = sim.stats()
    assert_all_answered(results, 300)
    assert pool.key_state("quota").disabled.startswith("out of quota")
    assert stats["total"]["rate_limited"] == 0


def test_a_slow_key_does_not_set_the_pace():
    keys = {
        "sk-test-slow-0000000002": KeyProfile(alias="slow", latency_scale=25.0),
        "sk-test-fast-0000000003": KeyProfile(alias="fast"),
    }
    with sim_with(keys, ttft=0.02, ttft_jitter=0.0) as sim:
        _, pool, results = run_batch(sim, keys, 400, concurrency=16)
    assert_all_answered(results, 400)
    counts = pool.counts()
    # round robin would give each key 200 and wait on the slow one; the pool sends where capacity is
    assert counts["fast"] > 3 * counts["slow"]


def test_faults_500s_and_disconnects_lose_nothing():
    faults = Faults(error_500=0.05, error_503=0.03, disconnect_mid_stream=0.05, malformed_chunk=0.03, error_in_stream=0.03)
    with sim_with(KEYS, faults=faults, seed=11) as sim:
        _, _, results = run_batch(sim, KEYS, 300, streaming=True)
        stats = sim.stats()
    assert_all_answered(results, 300)
    assert stats["total"]["server_errors"] > 0 and stats["total"]["disconnects"] > 0
    assert stats["total"]["rate_limited"] == 0


def test_every_key_disabled_stops_the_batch_and_keeps_what_finished():
    keys = {"sk-test-only-0000000001": KeyProfile(alias="only", quota_tokens=600)}
    with sim_with(keys) as sim:
        pool = pool_for(sim, keys)
        llm = nbllm.LLM("gpt-4o-mini", pool=pool, concurrency=4)
        with pytest.raises(nbllm.BatchInterrupted, match="rerun") as caught:
            llm.map(arithmetic(200), progress="none")
    kept = [r for r in caught.value.results if r is not None and r.ok]
    assert 10 < len(kept) < 200 and llm.last_results is caught.value.results


def test_results_in_input_order_failures_recorded_not_raised(fast_sim):
    llm = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", api_key="sk-test-order-123456", max_retries=0)
    prompts = ["What is 1 + 1?", "Hi [[sim:500]]", "What is 2 + 2?"]
    results = llm.map(prompts, progress="none")
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, nbllm.ServerError) and "2" in results[0].text


def test_rerun_sends_only_what_is_missing_and_cache_can_be_turned_off(fast_sim):
    llm = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", api_key="sk-test-cache-123456")
    first = llm.map(arithmetic(50), progress="none")
    before = fast_sim.stats()["total"]["requests"]
    again = llm.map(arithmetic(60), progress="none")  # 50 cached + 10 new
    assert fast_sim.stats()["total"]["requests"] - before == 10
    assert [r.text for r in again[:50]] == [r.text for r in first] and all(r.cached for r in again[:50])
    llm.map(arithmetic(5), progress="none", cache=False)
    assert fast_sim.stats()["total"]["requests"] - before == 15
    # identical prompts inside one batch are separate samples, not one cached answer
    dup = llm.map(["Hello, how are you?"] * 3, progress="none")
    assert not any(r.cached for r in dup)


def test_batches_finishing_together_wait_only_for_their_own_rows(fast_sim, tmp_path, capsys):
    """Ten one-prompt batches gathered in one cell (notebook 01): none waits for the others' rows, and
    none says the store is locked by another process when it is only busy with them."""
    llm = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", api_key="sk-test-together-123456",
                    store=tmp_path / "together.sqlite3")

    async def together() -> list:
        return await asyncio.gather(*(llm.agenerate([f"What is {i} + 1?"]) for i in range(10)))

    assert len(asyncio.run(together())) == 10
    assert "still waiting" not in capsys.readouterr().err
    assert llm.store.count() == 10


def test_store_rows_export_and_no_key_anywhere(fast_sim, tmp_path, capsys):
    key = "sk-test-secret-SHOULDNOTLEAK-0123456789"
    store = Store(tmp_path / "scan.sqlite3")
    llm = nbllm.LLM("gpt-4o-mini", base_url=fast_sim.base_url + "/v1", api_key=key, store=store, max_retries=0)
    results = llm.map(arithmetic(20) + ["Hi [[sim:500]]"], progress="text")
    print(llm.pool.status(), repr(llm.pool), repr(llm.pool.keys), results[-1], llm.pool.status()._repr_html_())
    assert store.export_jsonl(tmp_path / "run.jsonl") == 21
    frame = store.to_dataframe()
    assert len(frame) == 21 and set(frame["key_alias"]) == {"key-1"}
    store.close()
    captured = capsys.readouterr()
    blobs = [captured.out, captured.err, (tmp_path / "run.jsonl").read_text()]
    blobs += [p.read_bytes().decode("latin-1") for p in tmp_path.glob("scan.sqlite3*")]
    assert all(key not in blob for blob in blobs)
    assert "sk-…6789" in captured.out


KILL_SCRIPT = textwrap.dedent(
    """
    import os, nbllm
    prompts = [f"What is {i} + {i}? Answer as JSON {{\\"result\\": ?}}" for i in range(int(os.environ["N"]))]
    llm = nbllm.LLM("gpt-4o-mini", base_url=os.environ["SIM"], api_key="sk-test-kill-0123456789", concurrency=8)
    results = llm.map(prompts, progress="none")
    print("DONE", sum(r.ok for r in results))
    """
)


def test_sigkill_mid_batch_then_rerun_sends_only_the_missing(tmp_path):
    n = 240
    with Simulator(SimConfig(ttft=0.04, ttft_jitter=0.0, tokens_per_second=0)) as sim:
        env = {**os.environ, "SIM": sim.base_url + "/v1", "N": str(n), "NBLLM_STORE": str(tmp_path / "kill.sqlite3")}
        child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        store = Store(tmp_path / "kill.sqlite3")
        deadline = time.monotonic() + 60
        while store.count() < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        kept = store.count()
        assert 60 <= kept < n, kept
        before = sim.stats()["total"]["requests"]
        rerun = subprocess.run([sys.executable, "-c", KILL_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0 and f"DONE {n}" in rerun.stdout, rerun.stderr
        sent_again = sim.stats()["total"]["requests"] - before
        clean = nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="sk-test-clean-0123456789", store=False)
        clean_results = clean.map([f'What is {i} + {i}? Answer as JSON {{"result": ?}}' for i in range(n)], progress="none")
    assert sent_again == n - kept
    resumed = {row["item_index"]: row["text"] for row in store.rows() if row["ok"]}
    store.close()
    assert len(resumed) == n
    assert [resumed[i] for i in range(n)] == [r.text for r in clean_results]


def test_ten_thousand_prompts_three_keys_interrupt_and_rerun():
    """The key-pool seed at full size: accurate per-key counts, an interrupt, and a rerun of the rest."""
    keys = {f"sk-test-tenk-{i}-00000000{i}": KeyProfile(alias=f"key-{i}", rpm=60_000) for i in range(3)}
    template = '请将以下表达式的计算结果返回为 JSON 格式：\n{{\n  "expression": "{q}",\n  "result": ?\n}}\n'
    prompts = [template.format(q=f"{i % 97 + 1} + {i % 89 + 1} x {i % 13 + 1}") + f"#{i}" for i in range(10_000)]
    with sim_with(keys, window_seconds=60.0) as sim:
        pool = pool_for(sim, keys)
        llm = nbllm.LLM("gpt-4o-mini", pool=pool, concurrency=64)

        batches = []

        async def interrupted() -> int:
            batch = llm.amap(prompts, progress="none")
            batches.append(batch)
            task = asyncio.ensure_future(batch)
            while batch.progress.done < 3_000:
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return sum(r is not None for r in llm.last_results)

        kept = asyncio.run(interrupted())
        sent_first = sim.stats()["total"]["requests"]
        rerun = llm.amap(prompts, progress="none")
        batches.append(rerun)
        results = asyncio.run(_awaited(rerun))
        sent_second = sim.stats()["total"]["requests"] - sent_first
        stats = sim.stats()
    assert 3_000 <= kept < 10_000
    hedges = sum(batch.progress.hedges for batch in batches)  # the tail of each run may be raced on another key
    assert sent_second <= 10_000 - kept + 64 + hedges  # only the missing (plus requests cut off in flight)
    assert len(results) == 10_000 and all(r.ok for r in results)
    # every answer kept at the interrupt is served from the store (and those that landed as it stopped)
    assert sum(r.cached for r in results) >= kept
    counts = pool.counts()
    # the seed's cnt: every item answered once per key, plus hedges whose losing attempt also finished
    # (its key did serve it, so its count says so)
    assert 10_000 <= sum(counts.values()) <= 10_000 + hedges, (counts, hedges)
    # the server also answered the few requests that the interrupt cut off before their answer arrived
    assert all(0 <= stats[alias]["ok"] - counts[alias] <= 64 for alias in counts)


async def _amap(llm, prompts):
    return await llm.amap(prompts, progress="none")


async def _awaited(batch):
    return await batch


def test_default_concurrency_follows_the_keys_limits_and_latency():
    """3 keys of 10/s, answers after ~1 s: ~30 in flight needed (Little's law). With the default
    (concurrency=None) the batch keeps that many in flight; concurrency=8 still caps it."""
    keys = {f"sk-test-little-{i:010d}": KeyProfile(alias=f"k{i}", rpm=600) for i in range(3)}
    peaks = {}
    for concurrency in (None, 8):
        with sim_with(keys, ttft=1.0, window_seconds=1.0) as sim:
            pool = pool_for(sim, keys)
            llm = nbllm.LLM("gpt-4o-mini", pool=pool, concurrency=concurrency)
            results = llm.map(arithmetic(90), progress="none")
            stats = sim.stats()
        assert_all_answered(results, 90)
        peaks[concurrency] = stats["total"]["max_in_flight"]
    assert peaks[None] >= 25 and peaks[8] <= 8, peaks
