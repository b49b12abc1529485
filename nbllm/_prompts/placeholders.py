"""Fill ``{name}`` placeholders of a prompt from a namespace, and leave every other brace alone.

```python
interpolate("Summarise {doc.title!r} in {n} words.", get_ipython().user_ns)
```

Used by ``%%llm``, where prompts are prose that often contains JSON. The rules:

- **What is filled.** ``{expr}``, ``{expr!r}``, ``{expr:spec}`` and ``{expr!r:spec}`` on one line, where
  ``expr`` is a name, attribute, subscript or call: ``{x}``, ``{obj.attr}``, ``{items[0]}``,
  ``{len(df)}``. It is evaluated in the namespace and formatted like an f-string field; a spec may
  itself contain placeholders (``{value:{width}}``).
- **What is left exactly as written.** Anything else in braces: JSON objects, ``{}``, ``{ }``,
  set/dict displays like ``{1, 2}``, arithmetic like ``{x + 1}``, contents that start with a quote,
  specs that contain a quote or start with a space (``{name: "Bob"}`` and ``{a: 1}`` read as
  mappings, not as format specs), and blocks that span lines. Placeholders *inside* such a block are
  still filled: in ``{\\n  "expression": "{question}"\\n}`` the outer braces stay and ``{question}``
  is replaced.
- **Escapes.** ``{{`` and ``}}`` are a literal ``{`` and ``}``, as in f-strings and ``str.format``,
  so ``{{name}}`` writes ``{name}`` without filling it. The brace that closes a block left as
  written is never half of a ``}}``: ``{"a": {"b": 1}}`` comes out unchanged.
- **Pairing.** Braces are paired by counting; quotes are not considered, because apostrophes in
  prose would otherwise swallow the rest of the prompt. Unpaired braces are kept as they are.
- **Rendering.** ``render(value)`` (default ``format(value, "")``, as an f-string writes it) turns a
  field without conversion or spec into text; ``%%llm`` passes one that keeps large values within a
  token budget (``context.render_value``). ``{x!r}`` and ``{x:.2f}`` are always written as asked.
- **Errors.** An undefined name raises ``ConfigurationError`` naming the placeholder and how to
  escape it; any other error while evaluating or formatting is wrapped in one (chained).

Expressions are evaluated with the namespace as globals (a copy), not as locals, so that
comprehensions and lambdas inside a call (``{fmt([x * k for x in xs])}``) can see its names.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigurationError

__all__ = ["find_placeholders", "interpolate"]

_FILLABLE = (ast.Name, ast.Attribute, ast.Subscript, ast.Call)
_CONVERSIONS: dict[str, Callable[[Any], str]] = {"r": repr, "s": str, "a": ascii}
_QUOTES = ("'", '"')


@dataclass(frozen=True)
class _Field:
    text: str  # as written between the braces, for messages and find_placeholders
    tree: ast.Expression
    conversion: str | None
    spec: str


def _pair_braces(template: str) -> dict[int, int]:
    """Index of each "{" -> index of its matching "}", by counting (unpaired braces are absent)."""
    open_at: list[int] = []
    pairs: dict[int, int] = {}
    for i, char in enumerate(template):
        if char == "{":
            open_at.append(i)
        elif char == "}" and open_at:
            pairs[open_at.pop()] = i
    return pairs


def _split_field(content: str) -> tuple[str, str | None, str]:
    """Split ``expr!conv:spec`` at the first top-level "!" or ":", as the f-string parser does."""
    depth, quote, i = 0, "", 0
    while i < len(content):
        char = content[i]
        if quote:
            if char == "\\":
                i += 1  # skip the escaped character
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and char == "!" and content[i + 1 : i + 2] != "=":
            conversion, _, spec = content[i + 1 :].partition(":")
            return content[:i], conversion, spec
        elif depth == 0 and char == ":":
            return content[:i], None, content[i + 1 :]
        i += 1
    return content, None, ""


def _parse_field(content: str) -> _Field | None:
    """The placeholder in ``content`` (the text between a brace pair), or None to keep it as text."""
    if not content.strip() or "\n" in content or "\r" in content or content.lstrip().startswith(_QUOTES):
        return None
    expr, conversion, spec = _split_field(content)
    if conversion is not None and conversion not in _CONVERSIONS:
        return None
    if spec[:1].isspace() or any(quote in spec for quote in _QUOTES):
        return None
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError):  # ValueError: NUL bytes; Recursion: deep nesting
        return None
    if not isinstance(tree.body, _FILLABLE):
        return None
    return _Field(content, tree, conversion, spec)


def _segments(template: str) -> Iterator[str | _Field]:
    """Split a template into literal text and placeholders, applying the escapes."""
    pairs = _pair_braces(template)
    kept_closers: set[int] = set()  # "}" of blocks kept as text: never part of a "}}" escape
    text: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if template.startswith("{{", i):
            text.append("{")
            i += 2
        elif char == "{" and i in pairs and (field := _parse_field(template[i + 1 : pairs[i]])) is not None:
            if text:
                yield "".join(text)
                text = []
            yield field
            i = pairs[i] + 1
        elif template.startswith("}}", i) and i not in kept_closers and i + 1 not in kept_closers:
            text.append("}")
            i += 2
        else:
            if char == "{" and i in pairs:
                kept_closers.add(pairs[i])
            text.append(char)
            i += 1
    if text:
        yield "".join(text)


def _undefined_name(field: _Field, error: NameError, namespace: Mapping[str, Any]) -> str | None:
    # Only a name written in the placeholder itself is "undefined"; a NameError raised deeper,
    # inside a function the placeholder calls, is an error of that function instead.
    names = {node.id for node in ast.walk(field.tree) if isinstance(node, ast.Name)}
    return error.name if error.name in names and error.name not in namespace else None


Render = Callable[[Any], str]


def _render(field: _Field, env: dict[str, Any], namespace: Mapping[str, Any], render: Render | None) -> str:
    escape = f"write {{{{{field.text}}}}} to keep the braces as text"
    try:
        value = eval(compile(field.tree, "<prompt placeholder>", "eval"), env)  # noqa: S307
        if field.conversion is None and not field.spec and render is not None:
            return render(value)
        if field.conversion is not None:
            value = _CONVERSIONS[field.conversion](value)
        spec = "".join(_fill(field.spec, env, namespace, None)) if "{" in field.spec else field.spec
        return format(value, spec)
    except NameError as error:
        missing = _undefined_name(field, error, namespace)
        if missing is None:
            message = f"The placeholder {{{field.text}}} failed: NameError: {error}."
            raise ConfigurationError(message) from error
        raise ConfigurationError(
            f"The prompt uses {{{field.text}}}, but {missing!r} is not defined. Define it first, or {escape}."
        ) from error
    except ConfigurationError:
        raise  # from a placeholder nested in the spec; it already names itself
    except Exception as error:
        raise ConfigurationError(
            f"The placeholder {{{field.text}}} failed: {type(error).__name__}: {error}. Fix it, or {escape}."
        ) from error


def _fill(template: str, env: dict[str, Any], namespace: Mapping[str, Any], render: Render | None) -> Iterator[str]:
    for segment in _segments(template):
        yield segment if isinstance(segment, str) else _render(segment, env, namespace, render)


def interpolate(template: str, namespace: Mapping[str, Any], render: Render | None = None) -> str:
    """``template`` with every placeholder filled from ``namespace``; other braces stay as written.

    ``render`` turns a plain ``{expr}``'s value into text (default: ``format(value, "")``).
    """
    if "{" not in template and "}" not in template:
        return template
    # eval() needs a real dict as globals, and must not add "__builtins__" to the caller's namespace.
    env = dict(namespace)
    return "".join(_fill(template, env, namespace, render))


def find_placeholders(template: str) -> list[str]:
    """The placeholders ``interpolate`` would fill, as written between their braces, in order.

    >>> find_placeholders('Rate {item.name!r} as JSON: {"score": ?} {{literal}}')
    ['item.name!r']
    """
    return [segment.text for segment in _segments(template) if isinstance(segment, _Field)]
