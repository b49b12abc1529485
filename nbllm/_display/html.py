"""The PromptPanel's HTML, as pure functions of plain data (no widgets, testable as strings).

```python
answer_html({"text/plain": "Rivers"})           # while streaming: escaped, pre-wrapped text
answer_html({"text/markdown": "# Rivers"})      # at the end: rendered markdown
stats_html(response)                            # "88 tokens · 58.1 tokens/s · first token 0.27 s · key …"
```

Markdown is rendered with ``mistune``, which is already present wherever JupyterLab or Notebook is
installed (nbconvert depends on it), so nbllm adds no dependency for it. Where it is missing (a bare
kernel with only ipykernel and ipywidgets) the final answer stays escaped pre-wrapped text. mistune
runs with ``escape=True``: a model's answer is untrusted, and the HTML widget inserts its value as HTML.

The look follows batch progress (``_progress.format_key_table_html``): 12px text in JupyterLab's code
font for numbers, its green/orange/red for states, and JupyterLab's own CSS variables for the rest,
so the panel follows light and dark themes.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from .._types import Response

__all__ = ["answer_html", "history_html", "live_stats_html", "markdown_to_html", "question_html",
           "stats_html"]

# the same colours and fonts as the batch progress key table
RED, ORANGE, GREEN = "#c62828", "#ef6c00", "#2e7d32"
_GREY = "var(--jp-ui-font-color2,#616161)"
_SMALL = f"font-size:12px;color:{_GREY}"
_MONO = "font-family:var(--jp-code-font-family,monospace)"
# a preview this long per turn keeps the history compact; the full text stays in panel.history
_PREVIEW_CHARS = 160
_SHOWN_TURNS = 3


@lru_cache(maxsize=1)
def _markdown_renderer() -> Callable[[str], str] | None:
    """mistune's renderer (escaping raw HTML), or None when mistune is not installed."""
    try:
        import mistune
    except ImportError:
        return None
    # "table" and "strikethrough" are the GitHub extensions models use most; "url" links bare URLs
    return mistune.create_markdown(escape=True, plugins=["strikethrough", "table", "url"])  # type: ignore[return-value]


def markdown_to_html(text: str) -> str:
    """``text`` as HTML: rendered markdown, or escaped pre-wrapped text without mistune."""
    render = _markdown_renderer()
    if render is None:
        return _pre(text)
    return str(render(text))


def _pre(text: str) -> str:
    # pre-wrap keeps the model's line breaks and still wraps long lines inside the panel's width
    return f'<div style="white-space:pre-wrap">{html.escape(text)}</div>'


def answer_html(bundle: Mapping[str, Any], note: str | None = None) -> str:
    """The answer area for one ``LiveRenderer`` bundle: plain text while streaming, markdown at the end.

    ``note`` (e.g. ``"stopped"``) is shown in parentheses under the text, in orange.
    """
    if "text/markdown" in bundle:
        # jp-RenderedHTMLCommon gives headings, lists, code and tables JupyterLab's markdown styles
        body = f'<div class="jp-RenderedHTMLCommon nbllm-final">{markdown_to_html(bundle["text/markdown"])}</div>'
    else:
        body = f'<div class="nbllm-streaming">{_pre(str(bundle.get("text/plain", "")))}</div>'
    if note:
        body += f'<div class="nbllm-note" style="font-size:12px;color:{ORANGE}">({html.escape(note)})</div>'
    return f'<div class="nbllm-answer">{body}</div>'


def question_html(prompt: str) -> str:
    """The prompt being answered, as a small line above the answer."""
    return f'<div style="{_SMALL}"><b>You:</b> {html.escape(_preview(prompt, 400))}</div>'


def _preview(text: str, limit: int = _PREVIEW_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def history_html(messages: Sequence[Mapping[str, Any]], last_turns: int = _SHOWN_TURNS) -> str:
    """Earlier turns, one compact line per message, the latest ``last_turns`` only; '' when none.

    Only the latest turns, and no scroll box: a scroll box in an HTML widget would open at its top, so
    the turn just before the current one would be the hidden one.
    """
    if not messages:
        return ""
    turns = len(messages) // 2
    shown = messages[-2 * last_turns:]
    rows = []
    if len(shown) < len(messages):
        hidden = turns - last_turns
        rows.append(f'<div style="font-style:italic">… {hidden} earlier turn{"s" * (hidden != 1)} '
                    "(all of them are in panel.history and are sent)</div>")
    for message in shown:
        who = "You" if message["role"] == "user" else "Model"
        rows.append(f'<div style="margin:1px 0"><b>{who}:</b> {html.escape(_preview(message["content"]))}</div>')
    title = f'<div style="font-weight:bold">Earlier in this conversation ({turns} turn{"s" * (turns != 1)})</div>'
    return (f'<div class="nbllm-history" style="{_SMALL};border-left:3px solid var(--jp-border-color2,#e0e0e0);'
            f'padding:2px 8px">{title}{"".join(rows)}</div>')


def _stats_line(parts: Sequence[str], colour: str | None = None) -> str:
    style = f"font-size:12px;color:{colour or _GREY};{_MONO}"
    return f'<div class="nbllm-stats" style="{style}">{html.escape(" · ".join(parts))}</div>'


def live_stats_html(chunks: int, elapsed: float, ttft: float | None) -> str:
    """Numbers while streaming; chunks stand in for tokens (providers send about one token per chunk)."""
    parts = [f"≈{chunks} tokens"]
    if ttft is not None and elapsed > ttft and chunks > 1:
        parts.append(f"{chunks / (elapsed - ttft):.1f} tokens/s")
    parts.append("waiting for the first token…" if ttft is None else f"first token {ttft:.2f} s")
    return _stats_line(parts)


def stats_html(response: Response, stopped: bool = False) -> str:
    """The finished answer's numbers: tokens, tokens/s, time to first token, key alias, model."""
    usage = response.usage
    if stopped:
        return _stats_line([f"stopped after ≈{usage.completion_tokens} tokens", f"{response.latency:.1f} s"], ORANGE)
    parts = [f"{usage.completion_tokens} tokens"]
    if response.tokens_per_second is not None:
        parts.append(f"{response.tokens_per_second:.1f} tokens/s")
    if response.time_to_first_token is not None:
        parts.append(f"first token {response.time_to_first_token:.2f} s")
    parts.append(f"{response.latency:.2f} s")
    parts.append(f"key {response.key_alias or '?'}")
    if response.model:
        parts.append(response.model)
    if response.cached:
        parts.append("from the store")
    return _stats_line(parts)
