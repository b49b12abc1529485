"""``python -m benchmarks._child module:function '{"json": "kwargs"}'``: run one client in a fresh process.

Prints ``BENCH-RESULT:{json}`` as the last line of stdout (see ``_common.run_isolated``).
"""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    target, raw = sys.argv[1], sys.argv[2]
    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**json.loads(raw))
    sys.stdout.flush()
    print("BENCH-RESULT:" + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
