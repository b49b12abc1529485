"""nbllm's benchmarks: ``python -m benchmarks.run_all [--quick]`` writes benchmarks/RESULTS.md.

Every benchmark module exposes ``run(quick: bool) -> Section`` (see ``_common.Section``); every table in
it reports ratios against baselines measured in the same run. The simulator always runs in a separate
process, so its CPU is never counted as the client's.
"""
