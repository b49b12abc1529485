"""Opt-in nesting of event loops, never applied on import (``docs/ARCHITECTURE.md``, "Engine loop")."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["enable_nesting"]

_enabled = False


def enable_nesting() -> None:
    """Patch asyncio with ``nest-asyncio2`` so ``asyncio.run()`` works inside a running loop.

    Use it only for pasted scripts that call ``asyncio.run()`` in a notebook; it slows task stepping for
    the whole process a little. Idempotent.
    """
    global _enabled
    if _enabled:
        return
    import nest_asyncio2

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        nest_asyncio2.apply(loop)
    else:
        nest_asyncio2.apply()
    _enabled = True
    print("nbllm: loop nesting enabled (nest-asyncio2); asyncio.run() now works in this kernel.", file=sys.stderr)
