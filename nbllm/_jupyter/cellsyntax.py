"""How a ``%%llm`` / ``%llm`` cell is written, read and rewritten. Pure: no IPython state.

```python
parse_llm_cell(["%%llm -t 0\n", "Hi {name}\n"])    # ('-t 0', 'Hi {name}\n')
rewrite_llm_cell(["%%llm\n", "Hi\n"])              # ["await __nbllm_cell__('', 'Hi\\n')\n"]
split_line("-f text -- What is 2 + 2?")             # ('-f text', 'What is 2 + 2?')
```

A ``%%llm`` cell becomes one top-level ``await`` of ``ENTRY`` (see ``magics.py`` and
docs/ARCHITECTURE.md, "%%llm as a top-level await"); everything else is left to IPython.
"""

from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError

__all__ = ["ENTRY", "parse_llm_cell", "parse_options", "rewrite_llm_cell", "split_line"]

ENTRY = "__nbllm_cell__"  # the name the rewritten cell awaits, kept in the user namespace
_MAGIC = "%%llm"


def parse_llm_cell(lines: list[str]) -> tuple[str, str | None] | None:
    """``(magic line, body)`` of a ``%%llm`` cell, ``(line, None)`` of a cell that is one ``%llm`` line."""
    filled = [i for i, text in enumerate(lines) if text.strip()]
    if not filled:
        return None
    first = lines[filled[0]].strip()
    for magic, body in ((_MAGIC, "".join(lines[filled[0] + 1:])), (_MAGIC[1:], None)):
        rest = first[len(magic):]
        if first.startswith(magic) and (not rest or rest[0].isspace()):
            if body is None and len(filled) > 1:
                return None  # a %llm line among other code: left to IPython
            return rest.strip(), body
    return None  # not ours (``%%llm_other`` is another magic)


def rewrite_llm_cell(lines: list[str], autoawait: bool = True) -> list[str]:
    """The transformer's pure core: a ``%%llm`` / ``%llm`` cell as one await; other cells unchanged.

    Without autoawait a ``%%llm`` cell is left to the registered magic, and a ``%llm`` line becomes the
    call IPython would make, written out so that a prompt ending in ``?`` is not taken for a help request.
    """
    parsed = parse_llm_cell(lines)
    if parsed is None:
        return lines
    line, body = parsed
    if autoawait:
        return [f"await {ENTRY}({line!r}, {body!r})\n"]
    if body is None:
        return [f"get_ipython().run_line_magic('llm', {line!r})\n"]
    return lines


def split_line(line: str) -> tuple[str, str]:
    """``%llm [options] -- prompt`` -> (options, prompt); the prompt is never shell-split (apostrophes)."""
    stripped = line.strip()
    if stripped.startswith("--") and (len(stripped) == 2 or stripped[2].isspace()):
        return "", stripped[2:].strip()
    options, sep, prompt = stripped.partition(" -- ")
    if sep:
        return options, prompt.strip()
    if stripped.startswith("-"):
        raise UsageError("Put -- between the options and the prompt: %llm -f text -- PROMPT.")
    return "", stripped


def parse_options(magic: Any, line: str) -> Any:
    """Options of ``%%llm`` split as a shell would: ``-s "Be brief."`` gives ``Be brief.`` without quotes.

    (IPython's ``parse_argstring`` keeps the quotes, which would then be sent to the model.)
    """
    try:
        argv = shlex.split(line)
    except ValueError as error:
        raise UsageError(f"Cannot read the %%llm options {line!r}: {error}.") from None
    return magic.parser.parse_args(argv)
