"""Structured answers end to end: the simulator over real sockets, both wire formats, sync and async.

Each failure kind of the simulator's broken-JSON fault is repaired by a re-ask; the re-ask budget and the
network retries never mix (requests counted by the simulator); a server without ``response_format`` costs
one 400 per process; stored raw answers are judged again offline; and with ~15 % of answers broken a
batch comes back parsed and correct on both wires.
"""

from __future__ import annotations

import ast
import json
import operator
import random
import sqlite3

import pydantic
import pytest

import nbllm
from nbllm._call import capabilities
from nbllm._sim import Faults, KeyProfile, SimConfig, Simulator

KEY = "sk-structured-test-0123456789abcdef"
FAST = dict(ttft=0.0, tokens_per_second=0.0)
RIGHT = (1.0, 0.0, 0.0)
WIRES = ["openai", "anthropic"]
TEMPLATE = 'Return the result as JSON: {{"expression": "{question}", "result": ?}}'


class Result(pydantic.BaseModel):
    expression: str
    result: int


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _value(expression: str) -> int:
    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"not arithmetic: {expression}")
    return walk(ast.parse(expression.replace("x", "*"), mode="eval").body)


class Checked(Result):
    """A validator that checks the meaning, not just the types: a wrong result is re-asked too."""

    @pydantic.model_validator(mode="after")
    def result_is_right(self) -> Checked:
        if self.result != _value(self.expression):
            raise ValueError(f"result {self.result} is not the value of {self.expression}; compute it again")
        return self


def questions(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    rng, seen = random.Random(seed), set()
    while len(seen) < n:
        a, b, c = rng.randint(1, 100), rng.randint(1, 100), rng.randint(1, 100)
        seen.add(f"{a} {rng.choice('+-x')} {b} {rng.choice('+-x')} {c}")
    exprs = sorted(seen)
    return [TEMPLATE.format(question=e) for e in exprs], [_value(e) for e in exprs]


def llm_for(sim: Simulator, wire: str, **settings) -> nbllm.LLM:
    settings.setdefault("progress", "none")
    if wire == "openai":
        return nbllm.LLM("gpt-4o-mini", base_url=sim.base_url + "/v1", api_key=KEY, **settings)
    return nbllm.LLM("anthropic:claude-haiku-4-5", base_url=sim.base_url, api_key=KEY, **settings)


def sim_with(**config) -> Simulator:
    for name, value in FAST.items():
        config.setdefault(name, value)
    config.setdefault("arithmetic_accuracy", RIGHT)
    return Simulator(SimConfig(**config))


def requests(sim: Simulator) -> int:
    return sim.stats()["total"]["requests"]


# ---- done when: ~15 % broken, every item parsed and correct, one row per prompt -------------------------
@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("wire", WIRES)
async def test_a_batch_with_15_percent_broken_answers_comes_back_parsed_and_correct(wire, streaming) -> None:
    prompts, labels = questions(300)
    # the simulator's default accuracy: 1.5 % wrong results, which the validator sends back too
    with sim_with(faults=Faults(broken_json=0.15), arithmetic_accuracy=(0.97, 0.015, 0.015)) as sim:
        rows = await llm_for(sim, wire, streaming=streaming, concurrency=16).amap(prompts, schema=Checked)
        sent = requests(sim)
    assert isinstance(rows, nbllm.Results) and isinstance(rows, list) and len(rows) == 300
    assert all(r.ok for r in rows), [str(r) for r in rows if not r.ok][:3]
    assert [r.parsed.result for r in rows] == labels
    summary = rows.summary()
    assert summary.failed == 0 and summary.repaired > 20 and summary.valid_first + summary.repaired == 300
    assert sent == summary.requests == 300 + summary.extra_requests
    frame = rows.to_dataframe()
    assert len(frame) == 300 and list(frame["result"]) == labels and frame["ok"].all()
    assert (frame["attempts"] > 1).sum() == summary.repaired


# ---- each failure kind ----------------------------------------------------------------------------------
CASES = [  # (wire, kind, simulator settings): where the simulator's dice can produce each kind
    ("openai", "truncated", {}),                                  # strict schema: only running out of tokens
    ("anthropic", "truncated", {}),
    ("anthropic", "wrong_type", {}),                              # a tool without strict: any kind but prose
    ("anthropic", "missing_field", {}),
    ("openai", "wrong_type", {"response_format": "reject"}),      # no structured outputs: JSON from the prompt
    ("openai", "missing_field", {"response_format": "reject"}),
    ("openai", "single_quotes", {"response_format": "reject"}),   # prose around a Python dict
]
WHAT = {"truncated": "cut off", "wrong_type": "valid integer", "missing_field": "Field required",
        "single_quotes": "double quotes"}


@pytest.mark.parametrize("wire, kind, config", CASES, ids=[f"{w}-{k}" for w, k, _ in CASES])
def test_each_broken_kind_is_repaired_by_one_reask(wire, kind, config) -> None:
    # small sums, so a wrong type is a number in words ("twelve"): Pydantic's lax mode rightly takes "256" as 256
    prompts, labels = [TEMPLATE.format(question=f"{a} + {a + 1}") for a in range(1, 7)], [2 * a + 1 for a in range(1, 7)]
    with sim_with(faults=Faults(broken_json=1.0, broken_json_kinds=(kind,)), **config) as sim:
        rows = llm_for(sim, wire, store=False).map(prompts, schema=Result)
        stats = sim.stats()["total"]
    assert [r.parsed.result for r in rows] == labels
    for r in rows:
        first, second = r.attempts[0], r.attempts[-1]
        assert WHAT[kind] in " ".join(first.errors), first
        assert second.errors == [] and second.text == r.text and r.usage.total_tokens > first.usage.total_tokens
    extra = 2 if (kind == "truncated" and wire == "anthropic") else 1  # + the retry with a larger max_tokens
    assert all(len(r.attempts) == 1 + extra for r in rows)
    assert stats["requests"] - stats["bad_requests"] == 6 * (1 + extra)


def test_a_cut_off_answer_is_retried_once_with_twice_the_max_tokens(tmp_path) -> None:
    store = nbllm.Store(tmp_path / "s.sqlite3")
    prompt = TEMPLATE.format(question="12 + 30") + " [[sim:broken_json_truncated:once]]"
    with sim_with() as sim:
        r = llm_for(sim, "openai", store=store, max_tokens=100).invoke(prompt, schema=Result)
        assert requests(sim) == 2
    assert r.parsed.result == 42 and [a.finish_reason for a in r.attempts] == ["length", "stop"]
    sent = [json.loads(row["request_json"]) for row in store.rows()]
    assert [s["params"]["max_tokens"] for s in sent] == [100, 200]
    assert sent[0]["messages"] == sent[1]["messages"]  # the same question again, not a re-ask


# ---- the budget split: a 429 is never a re-ask, a bad answer never a network retry ----------------------
@pytest.mark.parametrize("wire", WIRES)
def test_rate_limits_and_server_errors_do_not_use_the_reask_budget(wire) -> None:
    prompt = TEMPLATE.format(question="2 x 21") + " [[sim:429:once]] [[sim:broken_json_wrong_type:once]]"
    with sim_with() as sim:
        llm = llm_for(sim, wire, store=False, max_reasks=1)
        llm.retry = nbllm.RetryPolicy(initial_delay=0.01, max_delay=0.02)
        r = llm.invoke(prompt, schema=Result)
        stats = sim.stats()["total"]
    assert r.parsed.result == 42 and len(r.attempts) == 2  # one re-ask, still within max_reasks=1
    assert (stats["requests"], stats["rate_limited"]) == (3, 1)  # the 429 was retried by the client


@pytest.mark.parametrize("wire", WIRES)
def test_a_bad_answer_is_never_retried_as_a_network_error(wire) -> None:
    prompt = TEMPLATE.format(question="5 + 5") + " [[sim:broken_json_missing_field]]"  # broken every time
    with sim_with() as sim:
        llm = llm_for(sim, wire, store=False)
        with pytest.raises(nbllm.StructuredOutputError) as caught:
            llm.invoke(prompt, schema=Result, max_reasks=0)
        assert requests(sim) == 1
        with pytest.raises(nbllm.StructuredOutputError) as exhausted:
            llm.invoke(prompt, schema=Result)  # the default budget: 1 + 2 re-asks
        assert requests(sim) == 1 + 3
    assert len(caught.value.attempts) == 1 and caught.value.errors == ["result: Field required"]
    error = exhausted.value
    assert len(error.attempts) == 3 and all(a.errors for a in error.attempts)
    assert error.text == error.attempts[-1].text and "result" not in json.loads(error.text)
    assert all(a.usage.total_tokens > 0 for a in error.attempts)
    assert "after 3 answers (2 re-asks)" in str(error) and "max_reasks" in str(error)


def test_a_failed_batch_item_keeps_every_raw_answer_error_and_usage() -> None:
    prompts = [TEMPLATE.format(question="1 + 2"), TEMPLATE.format(question="3 + 4") + " [[sim:broken_json_wrong_type]]"]
    with sim_with() as sim:
        rows = llm_for(sim, "anthropic", store=False).map(prompts, schema=Result, max_reasks=1)
    ok, failed = rows
    assert ok.parsed.result == 3 and not failed.ok and isinstance(failed, nbllm.Failure)
    assert isinstance(failed.error, nbllm.StructuredOutputError) and len(failed.attempts) == 2
    assert failed.text == failed.attempts[-1].text and len(failed.errors) == 2
    assert failed.usage.total_tokens == sum(a.usage.total_tokens for a in failed.attempts) > 0
    frame = rows.to_dataframe()
    assert list(frame["ok"]) == [True, False] and frame["result"].isna().tolist() == [False, True]
    assert frame["error"][1].startswith("StructuredOutputError") and frame["attempts"][1] == 2


# ---- servers without response_format ------------------------------------------------------------------
async def test_a_server_that_rejects_response_format_costs_one_400_per_process() -> None:
    prompts, labels = questions(40, seed=2)
    with sim_with(response_format="reject") as sim:
        llm = llm_for(sim, "openai", concurrency=16)
        rows = await llm.amap(prompts, schema=Result)  # 16 at once: the first probes, the rest wait for it
        first = sim.stats()["total"]
        again = await llm.amap([p + " (again)" for p in prompts], schema=Result)
        second = sim.stats()["total"]
    assert [r.parsed.result for r in rows] == labels and all(r.ok for r in again)
    assert first["bad_requests"] == 1 and first["requests"] == 41
    assert second["bad_requests"] == 1 and second["requests"] == 81
    assert any(key[0] == "openai" and not native for key, native in capabilities.native.items())


def test_a_server_that_ignores_response_format_still_gets_parsed_answers() -> None:
    prompts, labels = questions(10, seed=3)
    with sim_with(response_format="ignore") as sim:
        rows = llm_for(sim, "openai", store=False).map(prompts, schema=Result)
    assert [r.parsed.result for r in rows] == labels  # the prompt asks for JSON; extraction reads it


# ---- the store keeps raw answers; a rerun judges them offline ----------------------------------------
def test_the_repaired_answer_is_found_for_the_original_prompt(tmp_path) -> None:
    store = nbllm.Store(tmp_path / "s.sqlite3")
    prompt = TEMPLATE.format(question="6 x 7") + " [[sim:broken_json_wrong_type:once]]"
    with sim_with() as sim:
        llm = llm_for(sim, "openai", store=store)
        first = llm.invoke(prompt, schema=Result, cache=True)
        second = llm.invoke(prompt, schema=Result, cache=True)
        assert requests(sim) == 2
    assert len(first.attempts) == 2 and not first.cached
    assert second.cached and second.parsed == first.parsed and second.attempts[0].cached
    rows = list(store.rows())
    assert len({row["fingerprint"] for row in rows}) == 1  # the re-ask is recorded under the original prompt
    assert [m["role"] for m in json.loads(rows[1]["request_json"])["messages"]] == ["user", "assistant", "user"]


class TwoOperands(Result):
    expression: str = pydantic.Field(pattern=r"^\d+ [-+x] \d+$")


async def test_a_rerun_with_a_changed_schema_reasks_only_what_no_longer_fits(tmp_path) -> None:
    store = tmp_path / "s.sqlite3"
    short, short_labels = [TEMPLATE.format(question=f"{i} + {i}") for i in range(1, 21)], [2 * i for i in range(1, 21)]
    long, _ = questions(10, seed=4)
    prompts = short + long
    with sim_with() as sim:
        llm = llm_for(sim, "openai", store=store)
        plain = await llm.amap(prompts)  # no schema at all: raw answers in the store
        assert requests(sim) == 30 and all(r.ok for r in plain)
        judged = await llm.amap(prompts, schema=Result)  # every stored answer fits: nothing is sent
        assert requests(sim) == 30 and all(r.cached and r.ok for r in judged)
        changed = await llm.amap(prompts, schema=TwoOperands, max_reasks=1)
        assert requests(sim) == 30 + 10  # only the 10 three-operand answers are re-asked (once each)
    assert [r.parsed.result for r in changed[:20]] == short_labels and all(r.cached for r in changed[:20])
    assert all(isinstance(r, nbllm.Failure) for r in changed[20:])
    assert all(r.attempts[0].cached and not r.attempts[1].cached for r in changed[20:])
    assert changed.summary().requests == 10 and changed.summary().cached == 20


async def test_stored_answers_that_failed_are_reasked_on_the_rerun(tmp_path) -> None:
    prompts, labels = questions(40, seed=5)
    with sim_with(faults=Faults(broken_json=0.3, broken_json_kinds=("wrong_type",))) as sim:
        llm = llm_for(sim, "anthropic", store=tmp_path / "s.sqlite3")
        first = await llm.amap(prompts, schema=Result, max_reasks=0)
        failed = sum(not r.ok for r in first)
        assert failed > 3 and requests(sim) == 40
        rerun = await llm.amap(prompts, schema=Result)
        assert requests(sim) == 40 + failed  # the valid ones were not sent again
    assert [r.parsed.result for r in rerun] == labels


# ---- both wires, sync and async; the LLM setting; what does not take a schema -------------------------
@pytest.mark.parametrize("streaming", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("wire", WIRES)
async def test_invoke_and_ainvoke_with_the_schema_as_a_setting(wire, streaming) -> None:
    schema = {"title": "Math", "type": "object", "required": ["expression", "result"],
              "properties": {"expression": {"type": "string"}, "result": {"type": "integer"}}}
    with sim_with() as sim:
        llm = llm_for(sim, wire, store=False, streaming=streaming, schema=schema)
        sync = llm.invoke(TEMPLATE.format(question="9 x 9") + " [[sim:broken_json_missing_field:once]]")
        asynchronous = await llm.ainvoke(TEMPLATE.format(question="10 x 10"))
        plain = await llm.ainvoke("Hello there", schema=None)  # a per-call None turns the setting off
    assert sync.parsed == {"expression": "9 x 9", "result": 81} and len(sync.attempts) == 2
    assert asynchronous.parsed["result"] == 100 and len(asynchronous.attempts) == 1
    assert plain.parsed is None and plain.attempts == []


async def test_agenerate_and_callbacks_with_a_schema() -> None:
    class Ends(nbllm.BaseCallbackHandler):
        def __init__(self) -> None:
            self.ends, self.tokens = 0, 0

        def on_llm_new_token(self, token: str, **kw) -> None:
            self.tokens += 1

        def on_llm_end(self, response, **kw) -> None:
            self.ends += 1

    ends = Ends()
    with sim_with() as sim:
        result = await llm_for(sim, "openai", store=False).agenerate([TEMPLATE.format(question="1 + 1")], schema=Result)
        r = await llm_for(sim, "openai", store=False, callbacks=[ends], schema=Result).ainvoke(TEMPLATE.format(question="2 + 2"))
    assert json.loads(result.generations[0][0].text)["result"] == 2
    assert r.parsed.result == 4 and ends.ends == 1 and ends.tokens == 0  # a re-askable answer is not streamed


def test_streaming_methods_refuse_a_schema() -> None:
    llm = nbllm.LLM("gpt-4o-mini", schema=Result)
    with pytest.raises(nbllm.ConfigurationError, match="invoke"):
        next(iter(llm.stream("hi")))
    with pytest.raises(nbllm.ConfigurationError, match="max_reasks must be 0 or more"):
        nbllm.LLM("gpt-4o-mini", max_reasks=-1)


def test_import_nbllm_needs_neither_pydantic_nor_jsonschema() -> None:
    import subprocess
    import sys

    code = ("import sys, nbllm; nbllm.LLM(); "
            "print(sorted(m for m in ('pydantic', 'jsonschema', 'pandas') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_no_key_in_store_rows_of_a_structured_call(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    with sim_with(keys={KEY: KeyProfile(alias="only")}) as sim:
        llm = llm_for(sim, "openai", store=path)
        llm.invoke(TEMPLATE.format(question="3 + 3") + " [[sim:broken_json_wrong_type:once]]", schema=Result)
        llm.store.close()  # commits what the writer thread holds
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert KEY not in dump and "response_schema" in dump
