"""Find and safely evaluate integer arithmetic in a prompt, and fill a JSON answer template.

Nothing here calls `eval`: expressions are parsed with `ast` and only numbers,
``+ - * /``, unary signs and parentheses are walked.
"""

from __future__ import annotations

import ast
import json
import re
from fractions import Fraction

__all__ = ["evaluate", "fill_template", "find_expression", "format_number", "json_template"]

# A run that starts with a digit or "(" and ends with a digit or ")", made only of
# digits, spaces, parentheses and operators ("x" and "×" mean multiply).
_CANDIDATE = re.compile(r"[(\d][\d\s()+\-*/x×÷.]*[\d)]")
_TEMPLATE_EXPR = re.compile(r'"expression"\s*:\s*"([^"]{1,200})"')
_MAX_NODES = 64
_MAX_DIGITS = 30


def normalise(expr: str) -> str:
    """Rewrite the friendly operators ``x × ÷`` into Python ones."""
    return expr.replace("×", "*").replace("x", "*").replace("÷", "/")


def evaluate(expr: str) -> Fraction | None:
    """Evaluate an integer expression exactly; None if it is not plain arithmetic or divides by 0."""
    if len(expr) > 200:
        return None
    try:
        tree = ast.parse(normalise(expr).strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        return None
    try:
        return _walk(tree.body)
    except (ValueError, ZeroDivisionError):
        return None


def _walk(node: ast.AST) -> Fraction:
    """Evaluate one allowed node; anything else raises ValueError."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if len(str(node.value)) > _MAX_DIGITS:
            raise ValueError("number too long")
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _walk(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            return left / right
    raise ValueError(f"not allowed: {type(node).__name__}")


def _has_operator(expr: str) -> bool:
    """Tell whether ``expr`` holds a binary operation, so a lone number is not "arithmetic"."""
    try:
        tree = ast.parse(normalise(expr).strip(), mode="eval")
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.BinOp) for n in ast.walk(tree))


def find_expression(text: str) -> str | None:
    """Return the arithmetic expression a prompt asks about, as written, or None.

    A JSON template's ``"expression": "..."`` wins; otherwise the longest run of
    arithmetic characters that parses and contains an operator.
    """
    match = _TEMPLATE_EXPR.search(text)
    if match and evaluate(match.group(1)) is not None and _has_operator(match.group(1)):
        return match.group(1).strip()
    best: str | None = None
    for m in _CANDIDATE.finditer(text):
        expr = m.group(0).strip()
        if (best is None or len(expr) > len(best)) and _has_operator(expr):
            if evaluate(expr) is not None:
                best = expr
    return best


def format_number(value: Fraction) -> int | float:
    """Return an int when exact, else a float rounded to 6 decimals (as a model would write it)."""
    if value.denominator == 1:
        return int(value)
    return round(float(value), 6)


def json_template(text: str) -> str | None:
    """Return the ``{ ... }`` answer template in a prompt (first "{" to last "}"), if any."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    return text[start : end + 1]


def fill_template(template: str, expression: str, result: int | float) -> dict[str, object]:
    """Fill the ``?`` placeholders of a JSON template with ``result``.

    Falls back to ``{"expression": ..., "result": ...}`` when the template is not
    JSON even after filling, so the answer is always well-formed JSON.
    """
    filled = re.sub(r'(:\s*)("\?"|\?)', lambda m: m.group(1) + json.dumps(result), template)
    try:
        obj = json.loads(filled)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        return {"expression": expression, "result": result}
    if "result" not in obj and "?" not in template:
        obj["result"] = result
    return obj
