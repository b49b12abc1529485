"""nbllm in a notebook's cells: ``%%llm``, ``%llm`` and ``%llm_config``.

- ``magics``: the magics and their settings; a ``%%llm`` cell becomes a top-level await.
- ``cellsyntax``: how a ``%%llm`` cell is read and rewritten (pure).
- ``cellrunner``: one ``%%llm`` answer, streamed into the cell.
- ``datacell``: ``--over`` (a batch over a table), ``-m a,b`` (models side by side), ``--estimate``.

Loaded on ``%load_ext nbllm`` only (PEP 562 ``__getattr__`` below): a script that uses ``nbllm.LLM``
never pays for IPython's magics machinery.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NbllmMagics", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import magics

        return getattr(magics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
