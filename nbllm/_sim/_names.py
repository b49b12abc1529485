"""Plausible values for a JSON field, chosen by its name: ``email`` gets an address, ``age`` a small integer. Pure.

Example::

    named_value("city", "string", Hints(), random.Random(1))   # -> "Osaka"
    named_value("result", "integer", Hints(value=7), rng)      # -> 7 (arithmetic wins)

The schema generator (`_schema`) clamps the value to the schema's bounds and lengths afterwards.
"""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Hints", "named_value"]


@dataclass(frozen=True)
class Hints:
    """What the prompt lets a field be answered meaningfully with."""

    expression: str | None = None
    """The arithmetic expression the prompt asks about, if any."""
    value: int | float | None = None
    """Its value (possibly deliberately wrong, see `SimConfig.arithmetic_accuracy`)."""
    text: str = ""
    """A sentence about the prompt's topic, for free-text fields (summary, explanation...)."""


_FIRST = ("Ada", "Alan", "Grace", "Linus", "Maria", "Kenji", "Amara", "Sofia", "Omar", "Lena")
_LAST = ("Lovelace", "Turing", "Hopper", "Okafor", "Tanaka", "Rossi", "Novak", "Haddad", "Silva", "Berg")
_CITIES = ("Lisbon", "Osaka", "Nairobi", "Montreal", "Tallinn", "Lyon", "Busan", "Porto", "Quito")
_COUNTRIES = ("Portugal", "Japan", "Kenya", "Canada", "Estonia", "France", "Chile", "Norway")
_LANGUAGES = ("English", "French", "Japanese", "Swahili", "Portuguese", "German")
_COLORS = ("blue", "green", "amber", "red", "violet", "teal")
_WORDS = ("river", "signal", "garden", "method", "pattern", "window", "season", "detail", "journey", "habit")
_ADJECTIVES = ("Quiet", "Bright", "Gentle", "Curious", "Steady", "Simple", "Careful", "Golden")
_SENTIMENTS = ("positive", "neutral", "negative")

_EXPRESSION = re.compile(r"(^|_)(expression|expr|formula|equation|calculation|problem)s?($|_)")
_RESULT = re.compile(r"(^|_)(result|answer|value|total|sum|product|solution|output|quotient|difference)s?($|_)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _sentence(rng: random.Random, hints: Hints) -> str:
    if hints.text:
        return hints.text
    return f"The {rng.choice(_ADJECTIVES).lower()} {rng.choice(_WORDS)} shapes the {rng.choice(_WORDS)}."


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_WORDS)}".title()


def _date(rng: random.Random) -> str:
    return f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _datetime(rng: random.Random) -> str:
    return f"{_date(rng)}T{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}:00Z"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date": _date,
    "date-time": _datetime,
    "time": lambda rng: f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}:00Z",  # RFC 3339 wants the zone
    "email": lambda rng: f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@example.com".lower(),
    "uri": lambda rng: f"https://example.com/{rng.choice(_WORDS)}",
    "url": lambda rng: f"https://example.com/{rng.choice(_WORDS)}",
    "uri-reference": lambda rng: f"/{rng.choice(_WORDS)}",
    "uuid": _uuid,
    "hostname": lambda rng: f"{rng.choice(_WORDS)}.example.com",
    "ipv4": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
    "ipv6": lambda rng: f"2001:db8::{rng.randint(1, 0xFFFF):x}",
    "duration": lambda rng: f"P{rng.randint(1, 30)}D",
}

def _words_rule(words: str) -> re.Pattern[str]:
    """Match any of ``words`` (``|``-separated) as whole parts of a snake_case name, plural or not."""
    return re.compile(rf"(^|_)({words})(s|es)?($|_)")


# (names, maker), matched on whole snake_case parts ("explanation" is not "nation").
# First match wins, so specific names come first.
_RULES: tuple[tuple[re.Pattern[str], Callable[[random.Random, Hints], Any]], ...] = tuple(
    (_words_rule(words), make)
    for words, make in (
        ("e_?mail", lambda rng, h: _FORMATS["email"](rng)),
        ("url|uri|link|website|homepage", lambda rng, h: _FORMATS["url"](rng)),
        ("first_?name|given_?name", lambda rng, h: rng.choice(_FIRST)),
        ("last_?name|family_?name|surname", lambda rng, h: rng.choice(_LAST)),
        ("name|full_?name|author|person|user|username|owner", lambda rng, h: _name(rng)),
        ("city|cities|town", lambda rng, h: rng.choice(_CITIES)),
        ("country|countries|nation", lambda rng, h: rng.choice(_COUNTRIES)),
        ("language|lang", lambda rng, h: rng.choice(_LANGUAGES)),
        ("colou?r", lambda rng, h: rng.choice(_COLORS)),
        ("id|uuid|guid", lambda rng, h: _uuid(rng)),
        ("phone|mobile|telephone", lambda rng, h: f"+1-555-01{rng.randint(0, 99):02d}"),
        ("created|updated|timestamp|datetime|at", lambda rng, h: _datetime(rng)),
        ("date|birthday|deadline|dob", lambda rng, h: _date(rng)),
        ("age", lambda rng, h: rng.randint(18, 90)),
        ("year", lambda rng, h: rng.randint(1950, 2025)),
        ("month", lambda rng, h: rng.randint(1, 12)),
        ("score|confidence|probability|likelihood|certainty", lambda rng, h: round(rng.uniform(0.55, 0.99), 2)),
        ("rating|stars", lambda rng, h: rng.randint(1, 5)),
        ("price|cost|salary|amount|budget", lambda rng, h: round(rng.uniform(5, 500), 2)),
        ("percent|percentage|pct", lambda rng, h: rng.randint(1, 100)),
        ("count|number|num|quantity|qty|size|length|n", lambda rng, h: rng.randint(1, 20)),
        ("sentiment|mood|tone", lambda rng, h: rng.choice(_SENTIMENTS)),
        ("category|categories|label|type|kind|class|tag|keyword|topic", lambda rng, h: rng.choice(_WORDS)),
        ("title|headline|subject|heading", lambda rng, h: _title(rng)),
        ("address|street", lambda rng, h: f"{rng.randint(1, 99)} Harbour Street"),
        ("zip|zip_?code|postal_?code|postcode", lambda rng, h: f"{rng.randint(10000, 99999)}"),
        ("lat|latitude", lambda rng, h: round(rng.uniform(-60, 60), 4)),
        ("lon|lng|longitude", lambda rng, h: round(rng.uniform(-150, 150), 4)),
        ("currency|currencies", lambda rng, h: rng.choice(("EUR", "USD", "JPY"))),
        (
            "summary|summaries|description|explanation|reason|reasoning|rationale|justification|text|content|"
            "body|answer|response|reply|comment|message|note|step|thought|analysis",
            _sentence,
        ),
    )
) + ((re.compile(r"^(is|has|can|should)_"), lambda rng, h: rng.random() < 0.5),)


def _snake(name: str) -> str:
    """Return ``firstName`` / ``first-name`` as ``first_name``."""
    return _CAMEL.sub("_", name).replace("-", "_").lower()


def _arithmetic(name: str, kind: str, hints: Hints) -> tuple[bool, Any]:
    """Return (True, value) when the field is the arithmetic expression or its result."""
    if hints.expression is not None and kind in ("string", "any") and _EXPRESSION.search(name):
        return True, hints.expression
    if hints.value is not None and _RESULT.search(name):
        if kind == "string":
            return True, str(hints.value)
        if kind == "integer":
            return True, int(round(hints.value))
        return True, hints.value
    return False, None


def _as_kind(value: Any, kind: str, rng: random.Random) -> Any:
    """Coerce a guessed value to the JSON type the schema wants."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return str(value)
    if kind == "integer":
        return int(round(value)) if numeric else rng.randint(1, 100)
    if kind == "number":
        return value if numeric else round(rng.uniform(1, 100), 2)
    return value


def named_value(name: str, kind: str, hints: Hints, rng: random.Random, fmt: Any = None) -> Any:
    """Return a plausible value of JSON type ``kind`` ("string", "integer", "number" or "any") for ``name``."""
    if kind == "string" and isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt](rng)
    snake = _snake(name)
    found, value = _arithmetic(snake, kind, hints)
    if found:
        return value
    for pattern, make in _RULES:
        if pattern.search(snake):
            return _as_kind(make(rng, hints), kind, rng)
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(1, 100), 2)
    return f"{rng.choice(_ADJECTIVES).lower()} {rng.choice(_WORDS)}"
