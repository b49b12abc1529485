"""The key pool: pure choice and bucket math with a controlled clock, then real batches over sockets."""

from __future__ import annotations

import asyncio
import math

import pytest

import nbllm
from nbllm import KeyPool
from nbllm._keys.bucket import LeakyBucket
from nbllm._keys.config import ApiKey, keys_from_env
from nbllm._keys.state import KeyState, choose_key
from nbllm._keys.snapshot import RateLimitSnapshot

# ---- pure: buckets -------------------------------------------------------------------------------------

BUCKET_CASES = [
    # (rate/min, burst s, consumed at t=0, ask, at t, expected wait)
    (60, 1.0, 0, 1, 0.0, 0.0),
    (60, 1.0, 1, 1, 0.0, 1.0),
    (60, 1.0, 1, 1, 0.5, 0.5),
    (60, 1.0, 1, 1, 1.0, 0.0),
    (600, 1.0, 10, 1, 0.0, 0.1),
    (600, 1.0, 5, 1, 0.0, 0.0),
    (6000, 1.0, 0, 500, 0.0, 0.0),  # a request above capacity waits for an empty bucket only
    (6000, 1.0, 100, 500, 0.0, 1.0),
    (120, 2.0, 4, 1, 0.0, 0.5),
]


@pytest.mark.parametrize("rate, burst, consumed, ask, at, expected", BUCKET_CASES)
def test_bucket_wait(rate, burst, consumed, ask, at, expected):
    bucket = LeakyBucket(rate, burst)
    bucket.consume(consumed, 0.0)
    assert bucket.time_until(ask, at) == pytest.approx(expected)


def test_bucket_adjust_resize_and_block():
    bucket = LeakyBucket(600, 1.0)  # 10/s, capacity 10
    bucket.consume(10, 0.0)
    bucket.adjust(-4, 0.0)  # an estimate was 4 too high
    assert bucket.time_until(4, 0.0) == 0.0
    bucket.resize(1200, 0.0)  # learned a higher limit: same fraction used
    assert bucket.level == pytest.approx(12)
    bucket.block_for(3.0, 0.0)
    assert bucket.time_until(1, 0.0) == pytest.approx(3.05)


# ---- pure: which key takes the next request ---------------------------------------------------------------

def states(*keys: ApiKey) -> list[KeyState]:
    return [KeyState(k) for k in keys]


def test_choice_prefers_the_key_free_soonest_then_the_least_loaded():
    a, b = states(ApiKey("sk-a-123456789", "a", rpm=60), ApiKey("sk-b-123456789", "b", rpm=600))
    assert choose_key([a, b], "openai", "m", 1, 0.0).state is a  # equal load 0: first key
    a.take(1, 0.0)
    assert choose_key([a, b], "openai", "m", 1, 0.0).state is b  # a is full for 1 s
    for _ in range(10):
        b.take(1, 0.0)
    choice = choose_key([a, b], "openai", "m", 1, 0.0)
    assert choice.state is b and choice.wait == pytest.approx(0.1)  # b frees up in 0.1 s, a in 1 s


def test_choice_skips_cooling_disabled_and_foreign_keys():
    a, b, c = states(ApiKey("sk-a-123456789", "a"), ApiKey("sk-b-123456789", "b"), ApiKey("sk-c-123456789", "c", provider="anthropic"))
    a.cool_down(5.0, 0.0)
    b.disabled = "key refused (HTTP 401)"
    choice = choose_key([a, b, c], "openai", "gpt-4o-mini", 1, 1.0)
    assert choice.state is a and choice.wait == pytest.approx(4.0)
    assert {s.alias for s in choice.candidates} == {"a", "b"}
    a.disabled = "out of quota"
    none = choose_key([a, b, c], "openai", "gpt-4o-mini", 1, 1.0)
    assert none.state is None and none.wait == math.inf


def test_models_restrict_keys():
    only_mini = ApiKey("sk-a-123456789", "a", models=("gpt-4o-mini",))
    assert only_mini.serves("openai", "gpt-4o-mini") and not only_mini.serves("openai", "gpt-4o")


def test_learning_from_headers_and_429s():
    state = KeyState(ApiKey("sk-a-123456789", "a"))
    state.learn(RateLimitSnapshot(limit_requests=600, remaining_requests=0, reset_requests=2.0), 0.0)
    assert state.rpm is not None and state.rpm.rate_per_minute == 600 and state.learned_rpm
    assert state.wait_time(1, 0.0) == pytest.approx(0.1)  # nothing left: the next request when one refills
    no_limit = KeyState(ApiKey("sk-c-123456789", "c"))
    no_limit.learn(RateLimitSnapshot(remaining_requests=0, reset_requests=2.0), 0.0)
    assert no_limit.wait_time(1, 0.0) == pytest.approx(2.0)  # no rate to refill with: wait for the reset
    unknown = KeyState(ApiKey("sk-b-123456789", "b"))
    for t in range(20):
        unknown.take(1, t * 0.1)
        unknown.finish(1, 10, t * 0.1)
    unknown.cool_down(1.0, 2.0, sent_at=1.9)
    assert unknown.guessed_rpm and 400 < unknown.rpm.rate_per_minute < 700  # ~10/s seen, 80 % kept
    unknown.cool_down(1.0, 2.1, sent_at=1.95)  # sent before the correction: no second cut
    assert 400 < unknown.rpm.rate_per_minute < 700


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"API_KEY": "sk-a1234567,sk-b1234567", "BASE_URL": "http://x/v1"}, [("key-1", "openai", "http://x/v1"), ("key-2", "openai", "http://x/v1")]),
        ({"OPENAI_API_KEY": "sk-o1234567"}, [("openai-1", "openai", None)]),
        ({"ANTHROPIC_API_KEY": "sk-ant-1234567", "ANTHROPIC_BASE_URL": "http://a"}, [("anthropic-1", "anthropic", "http://a")]),
        ({"API_KEY": "sk-same1234", "OPENAI_API_KEY": "sk-same1234"}, [("key-1", "openai", None)]),
        ({}, []),
    ],
)
def test_keys_from_env(env, expected):
    assert [(k.alias, k.provider, k.base_url) for k in keys_from_env(env)] == expected


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("API_KEY=sk-envfile-1,sk-envfile-2\nBASE_URL=http://127.0.0.1:9/v1\nNBLLM_RPM=120\n")
    monkeypatch.chdir(tmp_path)
    pool = KeyPool.from_env()
    assert [k.alias for k in pool.keys] == ["key-1", "key-2"] and pool.keys[0].rpm == 120
    assert "sk-envfile-1" not in repr(pool.keys) + str(pool.status())


def test_bad_key_settings_say_what_to_do():
    with pytest.raises(nbllm.ConfigurationError, match="rpm must be positive"):
        KeyPool([{"key": "sk-a-123456789", "rpm": 0}])
    with pytest.raises(nbllm.ConfigurationError, match="aliases must be unique"):
        KeyPool([{"key": "sk-a-123456789", "alias": "x"}, {"key": "sk-b-123456789", "alias": "x"}])
    with pytest.raises(nbllm.ConfigurationError, match="Unknown key setting"):
        KeyPool([{"key": "sk-a-123456789", "rpn": 5}])


# ---- the FIFO queue, driven by a controlled clock ---------------------------------------------------------

def _one_step(request):
    """Run an ``acquire`` coroutine one step: its Lease if it was granted without suspending, else None."""
    try:
        request.send(None)
    except StopIteration as done:
        return done.value
    return None


@pytest.mark.parametrize("queued", [False, True])
async def test_a_free_key_is_granted_at_once_only_when_nobody_waits(queued: bool):
    """The fast path (no queue, no dispatcher wake-up) is taken only when FIFO cannot be broken by it."""
    now = [0.0]
    pool = KeyPool([{"key": "sk-a-123456789", "tpm": 600}], clock=lambda: now[0])  # 10 tokens/s, capacity 10
    if queued:
        assert _one_step(pool.acquire("openai", "m", 10)) is not None  # fills the bucket
        waiting = asyncio.ensure_future(pool.acquire("openai", "m", 5))
        await asyncio.sleep(0)
        assert pool.waiting == 1
        now[0] = 10.0  # the bucket drained: the key is free, but a request was queued first
    request = pool.acquire("openai", "m", 1)
    lease = _one_step(request)
    if queued:
        assert lease is None and pool.waiting == 2
        request.close()
        waiting.cancel()
    else:
        assert lease is not None and lease.alias == "key-1" and pool.waiting == 0


async def test_waiters_are_served_in_arrival_order_even_when_a_small_request_could_jump():
    now = [0.0]
    pool = KeyPool([{"key": "sk-a-123456789", "tpm": 600}], clock=lambda: now[0])  # 10 tokens/s, capacity 10
    served: list[str] = []

    async def ask(name: str, tokens: float) -> None:
        lease = await pool.acquire("openai", "m", tokens)
        served.append(name)
        lease.succeeded(None)

    first = asyncio.ensure_future(ask("first-10", 10))
    await asyncio.sleep(0)
    big = asyncio.ensure_future(ask("big-8", 8))
    small = asyncio.ensure_future(ask("small-1", 1))
    for _ in range(5):
        await asyncio.sleep(0)
    assert served == ["first-10"]  # the bucket is full; the clock has not moved
    now[0] = 0.8  # 8 tokens drained: the big request fits, the small one must still wait behind it
    pool._changed()
    await asyncio.wait_for(big, 1)
    assert served == ["first-10", "big-8"]
    now[0] = 0.9
    pool._changed()
    await asyncio.wait_for(asyncio.gather(first, small), 1)
    assert served == ["first-10", "big-8", "small-1"]


async def test_a_retry_goes_to_the_head_of_the_queue():
    now = [0.0]
    pool = KeyPool([{"key": "sk-a-123456789", "rpm": 60}], clock=lambda: now[0])  # burst 1: one now
    served: list[str] = []

    async def ask(name: str, retry: bool = False) -> None:
        lease = await pool.acquire("openai", "m", 1, retry=retry)
        served.append(name)
        lease.succeeded(None)

    first = asyncio.ensure_future(ask("first"))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(ask(f"queued-{i}")) for i in range(2)]
    await asyncio.sleep(0)
    retried = asyncio.ensure_future(ask("retried", retry=True))  # it waited its turn once already
    for _ in range(5):
        await asyncio.sleep(0)
    assert served == ["first"]
    for step in (1, 2, 3):
        now[0] = float(step)  # one request per second
        pool._changed()
        for _ in range(5):
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(first, retried, *queued), 1)
    assert served == ["first", "retried", "queued-0", "queued-1"]


@pytest.mark.parametrize(
    ("outcomes", "answering"),
    [
        ("", False),  # nothing known yet: back off, as for a single call
        ("+" * 9, False),  # not a full window yet
        ("+" * 10, True),
        ("+" * 8 + "--", True),  # 8 of the last 10
        ("+" * 7 + "---", False),
        ("+" * 30 + "---", False),  # three failures in a row: an outage may have begun
        ("---" + "+" * 10, True),  # it recovered: only the last 10 count
        ("+-" * 10, False),
    ],
)
def test_a_key_is_answering_while_it_answers_nearly_all_its_last_requests(outcomes: str, answering: bool):
    state = KeyState(ApiKey("sk-a-123456789", "a"))
    for outcome in outcomes:
        if outcome == "+":
            state.finish(0, None, 0.0)
        else:
            state.errored()
    assert state.answering is answering


async def test_a_pool_with_every_key_disabled_fails_fast():
    pool = KeyPool([{"key": "sk-a-123456789"}])
    pool.key_state("key-1").disabled = "key refused (HTTP 401)"
    with pytest.raises(nbllm.NoKeyAvailableError, match="disabled"):
        await pool.acquire("openai", "m", 1)
    with pytest.raises(nbllm.NoKeyAvailableError, match="serves anthropic"):
        await KeyPool([{"key": "sk-b-123456789", "provider": "openai"}]).acquire("anthropic", "claude", 1)


# ---- hostile headers and long waits, on a controlled clock (issue: hostile providers) -----------------

def test_a_request_above_a_minute_of_tpm_takes_only_a_minute_and_gives_it_back():
    state = KeyState(ApiKey("sk-a-123456789", "a", tpm=60_000))  # 1000 tokens/s
    taken = state.take(2_500_000, 0.0)
    assert taken == pytest.approx(60_000)
    assert state.wait_time(1, 0.0) == pytest.approx(59.0, abs=0.01)  # a minute, not 42
    assert state.state_text(0.0) == "waiting: TPM 59.0s"
    state.release(taken, 0.0)  # rejected: nothing was used
    assert state.wait_time(1, 0.0) == 0.0 and state.state_text(0.0) == "ready"


def test_an_answer_corrects_the_capped_take_to_real_usage():
    state = KeyState(ApiKey("sk-a-123456789", "a", tpm=60_000))
    taken = state.take(2_500_000, 0.0)
    state.finish(taken, 30_000, 0.0)
    assert state.wait_time(1, 0.0) == pytest.approx(29.0, abs=0.01)


@pytest.mark.parametrize(
    ("setup", "text"),
    [(lambda s: s.cool_down(3.0, 0.0), "cooling down 3.0s"),
     (lambda s: s.learn(RateLimitSnapshot(remaining_tokens=0, reset_tokens=7.5), 0.0), "blocked by reset header 7.5s"),
     (lambda s: s.cool_down(120.0, 0.0, asked=86400.0), "parked 120.0s: the server asked to wait 86400s"),
     (lambda s: [s.take(1, 0.0) for _ in range(30)], "waiting: RPM 2.1s"),
     (lambda s: [s.take(1, 0.0) for _ in range(10)], "ready")],  # 0.1 s: the normal pacing of a busy key
    ids=["cooldown", "reset", "parked", "rpm", "short-wait"],
)
def test_status_says_why_a_key_waits(setup, text):
    state = KeyState(ApiKey("sk-a-123456789", "a", rpm=600))  # 10 requests a second
    setup(state)
    assert state.state_text(0.0) == text


def test_remaining_zero_blocks_until_reset_even_without_a_limit():
    state = KeyState(ApiKey("sk-a-123456789", "a"))
    state.learn(RateLimitSnapshot(remaining_tokens=0, reset_tokens=4.0), 0.0)
    assert state.wait_time(1, 1.0) == pytest.approx(3.0) and state.wait_time(1, 4.0) == 0.0


def test_a_snapshot_caps_its_resets():
    snapshot = RateLimitSnapshot(remaining_requests=0, reset_requests=359_996_400.0, reset_tokens=2.0)
    capped = snapshot.capped(120.0)
    assert capped.reset_requests == 120.0 and capped.reset_tokens == 2.0 and capped.remaining_requests == 0


def test_a_parked_key_is_not_chosen_until_its_parking_ends():
    a, b = states(ApiKey("sk-a-123456789", "a"), ApiKey("sk-b-123456789", "b"))
    a.cool_down(120.0, 0.0, asked=86400.0)
    assert choose_key([a, b], "openai", "m", 1, 1.0).state is b
    b.disabled = "key refused (HTTP 401)"
    nothing = choose_key([a, b], "openai", "m", 1, 1.0)
    assert nothing.state is None and nothing.wait == math.inf
    assert choose_key([a, b], "openai", "m", 1, 120.5).state is a  # parked for the capped time only


async def test_a_pool_whose_keys_are_all_parked_fails_fast_with_a_rate_limit_error():
    pool = KeyPool([ApiKey("sk-a-123456789", "a"), ApiKey("sk-b-123456789", "b")], clock=lambda: 0.0)
    lease = await pool.acquire("openai", "m", 1)
    lease.rate_limited(120.0, asked=86400.0)
    pool.key_state("b").disabled = "out of quota"
    with pytest.raises(nbllm.RateLimitError, match="max_retry_after") as caught:
        await asyncio.wait_for(pool.acquire("openai", "m", 1), 1.0)
    assert "a: parked" in str(caught.value) and "b: out of quota" in str(caught.value)
