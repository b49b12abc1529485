"""The answer to a chat request, online or as a batch line: which question, what form, and any broken JSON. Pure.

Example::

    reply = respond(parse_openai(body), SimConfig(), claim_once=lambda key: True)
    reply.done.text      # the answer as sent (cut by max_tokens / stop strings)
    reply.tool           # ToolUse(name, input) when an Anthropic tool was forced

Re-asks: a conversation that already holds an assistant answer is a re-ask. When its
last user message reads as a correction ("validation error", "invalid", "missing",
"must", "fix", ...) the question answered is the earlier user message it corrects, so a
client that re-asks after a bad JSON answer gets that question answered again, rolled
afresh: arithmetic at `SimConfig.arithmetic_accuracy_on_reask`, broken JSON at
`Faults.broken_json_on_reask`, both hashed over the whole conversation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._answers import answer_text, prompt_hints, styled_json
from ._arith import fill_template, json_template
from ._brokenjson import break_object, forced_kind, json_fault, kinds_for, partial_object, pick_kind, single_quoted
from ._config import SimConfig
from ._faults import strip_directives
from ._hashing import stable_hash
from ._requests import Call
from ._schema import instance
from ._structured import Shape, schema_in_text, template_schema
from ._tokens import Completion, content_text, finish_answer, last_user_text, tokenize

__all__ = ["Reply", "ToolUse", "Turns", "conversation_hash", "read_turns", "respond", "structured_object"]

_CORRECTION = re.compile(
    r"valid|error|fix|schema|required|missing|expected|pars(e|ing)|must|failed|does not match|wrong|again",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^```(?:json)?\n(.*)\n```$", re.DOTALL)


@dataclass(frozen=True)
class ToolUse:
    """A forced tool call: the tool's name and the (possibly broken or cut) input object."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the model answers: the completion, and the tool call when the answer is one."""

    done: Completion
    tool: ToolUse | None = None


@dataclass(frozen=True)
class Turns:
    """The user message being answered (``question``), the last one, and whether answers came before."""

    question: str
    last: str
    reask: bool


def read_turns(messages: Sequence[Any]) -> Turns:
    """Find the question: the last user message, or the one a trail of corrections goes back to."""
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        last = last_user_text(messages)  # the common case: a single question, no answers yet
        return Turns(last, last, False)
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    users = [(i, content_text(messages[i].get("content"))) for i, role in enumerate(roles) if role == "user"]
    answers = [i for i, role in enumerate(roles) if role == "assistant"]
    if not users:
        return Turns("", "", bool(answers))
    k = len(users) - 1
    while k > 0:
        index, text = users[k]
        after_answer = any(users[k - 1][0] < a < index for a in answers)
        if not (after_answer and _CORRECTION.search(text)):
            break
        k -= 1
    return Turns(users[k][1], users[-1][1], bool(answers))


def conversation_hash(call: Call, seed: int) -> int:
    """Hash every message (and the system prompt and schema name): one value per attempt."""
    name = call.shape.name if call.shape is not None else ""
    text = json.dumps([call.system, call.messages, name], sort_keys=True, ensure_ascii=False, default=str)
    return stable_hash(seed, "conversation", text)


def respond(call: Call, config: SimConfig, claim_once: Callable[[str], bool]) -> Reply:
    """Return the deterministic answer to ``call``; ``claim_once`` backs ``[[sim:...:once]]`` directives."""
    turns = read_turns(call.messages)
    question = strip_directives(turns.question)
    convo = None  # hashed only when a re-ask or a JSON answer needs it: most requests are neither
    accuracy, roll = config.arithmetic_accuracy, None
    if turns.reask:
        convo = conversation_hash(call, config.seed)
        accuracy, roll = config.arithmetic_accuracy_on_reask, convo
    shape = call.shape
    if shape is not None:
        obj: Any = structured_object(question, shape, config.seed, accuracy, roll)
        text = json.dumps(obj, ensure_ascii=False)
    else:
        text = answer_text(question, config.seed, accuracy, roll)
        obj = parse_answer_json(text)
    cut = None
    if shape is not None or obj is not None:
        convo = convo if convo is not None else conversation_hash(call, config.seed)
        kind = _break_kind(turns, shape, config, convo, claim_once)
        if kind is not None:
            style = stable_hash(config.seed, question)  # keeps the layout `answer_text` chose
            text, obj, cut = _broken(kind, obj, text, shape, style)
    return _finish(call, text, obj, cut)


def _break_kind(
    turns: Turns, shape: Shape | None, config: SimConfig, convo: int, claim: Callable[[str], bool]
) -> str | None:
    """Return how this attempt's JSON breaks: a ``[[sim:broken_json...]]`` directive first, then the dice."""
    allowed = kinds_for(shape)
    forced = forced_kind(turns.question) or forced_kind(turns.last)
    if forced is not None:
        kind, once = forced
        if not once or claim("broken_json\x1f" + turns.question):
            return kind or pick_kind(allowed, config.seed, convo)
    return json_fault(config.faults, allowed, config.seed, convo, turns.reask)


def _broken(kind: str, obj: Any, text: str, shape: Shape | None, style: int) -> tuple[str, Any, int | None]:
    """Damage the answer; return (text, object for a tool's input, token count to cut at for "truncated")."""
    tool = shape is not None and shape.mode == "tool"
    if kind == "truncated" and len(tokenize(text)) >= 2:
        return text, obj, len(tokenize(text)) // 2
    if kind == "single_quotes" and not tool:
        return single_quoted(obj, style), None, None
    damage = "missing_field" if kind == "missing_field" else "wrong_type"  # a tool cannot answer in prose
    broken = break_object(obj, damage, shape.schema if shape is not None else None)
    if shape is None:
        return styled_json(broken, style), broken, None
    return json.dumps(broken, ensure_ascii=False), broken, None


def _finish(call: Call, text: str, obj: Any, cut: int | None) -> Reply:
    """Cut the text at stop strings / max_tokens (or the truncation point) and build the tool call if forced."""
    limit = call.max_tokens
    if cut is not None:
        limit = cut if limit is None else min(limit, cut)
    shape = call.shape
    if shape is None or shape.mode != "tool":
        return Reply(finish_answer(text, limit, call.stop))
    done = finish_answer(text, limit)  # stop sequences do not apply inside a tool's JSON input
    tool_input = obj if done.finish == "end" and isinstance(obj, dict) else partial_object(done.text)
    return Reply(done, ToolUse(shape.name, tool_input))


def structured_object(
    question: str, shape: Shape, seed: int, accuracy: tuple[float, float, float], roll: int | None = None
) -> Any:
    """Return the object a model answers under ``shape``: a schema instance, or free JSON in JSON mode."""
    hints, _share = prompt_hints(question, seed, accuracy, roll)  # constrained: the "not JSON" share cannot happen
    h = stable_hash(seed, question)
    if shape.mode != "json_object":
        return instance(shape.schema, hints, h)
    quoted = schema_in_text(question)
    if hints.expression is not None and hints.value is not None and quoted is None:
        template = json_template(question)
        if template is not None:
            return fill_template(template, hints.expression, hints.value)
        return {"expression": hints.expression, "result": hints.value}
    schema = quoted or template_schema(question)
    if schema is not None:
        return instance(schema, hints, h)
    return {"answer": hints.text}


def parse_answer_json(text: str) -> Any:
    """Return the JSON object a text answer holds (bare or in a ```json fence), or None for prose."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if not body.startswith("{"):
        return None
    try:
        found = json.loads(body)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
