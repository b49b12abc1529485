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
# (key, masked form) of every known key, longest first: rebuilt on register, so redact() neither sorts nor
# masks per call (it runs on every text the store writes: ~5 times per answer)
_replacements: tuple[tuple[str, str], ...] = ()
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
    global _replacements
    if key and len(key) >= 6:
        with _lock:
            if key not in _known:
                _known.add(key)
                _replacements = tuple((k, mask_key(k)) for k in sorted(_known, key=len, reverse=True))


def redact(text: str) -> str:
    """Replace every registered key, and anything shaped like a provider key, by its masked form."""
    if not text:
        return text
    for key, masked in _replacements:  # a tuple swapped whole by register_secret: no lock needed to read it
        if key in text:
            text = text.replace(key, masked)
    if "sk-" not in text:  # the pattern starts with a literal "sk-": the regex could not match
        return text
    return _KEY_PATTERN.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    return f"{match.group(1)}…{match.group(2)}"
