"""Provider wire formats as bytes: OpenAI / Anthropic JSON bodies, SSE events and error bodies.

Pure and cheap: streamed events are string templates around pieces that were
JSON-escaped once (`Completion.escaped`), so a zero-latency stream costs a join.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._tokens import Completion

if TYPE_CHECKING:
    from ._respond import ToolUse

__all__ = [
    "ANTHROPIC_STOP",
    "OPENAI_FINISH",
    "anthropic_error",
    "anthropic_message",
    "anthropic_message_object",
    "anthropic_stream",
    "anthropic_stream_error",
    "malformed_event",
    "models_list",
    "openai_completion",
    "openai_completion_object",
    "openai_error",
    "openai_stream",
    "openai_stream_error",
]

OPENAI_FINISH = {"end": "stop", "stop_sequence": "stop", "length": "length"}
ANTHROPIC_STOP = {"end": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens"}

MODELS = ("gpt-4o-mini", "gpt-4.1-nano", "claude-haiku-4-5", "claude-sonnet-4-5", "sim-echo-1")


def _dumps(obj: Any) -> bytes:
    """Serialise compactly, keeping non-ASCII text readable as real providers do."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def openai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    """Return an OpenAI error body ``{"error": {message, type, param, code}}``."""
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def anthropic_error(type_: str, message: str) -> bytes:
    """Return an Anthropic error body ``{"type": "error", "error": {type, message}}``."""
    return _dumps({"type": "error", "error": {"type": type_, "message": message}})


def openai_completion(rid: str, created: int, model: str, done: Completion, prompt_tokens: int) -> bytes:
    """Return a non-stream ``chat.completion`` body."""
    return _dumps(openai_completion_object(rid, created, model, done, prompt_tokens))


def openai_completion_object(
    rid: str, created: int, model: str, done: Completion, prompt_tokens: int
) -> dict[str, Any]:
    """Return a ``chat.completion`` as a dict (a batch output line embeds it)."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text, "refusal": None},
                "logprobs": None,
                "finish_reason": OPENAI_FINISH[done.finish],
            }
        ],
        "usage": _openai_usage(prompt_tokens, done.tokens),
        "system_fingerprint": None,
    }


def _openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """Return an OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def anthropic_message(
    rid: str, model: str, done: Completion, input_tokens: int, tool: ToolUse | None = None
) -> bytes:
    """Return a non-stream Anthropic ``message`` body."""
    return _dumps(anthropic_message_object(rid, model, done, input_tokens, tool))


def anthropic_message_object(
    rid: str, model: str, done: Completion, input_tokens: int, tool: ToolUse | None = None
) -> dict[str, Any]:
    """Return an Anthropic ``message`` as a dict: one text block, or one ``tool_use`` block for a forced tool."""
    if tool is not None:
        block: dict[str, Any] = {"type": "tool_use", "id": _tool_id(rid), "name": tool.name, "input": tool.input}
    else:
        block = {"type": "text", "text": done.text}
    return {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": _stop_reason(done, tool is not None),
        "stop_sequence": done.stop_sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": done.tokens},
    }


def _tool_id(rid: str) -> str:
    """Return the ``toolu_…`` id of the tool call in message ``msg_…``."""
    return "toolu_" + rid.removeprefix("msg_")


def _stop_reason(done: Completion, tool: bool) -> str:
    """Return Anthropic's stop_reason: ``tool_use`` for a finished tool call, else from how the text ended."""
    if tool and done.finish == "end":
        return "tool_use"
    return ANTHROPIC_STOP[done.finish]


def openai_stream(
    rid: str, created: int, model: str, done: Completion, prompt_tokens: int, include_usage: bool
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Return a chat completion stream as (head, one event per piece, tail).

    Head is the role-only chunk; tail is the finish chunk, the usage chunk when
    asked for (``choices: []``), and ``data: [DONE]``. With ``include_usage``
    every other chunk carries ``"usage": null``, as OpenAI sends it.
    """
    prefix = (
        f'data: {{"id":"{rid}","object":"chat.completion.chunk","created":{created},'
        f'"model":{json.dumps(model, ensure_ascii=False)},"system_fingerprint":null,'
        '"choices":[{"index":0,"delta":'
    )
    suffix = '"finish_reason":null}]' + (',"usage":null' if include_usage else "") + "}\n\n"
    head = [(prefix + '{"role":"assistant","content":""},"logprobs":null,' + suffix).encode()]
    body = [(prefix + '{"content":' + esc + '},"logprobs":null,' + suffix).encode() for esc in done.escaped]
    finish = OPENAI_FINISH[done.finish]
    tail = [(prefix + '{},"logprobs":null,' + suffix.replace("null}]", f'"{finish}"}}]', 1)).encode()]
    if include_usage:
        usage = _dumps(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [],
                "usage": _openai_usage(prompt_tokens, done.tokens),
            }
        )
        tail.append(b"data: " + usage + b"\n\n")
    tail.append(b"data: [DONE]\n\n")
    return head, body, tail


def openai_stream_error(message: str, type_: str = "server_error") -> bytes:
    """Return the mid-stream error event OpenAI sends after a 200: ``data: {"error": {...}}``."""
    return b"data: " + openai_error(message, type_, None) + b"\n\n"


def _event(name: str, payload: bytes) -> bytes:
    """Return one named SSE event."""
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def anthropic_stream(
    rid: str, model: str, done: Completion, input_tokens: int, tool: ToolUse | None = None
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Return a Messages stream as (head, one ``content_block_delta`` per piece, tail).

    Head: message_start (output_tokens 1, as Anthropic reports it), content_block_start
    and a ping. Tail: content_block_stop, message_delta with the cumulative
    output_tokens and stop_reason, and message_stop. A forced tool streams a
    ``tool_use`` block (input ``{}``) whose JSON arrives as ``input_json_delta`` pieces.
    """
    if tool is not None:
        start = {"type": "tool_use", "id": _tool_id(rid), "name": tool.name, "input": {}}
        kind, field = "input_json_delta", "partial_json"
    else:
        start, kind, field = {"type": "text", "text": ""}, "text_delta", "text"
    head = [
        _event("message_start", _message_start(rid, model, input_tokens)),
        _event("content_block_start", _dumps({"type": "content_block_start", "index": 0, "content_block": start})),
        _event("ping", b'{"type":"ping"}'),
    ]
    delta = (
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        f'"delta":{{"type":"{kind}","{field}":'
    )
    body = [(delta + esc + "}}\n\n").encode() for esc in done.escaped]
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(done, tool is not None), "stop_sequence": done.stop_sequence},
        "usage": {"output_tokens": done.tokens},
    }
    tail = [
        _event("content_block_stop", b'{"type":"content_block_stop","index":0}'),
        _event("message_delta", _dumps(end)),
        _event("message_stop", b'{"type":"message_stop"}'),
    ]
    return head, body, tail


def _message_start(rid: str, model: str, input_tokens: int) -> bytes:
    """Return the ``message_start`` payload: an empty message with the input token count."""
    message = {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    return _dumps({"type": "message_start", "message": message})


def anthropic_stream_error(type_: str, message: str) -> bytes:
    """Return the ``event: error`` Anthropic sends mid-stream after a 200."""
    return _event("error", anthropic_error(type_, message))


def malformed_event(anthropic: bool) -> bytes:
    """Return one event whose data is truncated JSON; real providers never send this."""
    if anthropic:
        return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"te\n\n'
    return b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"delta":{"content":"\n\n'


def models_list(created: int) -> bytes:
    """Return a model list both SDKs parse: OpenAI's ``object``/``owned_by`` and Anthropic's ``type``/``display_name``."""
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "nbllm-sim",
            "type": "model",
            "display_name": name,
            "created_at": "2025-01-01T00:00:00Z",
        }
        for name in MODELS
    ]
    return _dumps({"object": "list", "data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
