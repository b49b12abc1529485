"""API keys: what the user configures, read from arguments, the environment or a ``.env`` file.

The seed's ``.env`` (``API_KEY=sk-a,sk-b,sk-c`` plus ``BASE_URL``) works as is, and so do the official
SDKs' variables (``OPENAI_API_KEY``/``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL``).
Several keys may be comma separated in any of them; ``NBLLM_RPM``/``NBLLM_TPM`` set limits for keys read
from the environment.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from .._exceptions import ConfigurationError
from .._secrets import mask_key, register_secret

__all__ = ["ApiKey", "KeySpec", "keys_from_env", "load_env", "to_api_key"]


@dataclass(frozen=True)
class ApiKey:
    """One key and what it may be used for. Its value never appears in a repr.

    ``provider`` is the wire format (``"openai"`` for any OpenAI-compatible server, ``"anthropic"``) or
    None for "any"; ``models`` limits which models it serves (None: all); ``rpm``/``tpm`` are the limits
    you know (None: learned from the provider's headers and 429s).
    """

    value: str = field(repr=False)
    alias: str = ""
    provider: str | None = None
    base_url: str | None = None
    models: tuple[str, ...] | None = None
    rpm: float | None = None
    tpm: float | None = None
    auth_header: str = "bearer"

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise ConfigurationError(f"Key {self.alias or '?'}: a key must be a string, got {type(self.value).__name__}.")
        # a key pasted with a newline or spaces around it is the same key (no transport may send "\n" in a header)
        object.__setattr__(self, "value", self.value.strip())
        register_secret(self.value)
        _check_header_safe(self.value, self.alias or self.masked)
        if self.provider not in (None, "openai", "anthropic"):
            raise ConfigurationError(
                f"Key {self.alias or self.masked}: provider must be 'openai' (any OpenAI-compatible server) "
                f"or 'anthropic', not {self.provider!r}."
            )
        for name in ("rpm", "tpm"):
            limit = getattr(self, name)
            if limit is not None and not _positive_number(limit):
                raise ConfigurationError(
                    f"Key {self.alias or self.masked}: {name} must be positive (a number of "
                    f"{'requests' if name == 'rpm' else 'tokens'} a minute), or None to learn it from the "
                    f"provider; got {limit!r}."
                )

    @property
    def masked(self) -> str:
        return mask_key(self.value)

    def __repr__(self) -> str:
        limits = "".join(f" {n}={getattr(self, n):g}" for n in ("rpm", "tpm") if getattr(self, n))
        return f"ApiKey({self.alias!r}, {self.masked}, provider={self.provider}{limits})"

    def serves(self, wire_format: str, model: str) -> bool:
        if self.provider is not None and self.provider != wire_format:
            return False
        return self.models is None or model in self.models


KeySpec = Union[ApiKey, str, Mapping[str, Any]]


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_header_safe(value: str, name: str) -> None:
    """A key goes into an HTTP header: only visible Latin-1 characters and spaces fit (never shown here)."""
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc" or ord(char) > 0xFF:
            what = "a control character" if unicodedata.category(char) == "Cc" else f"U+{ord(char):04X}"
            raise ConfigurationError(
                f"Key {name}: the key has {what} at position {position}, which cannot be sent in an HTTP "
                "header. It was probably copied with extra characters: copy it again from the provider's console."
            )


def to_api_key(spec: KeySpec, default_alias: str) -> ApiKey:
    """Accept an ApiKey, a bare key string, or a dict of ApiKey fields (``key`` or ``value`` for the key)."""
    if isinstance(spec, ApiKey):
        return spec if spec.alias else _with_alias(spec, default_alias)
    if isinstance(spec, str):
        return ApiKey(spec.strip(), alias=default_alias)
    if isinstance(spec, Mapping):
        fields = dict(spec)
        value = fields.pop("key", None) or fields.pop("value", None) or fields.pop("api_key", None)
        if not value:
            raise ConfigurationError("A key dict needs 'key': {'key': 'sk-…', 'alias': 'main', 'rpm': 500}.")
        if fields.get("models") is not None:
            fields["models"] = tuple(fields["models"])
        fields.setdefault("alias", default_alias)
        try:
            return ApiKey(str(value), **fields)
        except TypeError as error:
            raise ConfigurationError(f"Unknown key setting: {error}. Known: alias, provider, base_url, models, rpm, tpm, auth_header.") from None
    raise ConfigurationError(f"A key must be a string, a dict or an ApiKey, got {type(spec).__name__}.")


def _with_alias(key: ApiKey, alias: str) -> ApiKey:
    from dataclasses import replace

    return replace(key, alias=alias)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _env_limit(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number; set it like {name}=500.") from None


def keys_from_env(env: Mapping[str, str] | None = None, dotenv: bool = True) -> list[ApiKey]:
    """Keys from ``env`` (default: the process environment, over a ``.env`` file found from the cwd)."""
    merged = load_env(dotenv) if env is None else dict(env)
    rpm, tpm = _env_limit(merged, "NBLLM_RPM"), _env_limit(merged, "NBLLM_TPM")
    sources: Sequence[tuple[str, str, str | None, str]] = (
        ("API_KEY", "BASE_URL", "openai", "key"),
        ("OPENAI_API_KEY", "OPENAI_BASE_URL", "openai", "openai"),
        ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "anthropic", "anthropic"),
    )
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for key_var, url_var, provider, prefix in sources:
        # one real key is one pool key: a repeat (in one variable or across them) would double its rate
        values = [v for v in dict.fromkeys(_split(merged.get(key_var))) if v not in seen]
        for i, value in enumerate(values, 1):
            seen.add(value)
            keys.append(
                ApiKey(value, alias=f"{prefix}-{i}", provider=provider, base_url=merged.get(url_var) or None, rpm=rpm, tpm=tpm)
            )
    return keys


def load_env(dotenv: bool) -> dict[str, str]:
    """The process environment over the variables of a `.env` file found from the cwd (if `dotenv`)."""
    merged: dict[str, str] = {}
    if dotenv:
        from dotenv import dotenv_values, find_dotenv

        path = find_dotenv(usecwd=True)
        if path:
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)  # the real environment wins over the file, as with load_dotenv()
    return merged
