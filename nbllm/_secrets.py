"""Keys are shown only masked (``sk-…abcd``) or by alias, everywhere.

Every key that nbllm is given is registered here, so that ``redact`` can scrub it from any text that
is about to leave the process (error messages from providers echo keys back sometimes, e.g. OpenAI's
"Incorrect API key provided: sk-abc…").
"""

from __future__ import annotations

import re
import threading

__all__ = ["mask_key", "redact", "register_secret"]

_lock = threading.Lock()
# every secret seen in this process; checked by redact()
_known: set[str] = set()
# provider-style keys that may appear in text even if never registered (e.g. a typo'd key echoed back)
_KEY_PATTERN = re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_\-]{8,}([A-Za-z0-9]{4})\b")


def mask_key(key: str | None) -> str:
    """``sk-proj-abcdef…wxyz`` → ``sk-…wxyz``; short or empty keys reveal nothing."""
    if not key:
        return "(no key)"
    if len(key) < 12:
        return "…" + "*" * 4
    prefix = "sk-" if key.startswith("sk-") else ""
    return f"{prefix}…{key[-4:]}"


def register_secret(key: str | None) -> None:
    """Remember a key so that ``redact`` removes it from any text."""
    if key and len(key) >= 6:
        with _lock:
            _known.add(key)


def redact(text: str) -> str:
    """Replace every registered key, and anything shaped like a provider key, by its masked form."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for key in known:
        if key in text:
            text = text.replace(key, mask_key(key))
    return _KEY_PATTERN.sub(lambda m: f"{m.group(1)}…{m.group(2)}", text)
