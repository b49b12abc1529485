"""LangChain-style callbacks: ``on_llm_start``, ``on_llm_new_token``, ``on_llm_end``, ``on_llm_error``.

Callbacks run in the caller's thread (and loop), never on the engine loop, so ``print`` goes to the
cell that made the call. A handler may implement any subset; methods may be sync or ``async def``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["BaseCallbackHandler", "StreamingStdOutCallbackHandler", "dispatch", "wants_tokens"]


class BaseCallbackHandler:
    """Subclass and override what you need; every method is a no-op here."""

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> Any:
        """Before the request is sent."""

    def on_llm_new_token(self, token: str, **kwargs: Any) -> Any:
        """For every piece of text as it streams in."""

    def on_llm_end(self, response: Any, **kwargs: Any) -> Any:
        """With the LLMResult once the answer is complete."""

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> Any:
        """When the call failed."""


class StreamingStdOutCallbackHandler(BaseCallbackHandler):
    """Print tokens to stdout as they arrive (LangChain's handler of the same name)."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        out = self.file or sys.stdout
        out.write(token)
        out.flush()


def wants_tokens(handlers: Sequence[Any]) -> bool:
    """Whether any handler does something with tokens (then the call must stream)."""
    for handler in handlers:
        method = getattr(type(handler), "on_llm_new_token", None)
        if method is not None and method is not BaseCallbackHandler.on_llm_new_token:
            return True
    return False


async def dispatch(handlers: Sequence[Any], name: str, *args: Any, **kwargs: Any) -> None:
    """Call ``name`` on every handler that has it; await it if it is a coroutine."""
    for handler in handlers:
        method = getattr(handler, name, None)
        if method is None:
            continue
        result = method(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
