"""Numbers as people read them in progress lines, key tables and summaries. Pure.

```python
format_count(1234567)    # '1 234 567'
format_tokens(95_300)    # '95.3k'
format_duration(651)     # '10:51'
format_cost(0.0412)      # '$0.041'
```
"""

from __future__ import annotations

__all__ = ["format_cost", "format_count", "format_duration", "format_tokens"]


def format_count(n: int) -> str:
    """``1234567`` → ``"1 234 567"`` (space-grouped, readable in any locale)."""
    return f"{n:,}".replace(",", " ")


def format_tokens(n: float) -> str:
    """``950`` → ``"950"``, ``95_300`` → ``"95.3k"``, ``200_000`` → ``"200k"``, ``1_200_000`` → ``"1.2M"``."""
    if n < 1_000:
        return f"{n:.0f}"
    value, unit = (n / 1_000, "k") if n < 999_950 else (n / 1_000_000, "M")
    return f"{value:.1f}".removesuffix(".0") + unit


def format_duration(seconds: float) -> str:
    """``651`` → ``"10:51"``, ``3723`` → ``"1:02:03"``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_cost(cost: float) -> str:
    # small batches cost fractions of a cent; keep about two significant digits visible
    if cost < 0.01:
        return f"${cost:.4f}"
    if cost < 1:
        return f"${cost:.3f}"
    if cost < 100:
        return f"${cost:.2f}"
    return f"${cost:,.0f}"
