"""instructor's client for ``bench_structured``, run in its own virtual environment (instructor + openai).

    echo '{"url": ..., "prompts": [...], "concurrency": 32}' | <venv>/bin/python -m benchmarks._instructor_client

instructor 1.17.0 pins ``jiter<0.15`` while current ``openai`` releases need ``jiter>=0.16``, so installing
it next to nbllm's test dependencies would move ``openai`` back to 3.3.0; a separate environment keeps
both intact. Mode ``JSON_SCHEMA`` (``response_format`` json_schema), ``max_retries=3`` (three answers at
most: nbllm's default of one answer plus two re-asks). Prints ``BENCH-RESULT:{json}`` as its last line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import instructor
import openai

from benchmarks._arith_model import Checked


async def _run(url: str, prompts: list[str], concurrency: int) -> dict:
    client = instructor.from_openai(openai.AsyncOpenAI(base_url=url, api_key="sk-bench-instructor", max_retries=4),
                                    mode=instructor.Mode.JSON_SCHEMA)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> int | None:
        async with gate:
            try:
                answer = await client.chat.completions.create(
                    model="gpt-4o-mini", response_model=Checked, max_retries=3,
                    messages=[{"role": "user", "content": prompt}])
            except Exception:  # noqa: BLE001 - instructor raises when its retries run out: a lost item
                return None
            return answer.result

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in prompts))
    return {"results": results, "seconds": time.perf_counter() - start}


def main() -> None:
    args = json.loads(sys.stdin.read())  # thousands of prompts do not fit on a command line
    result = asyncio.run(_run(args["url"], args["prompts"], args["concurrency"]))
    print("BENCH-RESULT:" + json.dumps({**result, "version": instructor.__version__}), flush=True)


if __name__ == "__main__":
    main()
