"""How answers look: streamed into an output as they arrive, then rendered once when complete.

- ``render``: the ``LiveRenderer`` — one throttled display per answer (escaped text while streaming,
  Markdown/code/JSON/HTML once at the end), sharing one process-wide update budget.
- ``columns``: several models' answers streaming side by side in one throttled display.
- ``html``: the small HTML pieces of answers, questions, histories and stats (pure).

Used by the ``%%llm`` magics (``nbllm._jupyter``) and the ``PromptPanel`` (``nbllm._widgets``); nothing
here knows about either.
"""

from .columns import Column, CompareView, compare, compare_html
from .html import (
    GREEN,
    ORANGE,
    RED,
    answer_html,
    history_html,
    live_stats_html,
    markdown_to_html,
    question_html,
    stats_html,
)
from .render import (
    FORMATS,
    DisplaySink,
    LiveRenderer,
    default_sink,
    error_bundle,
    extract_code,
    note_for,
    render_bundle,
)

__all__ = [
    "FORMATS",
    "GREEN",
    "ORANGE",
    "RED",
    "Column",
    "CompareView",
    "DisplaySink",
    "LiveRenderer",
    "answer_html",
    "compare",
    "compare_html",
    "default_sink",
    "error_bundle",
    "extract_code",
    "history_html",
    "live_stats_html",
    "markdown_to_html",
    "note_for",
    "question_html",
    "render_bundle",
    "stats_html",
]
