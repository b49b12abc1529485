"""Streaming display in a real kernel: 20 answers streamed at once at 100 tokens/s each.

A real IPython kernel (``jupyter_client.KernelManager``) runs one cell that streams 20 concurrent
answers from the simulator (another process, ``tokens_per_second=100``) into 20 outputs:

- **nbllm**: what ``%%llm`` does (``nbllm._jupyter.cellrunner``): ``async with LiveRenderer("markdown")``
  fed from ``llm.astream_events``;
- **naive**: ``handle = display("", display_id=True)`` then ``handle.update(text)`` on every token.

Both read the same ``llm.astream_events`` stream, so the difference is the display alone. Measured from
the iopub channel: display messages per second per stream (Jupyter Server drops iopub above 1000 msg/s
in all), the kernel's CPU (psutil on the kernel pid), and the delay from the last token's arrival in the
kernel (``time.time()`` recorded by the cell) to the final display message (its header date, and when
this process received it).
"""

from __future__ import annotations

import ast
import json
import time
from collections import defaultdict
from typing import Any

from ._common import Headline, Section, SimProcess, Table

STREAMS = 20
TOKENS_PER_SECOND = 100
MSG_TARGET = 20.0
DELAY_TARGET = 0.100

_SETUP = r'''
import asyncio, json, time
import nbllm
llm = nbllm.LLM("gpt-4o-mini", base_url={url!r}, api_key="sk-bench-streaming", store=False)
PROMPTS = {prompts!r}
_last, _ids, _texts = {{}}, {{}}, {{}}
'''

_NBLLM_CELL = r'''
from nbllm._display.render import LiveRenderer

async def _one(i):
    async with LiveRenderer("markdown") as view:
        _ids[i] = view._sink.handle.display_id if view._sink is not None else None
        async for event in llm.astream_events(PROMPTS[i]):
            if event.event == "on_llm_stream":
                _last[i] = time.time()
                view.append(event.data["chunk"])
    _texts[i] = view.text

await asyncio.gather(*(_one(i) for i in range(len(PROMPTS))))
_bench_json = json.dumps({"last": _last, "ids": _ids, "texts": _texts})
'''

_NAIVE_CELL = r'''
from IPython.display import display

async def _one(i):
    handle = display("", display_id=True)
    _ids[i] = handle.display_id
    text = ""
    async for event in llm.astream_events(PROMPTS[i]):
        if event.event == "on_llm_stream":
            _last[i] = time.time()
            text += event.data["chunk"]
            handle.update(text)
    _texts[i] = text

await asyncio.gather(*(_one(i) for i in range(len(PROMPTS))))
_bench_json = json.dumps({"last": _last, "ids": _ids, "texts": _texts})
'''


def _long_prompts(n: int) -> list[str]:
    """Prompts whose simulated answers are long prose (≥ 140 tokens, about 1.5 s at 100 tokens/s)."""
    from nbllm._sim._answers import answer_text
    from nbllm._sim._tokens import tokenize

    prompts, i = [], 0
    while len(prompts) < n:
        prompt = f"Tell me about the history of topic number {i}."
        if len(tokenize(answer_text(prompt, 0, (0.97, 0.015, 0.015)))) >= 140:
            prompts.append(prompt)
        i += 1
    return prompts


def _execute(kc: Any, code: str, timeout: float = 120) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``code``; return the iopub messages it caused (with receive times) and the execute reply."""
    msg_id = kc.execute(code)
    messages = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        received = time.time()
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append({"type": msg["msg_type"], "date": msg["header"]["date"].timestamp(), "received": received,
                         "content": msg["content"]})
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    return messages, reply["content"]


def _user_expression(kc: Any, expression: str) -> Any:
    msg_id = kc.execute("", user_expressions={"r": expression}, silent=True)
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    value = reply["content"]["user_expressions"]["r"]
    if value.get("status") != "ok":
        raise RuntimeError(f"kernel expression failed: {value}")
    return ast.literal_eval(value["data"]["text/plain"])


def _run_variant(name: str, cell: str, url: str, prompts: list[str]) -> dict[str, Any]:
    import psutil
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        _, reply = _execute(kc, _SETUP.format(url=url, prompts=prompts))
        if reply["status"] != "ok":
            raise RuntimeError(f"setup failed: {reply}")
        _execute(kc, "await llm.ainvoke('warm up')")  # engine thread, connection, imports
        kernel = psutil.Process(km.provisioner.process.pid)
        cpu_before = sum(kernel.cpu_times()[:2])
        wall = time.perf_counter()
        messages, reply = _execute(kc, cell)
        wall = time.perf_counter() - wall
        cpu = sum(kernel.cpu_times()[:2]) - cpu_before
        if reply["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply.get('ename')}: {reply.get('evalue')}")
        result = json.loads(_user_expression(kc, "_bench_json"))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return _analyze(name, messages, result, cpu, wall)


def _bundle_text(content: dict[str, Any]) -> str:
    data = content.get("data", {})
    return data.get("text/markdown") or data.get("text/plain") or ""


def _analyze(name: str, messages: list[dict[str, Any]], result: dict[str, Any], cpu: float, wall: float) -> dict[str, Any]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        if m["type"] in ("display_data", "update_display_data"):
            display_id = m["content"].get("transient", {}).get("display_id")
            by_id[display_id].append(m)
    rates, kernel_delays, client_delays, complete = [], [], [], 0
    for i, display_id in result["ids"].items():
        msgs = by_id.get(display_id, [])
        last_chunk = result["last"].get(i)
        if not msgs or last_chunk is None:
            continue
        span = max(msgs[-1]["date"] - msgs[0]["date"], 1e-3)
        rates.append(len(msgs) / span)
        final = msgs[-1]
        kernel_delays.append(final["date"] - last_chunk)
        client_delays.append(final["received"] - last_chunk)
        text = result["texts"][i]
        shown = _bundle_text(final["content"])
        complete += bool(text) and text.strip() in shown.replace("\\n", "\n")
    displays = [m for m in messages if m["type"] in ("display_data", "update_display_data")]
    # the busiest second of the whole cell (all streams together), by kernel-side timestamps
    per_second: dict[int, int] = defaultdict(int)
    for m in displays:
        per_second[int(m["date"])] += 1
    return {
        "name": name, "streams": len(result["ids"]), "display_messages": len(displays),
        "msg_per_s_per_stream_mean": sum(rates) / len(rates) if rates else None,
        "msg_per_s_per_stream_max": max(rates) if rates else None,
        "peak_total_msg_per_s": max(per_second.values()) if per_second else 0,
        "kernel_cpu": cpu, "wall": wall,
        "delay_kernel_max": max(kernel_delays) if kernel_delays else None,
        "delay_kernel_mean": sum(kernel_delays) / len(kernel_delays) if kernel_delays else None,
        "delay_received_max": max(client_delays) if client_delays else None,
        "final_complete": complete,
    }


def run(quick: bool = False) -> Section:
    from nbllm.sim import SimConfig

    started = time.perf_counter()
    try:
        from nbllm._display.render import LiveRenderer  # noqa: F401
        have_renderer = True
    except ImportError:
        have_renderer = False
    prompts = _long_prompts(STREAMS)
    rows = []
    with SimProcess(SimConfig(tokens_per_second=TOKENS_PER_SECOND, ttft=0.25)) as sim:
        url = sim.base_url + "/v1"
        variants = ([("nbllm LiveRenderer (as %%llm)", _NBLLM_CELL)] if have_renderer else []) + [
            ("naive display + handle.update per token", _NAIVE_CELL)]
        for name, cell in variants:
            try:
                row = _run_variant(name, cell, url, prompts)
            except Exception as exc:  # noqa: BLE001
                row = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            rows.append(row)
            if "error" in row:
                print(f"  streaming {name}: FAILED {row['error']}", flush=True)
            else:
                print(f"  streaming {name:45s} {row['msg_per_s_per_stream_mean']:.1f} msg/s/stream, kernel CPU "
                      f"{row['kernel_cpu']:.2f}s, last-token delay max {row['delay_kernel_max'] * 1000:.0f} ms", flush=True)
    return _section(rows, have_renderer, time.perf_counter() - started)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f}"


def _section(rows: list[dict[str, Any]], have_renderer: bool, seconds: float) -> Section:
    table = Table(["display", "msgs / s per stream (mean / max)", "peak msgs / s (all streams)", "display messages",
                   "kernel CPU (s)", "cell wall (s)", "last token → final display, kernel (ms, mean / max)",
                   "… → received here (ms, max)", "final output complete"], [],
                  f"{STREAMS} answers streamed at once, {TOKENS_PER_SECOND} tokens/s each, in a real ipykernel:")
    for r in rows:
        if "error" in r:
            table.rows.append([r["name"], "failed: " + r["error"][:100]] + ["—"] * 7)
            continue
        table.rows.append([
            r["name"], f"{r['msg_per_s_per_stream_mean']:.1f} / {r['msg_per_s_per_stream_max']:.1f}",
            r["peak_total_msg_per_s"], r["display_messages"], f"{r['kernel_cpu']:.2f}", f"{r['wall']:.2f}",
            f"{_ms(r['delay_kernel_mean'])} / {_ms(r['delay_kernel_max'])}", _ms(r["delay_received_max"]),
            f"{r['final_complete']}/{r['streams']}"])
    headlines = []
    nb = next((r for r in rows if r["name"].startswith("nbllm") and "error" not in r), None)
    naive = next((r for r in rows if r["name"].startswith("naive") and "error" not in r), None)
    if not have_renderer:
        headlines.append(Headline("pending LiveRenderer: nbllm._display.render.LiveRenderer is not importable yet", None))
    if nb:
        headlines.append(Headline(f"nbllm ≤ {MSG_TARGET:g} display messages / s per stream: "
                                  f"{nb['msg_per_s_per_stream_max']:.1f} at most (mean {nb['msg_per_s_per_stream_mean']:.1f})"
                                  + (f"; naive per-token updates: {naive['msg_per_s_per_stream_mean']:.0f} "
                                     f"({naive['msg_per_s_per_stream_mean'] / nb['msg_per_s_per_stream_mean']:.0f}× more)"
                                     if naive else ""), nb["msg_per_s_per_stream_max"] <= MSG_TARGET))
        headlines.append(Headline(f"last token → its display ≤ {DELAY_TARGET * 1000:.0f} ms: "
                                  f"{_ms(nb['delay_kernel_max'])} ms at most in the kernel, "
                                  f"{_ms(nb['delay_received_max'])} ms until received by the client",
                                  nb["delay_kernel_max"] is not None and nb["delay_kernel_max"] <= DELAY_TARGET))
        if naive:
            headlines.append(Headline(f"kernel CPU: nbllm {nb['kernel_cpu']:.2f} s vs naive {naive['kernel_cpu']:.2f} s "
                                      f"({naive['kernel_cpu'] / nb['kernel_cpu']:.1f}× less); all streams together peak at "
                                      f"{nb['peak_total_msg_per_s']} msg/s vs {naive['peak_total_msg_per_s']} (Jupyter Server's "
                                      "limit: 1000)", nb["kernel_cpu"] <= naive["kernel_cpu"]))
    notes = [
        "Messages are display_data + update_display_data on iopub for each stream's display id; per-stream rate = "
        "messages / (last − first message time). Timestamps are the kernel's message header dates.",
        "Kernel CPU covers the whole cell (user + system of the kernel process, all threads, nbllm's engine thread "
        "included), the same stream reading in both variants.",
        "'Final output complete': the last message of each display holds the whole answer.",
    ]
    return Section("streaming", "3. Streaming display in a real kernel", "", headlines, [table], notes, {"rows": rows},
                   seconds)


if __name__ == "__main__":
    print(run().markdown())
