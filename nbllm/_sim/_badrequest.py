"""The one exception every request validator raises: a request the provider answers with 400."""

from __future__ import annotations

__all__ = ["BadRequest"]


class BadRequest(Exception):
    """A request the provider would answer with 400 invalid_request_error.

    ``param`` and ``code`` fill OpenAI's error fields; Anthropic errors carry only the message.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
