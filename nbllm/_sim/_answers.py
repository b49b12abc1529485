"""Deterministic answers: arithmetic (often as JSON), greetings, verse, and plausible prose.

Everything here is a pure function of the prompt text and the seed, so the same
prompt always gets the same answer, and a test can predict it.
"""

from __future__ import annotations

import json
import random
import re
from fractions import Fraction
from functools import lru_cache

from ._arith import evaluate, fill_template, find_expression, format_number, json_template
from ._hashing import stable_hash
from ._names import Hints
from ._schema import instance
from ._structured import schema_in_text

__all__ = ["answer_text", "arithmetic_answer", "pick_share", "prompt_hints", "styled_json", "wrong_result"]

_GREETING = re.compile(r"^\s*(hi|hello|hey|howdy|greetings|good (morning|afternoon|evening))\b|how are you")
_VERSE = re.compile(r"\b(song|poem|verse|haiku|lyrics|limerick|rhyme)s?\b")
_TOPIC = re.compile(r"\babout ([^.?!,;:\n]{2,60})")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_AN = re.compile(r"\b([Aa]) ([aeio]|u(?!se|ni))")  # "an open", but "a useful", "a unique"

_GREETINGS = (
    "I'm doing well, thank you. How about you?",
    "Hello! I'm doing great, thanks for asking. How are you today?",
    "Hi there! All good on my side. What can I help you with?",
    "I'm well, thanks! How is your day going?",
    "Doing fine, thank you for asking. How can I help?",
)
_ADJ = (
    "quiet", "bright", "gentle", "curious", "steady", "silver", "patient", "simple", "careful",
    "golden", "restless", "clear", "modest", "distant", "familiar", "useful", "small", "open",
)
_NOUN = (
    "river", "idea", "morning", "system", "garden", "signal", "question", "window", "method",
    "journey", "pattern", "habit", "answer", "city", "notebook", "season", "detail", "light",
)
_VERB = (
    "shape", "reveal", "follow", "change", "support", "invite", "connect", "carry",
    "explain", "soften", "guide", "reflect", "balance", "reward", "test", "frame",
)
_ADV = ("slowly", "often", "quietly", "clearly", "rarely", "gently", "usually", "simply")
_SENTENCES = (
    "The {adj} {noun} {verb} the {adj2} {noun2}.",
    "In practice, every {noun} {verb} a {adj} {noun2} over time.",
    "It is worth noting that a {adj} {noun} {adv} {verb} the way we see the {noun2}.",
    "Many people find that the {noun} {verb} more than they expect.",
    "A {adj} approach {adv} {verb} the {noun} without losing the {noun2}.",
    "When the {noun} is {adj}, the {noun2} {adv} follows.",
    "This is why the {adj} {noun} matters for {topic}.",
    "Over time, {topic} can {verb_base} the {adj} {noun2} in small ways.",
    "One {adj} {noun} can {adv} change how a {noun2} feels.",
    "The key point is that {topic} will {verb_base} a {adj} {noun}.",
)
_LINES = (
    "Oh {topic}, so {adj} and {adj2},",
    "you {verb_base} the {noun} of my {noun2},",
    "a {adj} {noun} in the {adj2} light,",
    "I hear the {noun} {verb} tonight,",
    "{topic} will {adv} {verb_base} my day,",
    "like a {adj} {noun} along the way,",
    "every {noun} {verb} the {noun2},",
    "and the {adj} {noun2} sings again.",
)


def pick_share(h: int, shares: tuple[float, ...]) -> int:
    """Pick an index from ``shares`` (weights) by a hash, deterministically."""
    total = sum(max(0.0, s) for s in shares) or 1.0
    u = (h % 1_000_003) / 1_000_003 * total
    acc = 0.0
    for i, share in enumerate(shares):
        acc += max(0.0, share)
        if u < acc:
            return i
    return len(shares) - 1


@lru_cache(maxsize=8192)
def answer_text(
    prompt: str, seed: int = 0, accuracy: tuple[float, float, float] = (1.0, 0.0, 0.0), roll: int | None = None
) -> str:
    """Return the full answer (before stop strings or max_tokens) for a prompt's last user text.

    ``roll`` replaces the prompt hash when picking the ``accuracy`` share, so a re-ask
    (same question, longer conversation) can land on another share.
    """
    h = stable_hash(seed, prompt)
    schema = schema_in_text(prompt)
    if schema is not None:
        return _schema_answer(prompt, schema, seed, accuracy, roll)
    expr = find_expression(prompt)
    if expr is not None:
        value = evaluate(expr)
        if value is not None:
            return arithmetic_answer(prompt, expr, value, h, accuracy, roll)
    lower = prompt.lower()
    if _GREETING.search(lower):
        return _GREETINGS[h % len(_GREETINGS)]
    special = _special(lower, h)
    if special is not None:
        return special
    topic = _topic(prompt)
    if _VERSE.search(lower):
        return _verse(topic, random.Random(h))
    return _prose(topic, 40 + h % 121, random.Random(h))


def prompt_hints(
    prompt: str, seed: int, accuracy: tuple[float, float, float], roll: int | None = None
) -> tuple[Hints, int]:
    """Return what a JSON answer to ``prompt`` can fill in meaningfully, and the accuracy share picked.

    The share is 0 (right), 1 (not JSON) or 2 (wrong result). A quoted JSON schema is
    left out before looking for arithmetic, so numbers in it are not taken as the question.
    """
    h = stable_hash(seed, prompt)
    kind = pick_share(roll if roll is not None else h, accuracy)
    schema_text = json_template(prompt) if schema_in_text(prompt) is not None else None
    bare = prompt.replace(schema_text, " ") if schema_text else prompt
    expr = find_expression(bare)
    value = evaluate(expr) if expr is not None else None
    if expr is not None and value is not None:
        result = format_number(value)
        if kind == 2:
            result = wrong_result(result, roll if roll is not None else h)
        return Hints(expr, result, f"{expr} = {result}"), kind
    return Hints(text=_gist(answer_text(bare.strip(), seed))), kind


def wrong_result(result: int | float, h: int) -> int | float:
    """Return ``result`` off by a little, the way a model slips (1, 2 or 10 either way)."""
    return result + (1, -1, 2, -2, 10, -10)[(h >> 20) % 6]


def styled_json(obj: object, h: int) -> str:
    """Write JSON the ways models do when asked in a prompt: fenced, on one line, or indented."""
    style = (h >> 8) % 5
    if style == 0:
        return "```json\n" + json.dumps(obj, ensure_ascii=False, indent=2) + "\n```"
    if style == 1:
        return json.dumps(obj, ensure_ascii=False)
    return json.dumps(obj, ensure_ascii=False, indent=2)


def _gist(text: str) -> str:
    """Return the first two sentences of an answer (at most 240 characters), for free-text fields."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(sentences[:2])[:240]


def _schema_answer(
    prompt: str, schema: dict[str, object], seed: int, accuracy: tuple[float, float, float], roll: int | None
) -> str:
    """Answer a prompt that quotes a JSON schema with an instance of it, as a model following it would."""
    hints, kind = prompt_hints(prompt, seed, accuracy, roll)
    h = stable_hash(seed, prompt)
    if kind == 1 and hints.expression is not None and hints.value is not None:
        return _arith_prose(prompt, hints.expression, hints.value, h)
    return styled_json(instance(schema, hints, h), h)


_CODE = re.compile(r"\b(code|python|function|script|snippet)\b")
_HTML = re.compile(r"\bhtml\b")
_JOKE = re.compile(r"\bjoke\b")
_CODE_ANSWER = (
    "Here is a small, tested way to do it:\n\n```python\ndef mean(values: list[float]) -> float:\n"
    '    """The arithmetic mean; raises ValueError on an empty list."""\n    if not values:\n'
    '        raise ValueError("mean() of an empty list")\n    return sum(values) / len(values)\n\n\n'
    "print(mean([1.0, 2.0, 4.5]))\n```\n\nIt runs in O(n) time and O(1) extra memory."
)
_HTML_ANSWER = (
    '<div style="font-family: sans-serif">\n  <h3>Summary</h3>\n  <ul>\n    <li><b>Fast</b>: answers stream as they are '
    "written</li>\n    <li><b>Safe</b>: no finished answer is lost</li>\n  </ul>\n</div>"
)
_JOKES = (
    "Q: What did the fish say when it hit the wall?\nA: Dam!",
    "Why do programmers prefer dark mode? Because light attracts bugs.",
    "I told my computer I needed a break, and it said: no problem, I'll go to sleep.",
)


def _special(lower: str, h: int) -> str | None:
    """Answers shaped by what the prompt asks for: code, HTML, a joke."""
    if _CODE.search(lower):
        return _CODE_ANSWER
    if _HTML.search(lower):
        return _HTML_ANSWER
    if _JOKE.search(lower):
        return _JOKES[h % len(_JOKES)]
    return None


def arithmetic_answer(
    prompt: str,
    expr: str,
    value: Fraction,
    h: int,
    accuracy: tuple[float, float, float],
    roll: int | None = None,
) -> str:
    """Answer an arithmetic prompt: JSON when it holds a template, else a sentence.

    ``accuracy`` (right, not JSON, wrong) picks by hash (``roll`` when given) whether this
    prompt's answer is correct JSON, a prose sentence that ignores the format, or off by a little.
    """
    pick = roll if roll is not None else h
    kind = pick_share(pick, accuracy)
    result = format_number(value)
    if kind == 2:
        result = wrong_result(result, pick)
    template = json_template(prompt)
    if template is None or kind == 1:
        return _arith_prose(prompt, expr, result, h)
    return styled_json(fill_template(template, expr, result), h)


def _arith_prose(prompt: str, expr: str, result: int | float, h: int) -> str:
    """Say the result in a sentence, in Chinese when the prompt is Chinese."""
    if _CJK.search(prompt):
        options = (f"{expr} 的计算结果是 {result}。", f"计算结果为：{expr} = {result}")
    else:
        options = (
            f"{expr} = {result}.",
            f"The result of {expr} is {result}.",
            f"Let me work that out: {expr} equals {result}.",
        )
    return options[(h >> 12) % len(options)]


def _topic(prompt: str) -> str:
    """Return what the prompt is "about", or a neutral phrase."""
    match = _TOPIC.search(prompt)
    if match:
        return " ".join(match.group(1).split()[:5])
    return "this topic"


def _third_person(verb: str) -> str:
    """Return the "he/she/it" form of a regular English verb: shape -> shapes, carry -> carries."""
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    if verb.endswith(("s", "sh", "ch", "x")):
        return verb + "es"
    return verb + "s"


def _fill(template: str, topic: str, rng: random.Random) -> str:
    """Fill one sentence template's slots from the word lists."""
    verb = rng.choice(_VERB)
    text = template.format(
        adj=rng.choice(_ADJ),
        adj2=rng.choice(_ADJ),
        noun=rng.choice(_NOUN),
        noun2=rng.choice(_NOUN),
        verb=_third_person(verb),
        verb_base=verb,
        adv=rng.choice(_ADV),
        topic=topic,
    )
    return _AN.sub(r"\1n \2", text)  # "a open approach" -> "an open approach"


def _prose(topic: str, tokens: int, rng: random.Random) -> str:
    """Build sentences until about ``tokens`` whitespace-separated words, in paragraphs."""
    opening = f"Here is a short take on {topic}." if topic != "this topic" else "Good question."
    sentences = [opening]
    count = len(opening.split())
    previous = ""
    while count < tokens:
        # Never the same template twice in a row, so the text reads less mechanically.
        template = rng.choice([t for t in _SENTENCES if t != previous])
        previous = template
        sentence = _fill(template, topic, rng)
        sentence = sentence[0].upper() + sentence[1:]
        sentences.append(sentence)
        count += len(sentence.split())
    # A paragraph break every few sentences, so streamed text looks like a real answer.
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return "\n\n".join(paragraphs)


def _verse(topic: str, rng: random.Random) -> str:
    """Build 4 to 8 short lines, a verse about ``topic``."""
    count = rng.randint(4, 8)
    lines = [_fill(rng.choice(_LINES), topic, rng) for _ in range(count)]
    lines = [line[0].upper() + line[1:] for line in lines]
    lines[-1] = lines[-1].rstrip(",") + ("." if not lines[-1].endswith(".") else "")
    return "\n".join(lines)
