"""Batch input checks and result lines, for both providers. Pure.

Example::

    entries, errors = read_openai_file(data, "/v1/chat/completions")   # errors fail the batch
    error = line_error("openai", body, config, batch_id, custom_id, claim_once)  # None: it will succeed
    openai_result(batch, line, "succeeded", config, claim_once)  # -> (False, {id, custom_id, response, error})

Each line is answered by `respond`, the same logic as an online request, so a batch
answers the same text as online mode for the same prompt and model.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from ._badrequest import BadRequest
from ._batches import Batch, Line, LineError
from ._config import SimConfig
from ._faults import BEFORE_ANSWER, parse_directive
from ._hashing import stable_hash, unit
from ._requests import parse_anthropic, parse_openai
from ._respond import respond
from ._tokens import count_prompt_tokens, last_user_text
from ._wire import anthropic_message_object, openai_completion_object

__all__ = [
    "ANTHROPIC_MAX_REQUESTS",
    "OPENAI_MAX_REQUESTS",
    "anthropic_result",
    "line_error",
    "openai_result",
    "read_anthropic_requests",
    "read_openai_file",
]

OPENAI_MAX_REQUESTS = 50_000
ANTHROPIC_MAX_REQUESTS = 100_000
_MAX_REPORTED = 100  # validation errors listed on a failed batch
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

ClaimOnce = Callable[[str], bool]


def _problem(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    """Return one entry of a failed batch's ``errors.data``."""
    return {"code": code, "message": message, "param": param, "line": line}


def read_openai_file(data: bytes, endpoint: str) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """Check a batch input file; return its (custom_id, body) entries and the validation errors, if any."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_problem("invalid_file_format", "The batch input file is not valid UTF-8 text.")]
    entries: list[tuple[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    models: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        entry, problem = _openai_entry(raw, number, endpoint)
        if problem is None and entry[0] in seen:
            problem = _problem(
                "duplicate_custom_id",
                f"The custom_id '{entry[0]}' is a duplicate of the request on line {seen[entry[0]]}.",
                number, "custom_id",
            )
        if problem is not None:
            errors.append(problem)
            continue
        seen[entry[0]] = number
        if isinstance(entry[1].get("model"), str):
            models.add(entry[1]["model"])
        entries.append(entry)
    if len(entries) + len(errors) > OPENAI_MAX_REQUESTS:
        errors.insert(0, _problem(
            "too_many_requests",
            f"The batch input file holds {len(entries) + len(errors)} requests; the limit is {OPENAI_MAX_REQUESTS}.",
        ))
    if len(models) > 1:
        errors.append(_problem("mismatched_model", "All requests in a batch must use the same model.", None, "model"))
    if not entries and not errors:
        errors.append(_problem("empty_file", "The batch input file is empty."))
    return entries, errors[:_MAX_REPORTED]


def _openai_entry(raw: str, number: int, endpoint: str) -> tuple[tuple[str, Any], dict[str, Any] | None]:
    """Parse one input line ``{custom_id, method, url, body}``; return (entry, problem)."""
    try:
        item = json.loads(raw)
    except ValueError:
        return ("", None), _problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
    if not isinstance(item, dict):
        return ("", None), _problem("invalid_request", "Each line must be a JSON object.", number)
    for name in ("custom_id", "method", "url", "body"):
        if name not in item:
            message = f"Missing required parameter: '{name}'."
            return ("", None), _problem("missing_required_parameter", message, number, name)
    if not isinstance(item["custom_id"], str) or not item["custom_id"]:
        return ("", None), _problem("invalid_custom_id", "'custom_id' must be a non-empty string.", number, "custom_id")
    if item["method"] != "POST":
        return ("", None), _problem("invalid_method", "Only the POST method is supported.", number, "method")
    if item["url"] != endpoint:
        message = f"The URL '{item['url']}' does not match the batch endpoint '{endpoint}'."
        return ("", None), _problem("invalid_url", message, number, "url")
    if not isinstance(item["body"], dict):
        return ("", None), _problem("invalid_body", "'body' must be a JSON object.", number, "body")
    return (item["custom_id"], item["body"]), None


def read_anthropic_requests(body: Any) -> list[tuple[str, Any]]:
    """Check a Message Batch create body; return its (custom_id, params) entries or raise `BadRequest`."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise BadRequest("requests: List should have at least 1 item after validation", "requests")
    if len(requests) > ANTHROPIC_MAX_REQUESTS:
        raise BadRequest(f"requests: List should have at most {ANTHROPIC_MAX_REQUESTS} items", "requests")
    entries: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for i, request in enumerate(requests):
        custom_id = request.get("custom_id") if isinstance(request, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            raise BadRequest(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise BadRequest(f"requests.{i}.custom_id: Duplicate custom_id '{custom_id}'; custom_id must be unique.")
        if not isinstance(request.get("params"), dict):
            raise BadRequest(f"requests.{i}.params: Field required")
        seen.add(custom_id)
        entries.append((custom_id, request["params"]))
    return entries


def line_error(
    provider: str, params: Any, config: SimConfig, batch_id: str, custom_id: str, claim_once: ClaimOnce
) -> LineError | None:
    """Decide whether a line fails when it runs: invalid params, a ``[[sim:500]]``-style directive, or the dice."""
    anthropic = provider == "anthropic"
    try:
        call = parse_anthropic(params) if anthropic else parse_openai(params, config.response_format)
        if anthropic and call.stream:
            raise BadRequest("stream: Streaming is not supported for requests in a Message Batch.", "stream")
    except BadRequest as exc:
        return LineError(400, "invalid_request_error", exc.message, exc.param, exc.code)
    raw = last_user_text(call.messages)
    directive = parse_directive(raw)
    if directive is not None and directive.fault in BEFORE_ANSWER:
        if not directive.once or claim_once(raw):
            return _injected(directive.fault, anthropic)
    rate = config.faults.batch_line_error_rate
    if rate > 0 and unit(config.seed, stable_hash(batch_id, custom_id), 41) < rate:
        return _injected("500", anthropic)
    return None


def _injected(fault: str, anthropic: bool) -> LineError:
    """Return the error a line gets from an injected 500, overload or 429."""
    if fault == "429":
        kind = "rate_limit_error" if anthropic else "requests"
        return LineError(429, kind, "Rate limited (simulated).", None, None if anthropic else "rate_limit_exceeded")
    if fault == "overloaded":
        if anthropic:
            return LineError(529, "overloaded_error", "Overloaded")
        return LineError(503, "server_error", "The engine is currently overloaded, please try again later.")
    if anthropic:
        return LineError(500, "api_error", "Internal server error")
    return LineError(500, "server_error", "The server had an error while processing your request. Sorry about that!")


def _line_rid(batch: Batch, line: Line) -> str:
    """Return a stable id for one line's request (hex), unique per batch and custom_id."""
    return f"{stable_hash(batch.id, line.custom_id):016x}"


def openai_result(
    batch: Batch, line: Line, outcome: str, config: SimConfig, claim_once: ClaimOnce
) -> tuple[bool, dict[str, Any]]:
    """Return (goes to the error file, output line) for one line of an ended OpenAI batch."""
    rid = _line_rid(batch, line)
    out: dict[str, Any] = {"id": f"batch_req_{rid}", "custom_id": line.custom_id, "response": None, "error": None}
    if outcome in ("cancelled", "expired"):
        code = "batch_cancelled" if outcome == "cancelled" else "batch_expired"
        message = (
            "This request was not executed because the batch was cancelled."
            if outcome == "cancelled"
            else "This request could not be executed before the completion window expired."
        )
        out["error"] = {"code": code, "message": message}
        return True, out
    error = line.error
    if error is not None:
        body = {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
        out["response"] = {"status_code": error.status, "request_id": f"req_{rid}", "body": body}
        return True, out
    call = parse_openai(line.params, config.response_format)
    done = respond(call, config, claim_once).done
    completion = openai_completion_object(
        f"chatcmpl-{rid}", int(batch.created_wall), call.model, done, count_prompt_tokens(call.messages)
    )
    out["response"] = {"status_code": 200, "request_id": f"req_{rid}", "body": completion}
    return False, out


def anthropic_result(
    batch: Batch, line: Line, outcome: str, config: SimConfig, claim_once: ClaimOnce
) -> dict[str, Any]:
    """Return the results line ``{custom_id, result}`` for one line of an ended Message Batch."""
    if outcome in ("cancelled", "expired"):
        return {"custom_id": line.custom_id, "result": {"type": "canceled" if outcome == "cancelled" else "expired"}}
    error = line.error
    if error is not None:
        detail = {"type": "error", "error": {"type": error.type, "message": error.message}}
        return {"custom_id": line.custom_id, "result": {"type": "errored", "error": detail}}
    call = parse_anthropic(line.params)
    reply = respond(call, config, claim_once)
    tokens = count_prompt_tokens(call.messages, call.system)
    message = anthropic_message_object(f"msg_{_line_rid(batch, line)}", call.model, reply.done, tokens, reply.tool)
    return {"custom_id": line.custom_id, "result": {"type": "succeeded", "message": message}}
