"""The sections a partial run (``run_all --only latency``) keeps from the previous RESULTS.md.

    kept = previous_sections(BENCH_DIR, skip={"latency"})   # every other section, as it was written
    note = kept_note(kept)                                   # "Kept as measured on <date> (commit …): …"

A section's markdown is read back from RESULTS.md (the block under its ``## title``), its headlines, raw
numbers and the date and commit it was measured at from results.json, so the report stays whole (and
says what is older) while one benchmark is being iterated on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._common import Headline, Section

__all__ = ["kept_note", "previous_sections"]


def _load(bench_dir: Path) -> tuple[dict[str, Any], str]:
    try:
        payload = json.loads((bench_dir / "results.json").read_text(encoding="utf-8"))
        text = (bench_dir / "RESULTS.md").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return {}, ""
    return payload, text


def _blocks(text: str, titles: list[str]) -> dict[str, str]:
    """The markdown under each ``## title`` heading, up to the next known section's heading."""
    starts = {title: text.find(f"\n## {title}\n") for title in titles}
    found = sorted((pos, title) for title, pos in starts.items() if pos >= 0)
    blocks = {}
    for k, (pos, title) in enumerate(found):
        end = found[k + 1][0] if k + 1 < len(found) else len(text)
        blocks[title] = text[pos + len(f"\n## {title}\n"):end].strip("\n")
    return blocks


def previous_sections(bench_dir: Path, skip: set[str]) -> list[Section]:
    """Every section of the previous report whose name is not in ``skip``, in the previous order."""
    payload, text = _load(bench_dir)
    sections = payload.get("sections", {})
    info = payload.get("info", {})
    whole_run = {"date": info.get("date", "an earlier date"), "commit": info.get("commit", "unknown"),
                 "quick": payload.get("quick", False)}
    blocks = _blocks(text, [s["title"] for s in sections.values()])
    kept = []
    for name, old in sections.items():
        if name in skip or old["title"] not in blocks:
            continue
        kept.append(Section(name, old["title"], headlines=[Headline(h["text"], h["met"]) for h in old["headlines"]],
                            data=old.get("data", {}), seconds=old.get("seconds", 0.0),
                            raw=f"## {old['title']}\n\n{blocks[old['title']]}", measured=old.get("measured", whole_run)))
    return kept


def kept_note(kept: list[Section]) -> str:
    """One sentence per earlier run the kept sections come from."""
    runs: dict[tuple[str, str, bool], list[str]] = {}
    for section in kept:
        m = section.measured
        runs.setdefault((m.get("date", "?"), m.get("commit", "?"), bool(m.get("quick"))), []).append(section.title)
    return " ".join(f"Kept as measured on {date} (nbllm commit {commit}{', --quick' if quick else ''}): "
                    f"{', '.join(titles)}." for (date, commit, quick), titles in sorted(runs.items()))
