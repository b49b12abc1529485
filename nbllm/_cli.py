"""The ``nbllm`` command: ``demo``, ``sim``, ``bench``, ``status``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from ._demo import main as demo

    demo(n=args.n, model=args.model)
    return 0


def _sim(args: argparse.Namespace) -> int:
    from ._sim import Faults, SimConfig, serve_forever

    faults = Faults(
        broken_json=args.broken_json,
        broken_json_on_reask=args.broken_json_on_reask,
        batch_line_error_rate=args.batch_line_errors,
        batch_expire_rate=args.batch_expire_rate,
    )
    config = SimConfig(
        ttft=args.ttft,
        tokens_per_second=args.tps,
        seed=args.seed,
        faults=faults,
        response_format=args.response_format,
        batch_seconds=args.batch_seconds,
        batch_expire_after=args.batch_expire_after,
    )
    serve_forever(config, host=args.host, port=args.port)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import runpy

    sys.argv = ["benchmarks.run_all", *args.rest]
    runpy.run_module("benchmarks.run_all", run_name="__main__")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ._keys import KeyPool

    pool = KeyPool.from_env()
    print(pool.status() if len(pool) else "No keys configured: nbllm will use its embedded simulator.")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbllm", description="LLMs that feel native in Jupyter.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="10 calls serial vs concurrent, then a streamed answer")
    demo.add_argument("-n", type=int, default=10, help="number of calls (default 10)")
    demo.add_argument("--model", default=None, help="model string, e.g. openai:gpt-4o-mini")
    demo.set_defaults(run=_demo)
    sim = commands.add_parser("sim", help="run the OpenAI/Anthropic-compatible simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--ttft", type=float, default=0.25, help="mean time to first token, seconds")
    sim.add_argument("--tps", type=float, default=60.0, help="tokens per second while streaming")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--batch-seconds", type=float, default=2.0, help="how long a provider batch takes")
    sim.add_argument(
        "--batch-expire-after", type=float, default=None, help="seconds until unfinished batch lines expire"
    )
    sim.add_argument("--batch-line-errors", type=float, default=0.0, help="share of batch lines that fail")
    sim.add_argument("--batch-expire-rate", type=float, default=0.0, help="share of batches that expire half way")
    sim.add_argument(
        "--response-format", choices=("honour", "ignore", "reject"), default="honour",
        help="how the OpenAI route treats response_format (structured outputs)",
    )
    sim.add_argument("--broken-json", type=float, default=0.0, help="share of JSON answers that come back broken")
    sim.add_argument("--broken-json-on-reask", type=float, default=0.0, help="the same share on re-asks")
    sim.set_defaults(run=_sim)
    bench = commands.add_parser("bench", help="run the benchmarks (needs the repository checkout)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(run=_bench)
    status = commands.add_parser("status", help="show the key pool read from the environment / .env")
    status.set_defaults(run=_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
