"""The ``PromptPanel`` widget: a prompt box whose answer streams in below it (``panel``), and its
side-by-side compare mode (``compare``). Imported only when a panel is asked for: it needs ipywidgets."""

from .panel import DEFAULT_MODELS, PromptPanel

__all__ = ["DEFAULT_MODELS", "PromptPanel"]
