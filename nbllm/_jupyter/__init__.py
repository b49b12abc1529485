"""nbllm in Jupyter: the ``%%llm`` magics, the live renderer, and the ``PromptPanel`` widget.

- ``magics``: ``%%llm``, ``%llm`` and ``%llm_config``; a ``%%llm`` cell becomes a top-level await.
- ``cellrunner``: one ``%%llm`` answer, streamed into the cell.
- ``datacell``: ``--over`` a table, ``-m a,b`` side by side, ``--estimate``, ``%llm context``.
- ``compare``: several answers streamed side by side into one output.
- ``render``: the throttled live renderer (escaped text while streaming, Markdown once at the end).
- ``panel``, ``panel_format``: the ``PromptPanel`` widget and its HTML.

Each part loads on first use (PEP 562 ``__getattr__`` below): ``%load_ext nbllm`` does not import
ipywidgets, and a panel does not import IPython's magics machinery.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NbllmMagics", "PromptPanel", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name in ("NbllmMagics", "load_ipython_extension", "unload_ipython_extension"):
        from . import magics

        return getattr(magics, name)
    if name == "PromptPanel":
        from .panel import PromptPanel

        return PromptPanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
