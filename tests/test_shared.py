"""The key pool shared through a real Redis: the Lua math with controlled clocks, pools sharing in one
process, losing and regaining Redis, then four real processes against one simulator.

Needs the ``redis-server`` binary (CI installs it: ``make system-deps``); skipped only where it is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nbllm import KeyPool
from nbllm._keys.bucket import LeakyBucket
from nbllm._keys.snapshot import RateLimitSnapshot
from nbllm._keys.shared_scripts import (ADJUST, COOLDOWN, HEARTBEAT, LEARNED, PROBE_END, SEED, TAKE, key_id,
                                        key_names, processes_name)

pytestmark = pytest.mark.redis

_spec = importlib.util.spec_from_file_location("bench_shared", Path(__file__).parents[1] / "benchmarks" / "bench_shared.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_shared"] = bench  # dataclasses look their module up by name
_spec.loader.exec_module(bench)

NS = "nbllm:test:"
KEY_A, KEY_B = "sk-shared-test-aaaaaaaa01", "sk-shared-test-bbbbbbbb02"
BASE = 1_700_000_000_000_000  # µs: a fixed "now" for the scripts


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found (apt-get install redis-server, or `make system-deps`; CI has it)")
    server = bench.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
async def client(redis_server):
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


async def take(client, name: str, per_minute: float, burst: float, tokens: float, at: float):
    """TAKE on one token bucket (``name``, with ``name:cooldown`` and ``name:disabled``) at ``at`` seconds
    after BASE; returns the wait in seconds, or the reason the key is disabled."""
    keys = (f"{name}:rpm", name, f"{name}:cooldown", f"{name}:disabled")
    reply = await client.eval(TAKE, 4, *keys, 0, 0, per_minute, burst, tokens, BASE + at * 1e6)
    return reply[2] if reply[0] == 2 else reply[1] / 1e6


# ---- the scripts, against the same math as the local bucket ------------------------------------------
@pytest.mark.parametrize("rate, burst, consumed, ask, at, expected", [
    (60, 1.0, 1, 1, 0.0, 1.0), (60, 1.0, 1, 1, 0.5, 0.5), (60, 1.0, 1, 1, 1.0, 0.0), (600, 1.0, 10, 1, 0.0, 0.1),
    (600, 1.0, 5, 1, 0.0, 0.0), (6000, 1.0, 100, 500, 0.0, 1.0), (120, 2.0, 4, 1, 0.0, 0.5),
])
async def test_take_waits_like_the_local_bucket(client, rate, burst, consumed, ask, at, expected):
    assert await take(client, "b", rate, burst, consumed, 0.0) == 0.0  # a fresh bucket takes anything once
    assert await take(client, "b", rate, burst, ask, at) == pytest.approx(expected, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 40)), min_size=1, max_size=30),
       st.sampled_from([60.0, 600.0, 1234.0, 90_000.0]), st.sampled_from([0.5, 1.0, 2.0]))
@example(steps=[(0.0, 4), (0.0, 4), (0.125, 4), (0.0, 1)], per_minute=1234.0, burst=0.5)  # 2.2 µs off, found in CI
def test_take_is_the_leaky_bucket_for_any_sequence(redis_server, steps, per_minute, burst):
    async def check():
        async with aioredis.Redis.from_url(redis_server.url, decode_responses=True) as client:
            name = f"prop:{uuid.uuid4().hex}"
            bucket, now = LeakyBucket(per_minute, burst), 0.0
            for granted, (dt, amount) in enumerate(steps):
                now += dt
                expected = bucket.time_until(amount, now)
                # the script keeps each bucket's time in whole µs (each grant rounds it by up to 0.5 µs) and
                # rounds a wait up to the next µs: the error grows by at most 1 µs per step
                tolerance = 1e-6 * (granted + 2)
                assert await take(client, name, per_minute, burst, amount, now) == pytest.approx(expected, abs=tolerance)
                if expected == 0:
                    bucket.consume(amount, now)

    asyncio.run(check())


async def test_take_checks_both_buckets_and_takes_from_neither_on_a_wait(client):
    args = ("k:rpm", "k:tpm", "k:cool", "k:dis")
    full_tpm = await client.eval(TAKE, 4, *args, 600, 1, 600, 1, 10, BASE)  # tpm now full, rpm used 1 of 10
    assert full_tpm == [0, 0]
    reply = await client.eval(TAKE, 4, *args, 600, 1, 600, 1, 5, BASE)
    assert reply == [1, 500_000]  # 5 tokens drain in 0.5 s
    rpm_tat = float(await client.get("k:rpm"))
    assert rpm_tat == BASE + 100_000  # the refused request took no request capacity


async def test_adjust_gives_back_and_charges_tokens(client):
    await take(client, "t", 600, 1.0, 10, 0.0)
    assert await client.eval(ADJUST, 1, "t", 600, -4, BASE) == 6  # an estimate 4 too high
    assert await take(client, "t", 600, 1.0, 4, 0.0) == 0.0
    assert await client.eval(ADJUST, 1, "t", 600, 5, BASE) == 15  # real usage above the estimate
    assert await take(client, "t", 600, 1.0, 1, 0.0) == pytest.approx(0.6)
    assert await client.eval(ADJUST, 1, "t", 600, -100, BASE) == 0 and not await client.exists("t")


async def test_cooldown_is_only_lengthened_and_disabled_wins(client):
    assert 4900 < await client.eval(COOLDOWN, 1, "b:cooldown", 5000) <= 5000
    assert 4900 < await client.eval(COOLDOWN, 1, "b:cooldown", 1000) <= 5000  # a shorter one does not cut it
    assert await take(client, "b", 600, 1.0, 1, 0.0) == pytest.approx(5.0, abs=0.1)
    await client.set("b:disabled", "key refused (HTTP 401)")
    assert await take(client, "b", 600, 1.0, 1, 0.0) == "key refused (HTTP 401)"


async def test_heartbeat_counts_live_processes_and_seed_fills_only_empty_buckets(client):
    assert await client.eval(HEARTBEAT, 1, "procs", "p1", 300) == 1
    assert await client.eval(HEARTBEAT, 1, "procs", "p2", 300) == 2
    await asyncio.sleep(0.4)
    assert await client.eval(HEARTBEAT, 1, "procs", "p1", 300) == 1  # p2 went silent
    await client.set("kept", "123")
    await client.eval(SEED, 2, "kept", "fresh", 1_000_000, 1_000_000)
    assert await client.get("kept") == "123"
    seconds, micros = await client.time()
    assert float(await client.get("fresh")) == pytest.approx(seconds * 1e6 + micros + 1e6, abs=50_000)


# ---- pools sharing one Redis inside one process (each pool stands for a process) ----------------------
def shared_pool(redis_server, *specs, namespace=NS, **kw) -> KeyPool:
    return KeyPool(list(specs) or [{"key": KEY_A, "alias": "a", "rpm": 600}], shared=redis_server.url, namespace=namespace, **kw)


async def grants_now(pool: KeyPool, n: int, within: float = 0.05) -> int:
    """How many of ``n`` acquires are granted within ``within`` seconds (the rest are cancelled)."""
    tasks = [asyncio.ensure_future(pool.acquire("openai", "m", 1)) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result().succeeded(None)
    return len(done)


# ---- probing a key nobody knows the limits of, all processes together --------------------------------
async def probe_take(client, at: float, spacing_ms: float = 20, cap: int = 3, burst: int = 0):
    """TAKE for a process that knows no limit of key ``p`` (still waiting for its first answer when
    ``spacing_ms``): 'probe' when granted as a probe, 'granted' otherwise, else the wait in seconds."""
    keys = ("p:rpm", "p:tpm", "p:cooldown", "p:disabled", "p:limits", "p:probe")
    reply = await client.eval(TAKE, 6, *keys, 0, 0, 0, 0, 10, BASE + at * 1e6, int(spacing_ms * 1000), 1.0, cap,
                              50_000, burst)
    if reply[0] == 0:
        return "probe" if len(reply) > 2 and reply[2] == 1 else "granted"
    return reply[1] / 1e6


async def test_processes_probe_an_unknown_key_together(client):
    # paced: one first request per 20 ms for all processes together, however many ask
    assert await probe_take(client, 0.0) == "probe"
    assert await probe_take(client, 0.005) == pytest.approx(0.015)
    assert await probe_take(client, 0.02) == "probe"
    assert await probe_take(client, 0.04) == "probe"
    # the allowance (3 here) is full: look again later, whatever the pacing says
    assert await probe_take(client, 1.0, spacing_ms=0) == pytest.approx(0.05)
    # AIMD: an answer gives its slot back and grows the allowance; a 429 halves it
    assert await client.eval(PROBE_END, 1, "p:probe", 1, 1024) == 4
    assert await probe_take(client, 1.0, spacing_ms=0) == "probe"
    assert await probe_take(client, 1.0, spacing_ms=0) == "probe"
    assert await probe_take(client, 1.0, spacing_ms=0) == pytest.approx(0.05)  # 4 in flight
    assert await client.eval(PROBE_END, 1, "p:probe", 2, 1024) == 2
    assert await client.eval(PROBE_END, 1, "p:probe", 0, 1024) == 2
    assert await probe_take(client, 1.0, spacing_ms=0) == pytest.approx(0.05)  # 2 still in flight, cap 2
    assert await client.hget("p:probe", "inflight") == "2"


async def test_the_first_probes_go_out_at_once_then_paced(client):
    assert [await probe_take(client, 0.0, cap=16, burst=3) for _ in range(3)] == ["probe"] * 3
    assert await probe_take(client, 0.0, cap=16, burst=3) == pytest.approx(0.02)


async def test_a_limit_one_process_learned_ends_the_probe_for_all(client):
    assert await probe_take(client, 0.0) == "probe"
    # the 429 said: 600 rpm, nothing left; the publisher's bucket is full (1 s of 10 rps ahead)
    await client.eval(LEARNED, 3, "p:limits", "p:rpm", "p:tpm", 600, 0, 1_000_000, 0, BASE)
    assert await client.hget("p:limits", "rpm") == "600"
    wait = await probe_take(client, 0.0)  # the server's clock now: the bucket is full for every process
    assert 0.05 < wait <= 0.1 + 1e-6
    # later, a process still knowing nothing is paced by the learned limit, not by the probe
    assert await probe_take(client, 5.0) == "granted"


async def test_two_pools_share_one_bucket(client, redis_server):
    spec = {"key": KEY_A, "alias": "a", "rpm": 300}
    first, second = shared_pool(redis_server, spec), shared_pool(redis_server, spec)
    assert await grants_now(first, 4) == 4
    assert await grants_now(second, 6) == 1  # 300 rpm, 1 s burst: 5 in all, whoever asks
    started = time.monotonic()
    assert await grants_now(second, 3, within=1.0) == 3  # then one every 0.2 s
    assert 0.4 < time.monotonic() - started < 0.8
    names = await client.keys("*")
    assert f"{NS}{{{key_id(KEY_A)}}}:rpm" in names and not [n for n in names if KEY_A in n]
    assert not [v for n in names if await client.type(n) == "string" and KEY_A in (v := await client.get(n))]
    await first.aclose(), await second.aclose()


async def test_a_key_refused_in_one_pool_is_never_granted_in_another(client, redis_server):
    keys = ({"key": KEY_A, "alias": "a"}, {"key": KEY_B, "alias": "b"})
    first, second = shared_pool(redis_server, *keys), shared_pool(redis_server, *keys)
    lease = await first.acquire("openai", "m", 1)
    lease.key_failed("key refused (HTTP 401)")
    await asyncio.sleep(0.01)  # the write is fire-and-forget
    aliases = set()
    for _ in range(5):
        granted = await second.acquire("openai", "m", 1)
        aliases.add(granted.alias)
        granted.succeeded(None)
    assert aliases == {"b" if lease.alias == "a" else "a"}
    assert second.key_state(lease.alias).disabled == "key refused (HTTP 401)"
    third = shared_pool(redis_server, *keys)  # a process started later reads it at once
    await third.shared.ready()
    assert third.key_state(lease.alias).disabled == "key refused (HTTP 401)"
    for pool in (first, second, third):
        await pool.aclose()


async def test_cooldowns_and_learned_limits_reach_other_pools(client, redis_server):
    first = shared_pool(redis_server, {"key": KEY_A, "alias": "a"})
    lease = await first.acquire("openai", "m", 1)
    lease.succeeded(10, RateLimitSnapshot(limit_requests=900, limit_tokens=50_000))
    lease = await first.acquire("openai", "m", 1)
    lease.rate_limited(3.0)
    await asyncio.sleep(0.01)
    second = shared_pool(redis_server, {"key": KEY_A, "alias": "a"})
    await second.shared.ready()
    state = second.key_state("a")
    assert state.rpm.rate_per_minute == 900 and state.tpm.rate_per_minute == 50_000 and state.learned_rpm
    assert 2.5 < state.cooldown_until - time.monotonic() <= 3.0
    await first.aclose(), await second.aclose()


async def test_losing_redis_degrades_to_a_share_warns_once_and_recovers(tmp_path, capfd):
    server = bench.RedisServer(tmp_path).start()
    pool = KeyPool([{"key": KEY_A, "alias": "a", "rpm": 600}], shared=server.url, namespace=NS)
    try:
        assert await grants_now(pool, 3) == 3 and pool.shared.connected
        server.kill()
        # 1/2 of 600 rpm (no other process seen), starting full: about 5 per second, none at once
        assert await grants_now(pool, 10, within=0.1) == 0
        assert await grants_now(pool, 10, within=0.45) == 2
        assert not pool.shared.connected
        server.start()
        for _ in range(40):
            await asyncio.sleep(0.1)
            if pool.shared.connected:
                break
        assert pool.shared.connected
        await grants_now(pool, 1, within=2.0)  # the restarted server's bucket was seeded full: no burst
    finally:
        await pool.aclose()
        server.stop()
    err = capfd.readouterr().err
    assert err.count("WARNING: the shared key pool") == 1 and "1/2 of each key's limit" in err
    assert "reachable again" in err


async def test_unreachable_redis_from_the_start_still_serves(capfd):
    pool = KeyPool([{"key": KEY_A, "alias": "a", "rpm": 600}], shared=f"redis://:secret@127.0.0.1:{bench.free_port()}/0")
    assert await grants_now(pool, 2, within=0.1) == 0  # the conservative share starts full...
    lease = await asyncio.wait_for(pool.acquire("openai", "m", 1), 1.0)  # ...and refills
    lease.succeeded(None)
    await pool.aclose()
    err = capfd.readouterr().err
    assert "unreachable" in err and "secret" not in err and ":***@" in err


def test_from_env_reads_the_shared_url_and_namespace(redis_server):
    pool = KeyPool.from_env({"API_KEY": KEY_A, "NBLLM_SHARED_POOL": redis_server.url, "NBLLM_SHARED_NAMESPACE": "team:"})
    assert pool.shared is not None and pool.shared.namespace == "team:" and "shared via" in repr(pool)
    assert KeyPool.from_env({"API_KEY": KEY_A}).shared is None
    assert key_names("team:", KEY_A)["rpm"] == f"team:{{{key_id(KEY_A)}}}:rpm" and KEY_A not in str(key_names("n:", KEY_A))
    assert processes_name("team:") == "team:processes"


# ---- four real processes, one simulator ---------------------------------------------------------------
def test_four_processes_stay_within_the_limits_together_and_apart_they_overshoot(redis_server):
    # no limit headers: a process alone learns nothing of what the others send (the case); with
    # headers the separate pools overshoot less, but still collect 429s (see benchmarks/bench_shared.py)
    with bench.make_simulator(headers=False) as sim:
        shared = bench.run_processes(sim, processes=4, items=120, shared=redis_server.url, namespace="t1:")
    assert shared.lost == 0, [w["failures"] for w in shared.workers]
    assert shared.rate_limited == 0
    assert shared.fraction >= 0.9, shared.fraction
    with bench.make_simulator(headers=False) as sim:
        apart = bench.run_processes(sim, processes=4, items=120, shared=None)
    assert apart.rate_limited >= 100, apart.rate_limited  # each process alone believes it has the whole limit


def test_redis_killed_and_restarted_mid_run_loses_nothing(redis_server):
    after_recovery: dict[str, int] = {}

    def outage(start_at: float) -> None:
        bench.wait_for_answers(sim, 160)  # the first burst (40) and 3 s at the limit
        redis_server.kill()
        time.sleep(3.0)
        redis_server.start()
        time.sleep(2.0)  # every process reconnects within a second or so
        after_recovery["429s"] = sim.stats()["total"]["rate_limited"]

    with bench.make_simulator() as sim:
        result = bench.run_processes(sim, processes=4, items=130, shared=redis_server.url, namespace="t2:", during=outage)
        total_429s = sim.stats()["total"]["rate_limited"]
    assert result.lost == 0, [w["failures"] for w in result.workers]
    for err in result.stderr:
        assert err.count("WARNING: the shared key pool") == 1 and "reachable again" in err, err
    assert all(w["connected"] for w in result.workers)
    assert total_429s <= 10  # a few while each process guessed its share; none afterwards:
    assert total_429s == after_recovery["429s"], (after_recovery, total_429s)
    assert result.fraction >= 0.75


def test_a_key_revoked_under_four_processes_fails_at_most_once_per_process(redis_server):
    def revoke(start_at: float) -> None:
        bench.wait_for_answers(sim, 100)  # past the first burst: grants on a key are 1/rate apart
        sim.revoke("sk-shared-charlie-0000003")

    with bench.make_simulator() as sim:
        result = bench.run_processes(sim, processes=4, items=60, shared=redis_server.url, namespace="t3:", during=revoke)
    assert result.lost == 0, [w["failures"] for w in result.workers]
    assert all(w["keys"]["charlie"]["state"].startswith("disabled") for w in result.workers)
    assert all(w["keys"]["charlie"]["failed"] <= 1 for w in result.workers)
    assert 1 <= result.unauthorized["charlie"] <= 4
