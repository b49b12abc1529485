"""What calls cost: model prices from genai-prices' bundled data, your own prices, and the batch discount.

```python
>>> cost("openai:gpt-4o-mini", Usage(prompt_tokens=1_000, completion_tokens=500))
0.00045
>>> cost("openai:gpt-4o-mini", Usage(1_000, 500), batch=True)      # the provider's Batch API price
0.000225
>>> set_price("ollama:llama3", input=0, output=0)                   # your own price for a model
>>> prices("gpt-4o-mini", "anthropic:claude-haiku-4-5")             # the table, with the data's date
```

Prices are USD per million tokens. They come from ``genai-prices`` (kept by the pydantic team, with
cached-input, long-context and batch rates), read from the data bundled in the installed package: nbllm
never starts its online updater, so nothing is fetched. Its data carries no date of its own; the date
shown is that of the newest price change it records that is in force today. genai-prices is imported on the first price
asked for (~0.2 s, once), not by ``import nbllm``. A price set with ``set_price`` wins over the data.
Unknown models and local servers (``ollama:``, ``vllm:``, ``llamacpp:``) cost ``None``, never a guess.
See docs/ARCHITECTURE.md, "Prices and token counts".
"""

from __future__ import annotations

import datetime as dt
import html
import threading
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from typing import Any

from ._types import Usage

__all__ = ["PriceTable", "Rates", "cost", "data_date", "prices", "rates", "set_price"]

# nbllm's model prefixes -> genai-prices provider ids; local servers have no price
_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic", "deepseek": "deepseek", "openrouter": "openrouter"}
_LOCAL = ("ollama", "vllm", "llamacpp")
# the table prices() shows when no model is named: the models nbllm suggests, plus every price you set
SHOWN_BY_DEFAULT = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o4-mini", "anthropic:claude-haiku-4-5",
                    "anthropic:claude-sonnet-4-5", "anthropic:claude-opus-4-5")
_MILLION = 1_000_000


@dataclass(frozen=True)
class Tier:
    """Rates for a request whose prompt is longer than ``above`` tokens (the whole request pays them)."""

    above: int
    input: float
    output: float
    cached_input: float | None


@dataclass(frozen=True)
class Rates:
    """USD per million tokens for one model (list prices, or batch prices from ``rates(..., batch=True)``)."""

    model: str
    input: float
    output: float
    cached_input: float | None = None
    tiers: tuple[Tier, ...] = ()
    source: str = ""

    def for_prompt(self, prompt_tokens: int) -> Rates:
        """The rates a request with this many prompt tokens pays (long-context tiers, as providers bill)."""
        for tier in reversed(self.tiers):
            if prompt_tokens > tier.above:
                return replace(self, input=tier.input, output=tier.output, cached_input=tier.cached_input, tiers=())
        return self

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """USD for one request; ``cached_tokens`` of the prompt were read from the provider's cache."""
        applied = self.for_prompt(prompt_tokens)
        cached = min(max(cached_tokens, 0), prompt_tokens) if applied.cached_input is not None else 0
        paid = (prompt_tokens - cached) * applied.input + cached * (applied.cached_input or 0.0)
        return (paid + completion_tokens * applied.output) / _MILLION


# ---- lookup -----------------------------------------------------------------------------------------
_overrides: dict[str, tuple[Rates, Rates]] = {}  # normalised model -> (list rates, batch rates)
_overrides_lock = threading.Lock()


def _split(model: str) -> tuple[str | None, str]:
    """``"anthropic:Claude-Haiku-4-5"`` → ``("anthropic", "claude-haiku-4-5")``; a bare name has no prefix."""
    name = model.strip().lower()
    prefix, sep, rest = name.partition(":")
    if sep and (prefix in _PROVIDER_IDS or prefix in _LOCAL):
        return prefix, rest
    return None, name


def _key(model: str) -> str:
    prefix, name = _split(model)
    return name if prefix in (None, "openai", "anthropic") else f"{prefix}:{name}"


def rates(model: str, *, batch: bool = False) -> Rates | None:
    """The rates of ``model`` (``"openai:gpt-4o-mini"``, ``"claude-haiku-4-5-20251001"``…), or None if unknown.

    ``batch=True``: the provider's Batch API rates (half the list price at OpenAI and Anthropic today);
    a provider without a batch price in the data pays its list price.
    """
    with _overrides_lock:
        own = _overrides.get(_key(model))
    if own is not None:
        return own[1] if batch else own[0]
    prefix, name = _split(model)
    if prefix in _LOCAL or not name:
        return None
    return _genai_rates(name, _PROVIDER_IDS.get(prefix or ""), batch)


def cost(model: str, usage: Usage, *, batch: bool = False, cached_tokens: int = 0) -> float | None:
    """USD for one call's ``usage`` (None for an unknown model); ``batch=True`` at Batch API prices."""
    found = rates(model, batch=batch)
    if found is None:
        return None
    return found.cost(usage.prompt_tokens, usage.completion_tokens, cached_tokens)


def set_price(model: str, input: float | None, output: float | None = None, *, cached_input: float | None = None,
              batch_input: float | None = None, batch_output: float | None = None) -> None:
    """Use your own price for ``model`` (USD per million tokens); ``set_price(model, None)`` removes it.

    For a fine-tune, a local model or a negotiated rate. Batch prices default to the list prices
    given (no discount assumed). Matched by the model's name, with or without ``openai:``/``anthropic:``.
    """
    key = _key(model)
    with _overrides_lock:
        if input is None:
            _overrides.pop(key, None)
            return
        if output is None:
            raise ValueError("set_price needs output= too (USD per million completion tokens).")
        listed = Rates(key, float(input), float(output), cached_input, source="set_price")
        batched = Rates(key, float(_pick(batch_input, input)), float(_pick(batch_output, output)), cached_input,
                        source="set_price")
        _overrides[key] = (listed, batched)


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


# ---- genai-prices -----------------------------------------------------------------------------------
_prefetch_lock = threading.Lock()
_prefetched = False


def prefetch() -> None:
    """Import the price table on a background thread, once per process.

    A batch looks its prices up on the caller's side when it starts, and the first lookup imports
    genai-prices (0.2 s, more on a busy machine): done in the background while the first call is on the
    wire, ten batches started together in a notebook cell no longer wait for it.
    """
    global _prefetched
    with _prefetch_lock:
        if _prefetched:
            return
        _prefetched = True
    threading.Thread(target=_snapshot_quietly, name="nbllm-prices", daemon=True).start()


def _snapshot_quietly() -> None:
    try:
        _snapshot()
    except Exception:  # noqa: BLE001 - only a warm-up: the lookup that needs the table reports the error
        pass


def _snapshot() -> Any:
    from genai_prices import (
        data_snapshot,  # the bundled data; nbllm never starts UpdatePrices
    )

    return data_snapshot.get_snapshot()


@lru_cache(maxsize=512)
def _genai_rates(name: str, provider_id: str | None, batch: bool) -> Rates | None:
    """Rates from genai-prices for a model name (cached: computing a cost must stay arithmetic)."""
    snapshot = _snapshot()
    attempts = [(name, provider_id)]
    if "/" in name:  # a router's "openai/gpt-4o-mini": also try the part after the slash
        head, _, tail = name.partition("/")
        attempts.append((tail, _PROVIDER_IDS.get(head, head)))
    for ref, provider in attempts:
        try:
            found_provider, model = snapshot.find_provider_model(ref, None, provider, None)
        except LookupError:
            continue
        now = dt.datetime.now(dt.timezone.utc)
        price = model.get_prices(now, {"processing": "batch"} if batch else None)
        return _to_rates(model.id, price, f"genai-prices ({found_provider.id})")
    return None


def _levels(value: Any) -> tuple[float | None, dict[int, float]]:
    """(base rate, {tier start: rate}) of a genai-prices price: a Decimal, TieredPrices or None."""
    if value is None:
        return None, {}
    if isinstance(value, Decimal):
        return float(value), {}
    return float(value.base), {tier.start: float(tier.price) for tier in value.tiers}


def _to_rates(model_id: str, price: Any, source: str) -> Rates | None:
    (base_in, tiers_in), (base_out, tiers_out) = _levels(getattr(price, "input_mtok", None)), _levels(
        getattr(price, "output_mtok", None))
    base_cached, tiers_cached = _levels(getattr(price, "cache_read_mtok", None))
    if base_in is None or base_out is None:
        return None  # priced by something else (images, audio, searches): not a text model for us
    tiers = tuple(
        Tier(start, _at(start, base_in, tiers_in), _at(start, base_out, tiers_out),
             None if base_cached is None else _at(start, base_cached, tiers_cached))
        for start in sorted({*tiers_in, *tiers_out, *tiers_cached})
    )
    return Rates(model_id, base_in, base_out, base_cached, tiers, source)


def _at(start: int, base: float, tiers: dict[int, float]) -> float:
    """The rate in force from tier ``start`` on: the highest tier at or below it, else the base."""
    below = [s for s in tiers if s <= start]
    return tiers[max(below)] if below else base


@lru_cache(maxsize=1)
def data_date() -> tuple[str, dt.date | None]:
    """(``"genai-prices 0.2.3"``, date of the newest price change in its data that is in force today).

    Changes the data schedules for later (a price announced to start next year) do not count: the
    date says how recent the data is, and those prices are not charged yet.
    """
    from importlib.metadata import version

    today = dt.date.today()
    newest: dt.date | None = None
    for provider in _snapshot().providers:
        for model in provider.models:
            conditions = list(model.prices) if isinstance(model.prices, list) else []
            conditions += list(model.price_variants or [])
            for condition in conditions:
                start = getattr(condition.constraint, "start_date", None)
                if start is not None and start <= today and (newest is None or start > newest):
                    newest = start
    return f"genai-prices {version('genai-prices')}", newest


# ---- the table --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PriceTable:
    """``prices()``: one row per model (USD per million tokens), the data's source and date."""

    rows: tuple[dict[str, Any], ...]
    source: str
    date: dt.date | None

    @property
    def title(self) -> str:
        when = f", newest price change {self.date.isoformat()}" if self.date else ""
        return f"Prices in USD per million tokens ({self.source} bundled data{when}; set_price() overrides)"

    def __repr__(self) -> str:
        head = ("model", "input", "cached input", "output", "batch input", "batch output", "source")
        lines = [self.title, "  ".join(f"{h:>12}" for h in head)]
        for row in self.rows:
            lines.append("  ".join(f"{_cell(row[h]):>12}" for h in head))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = ("model", "input", "cached input", "output", "batch input", "batch output", "source")
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row[h]))}</td>" for h in head) + "</tr>"
                       for row in self.rows)
        return f"<div><b>{html.escape(self.title)}</b><table><tr>{cells}</tr>{body}</table></div>"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def prices(*models: str) -> PriceTable:
    """The prices nbllm uses for ``models`` (default: common models and every price you set)."""
    with _overrides_lock:
        own = list(_overrides)
    names = list(models) or [*SHOWN_BY_DEFAULT, *(m for m in own if m not in SHOWN_BY_DEFAULT)]
    rows = []
    for name in names:
        listed, batched = rates(name), rates(name, batch=True)
        rows.append({
            "model": name, "input": listed and listed.input, "cached input": listed and listed.cached_input,
            "output": listed and listed.output, "batch input": batched and batched.input,
            "batch output": batched and batched.output, "source": listed.source if listed else "unknown",
        })
    source, date = data_date()
    return PriceTable(tuple(rows), source, date)
