"""The answer model every structured client in ``bench_structured`` validates against (needs only pydantic).

``Checked`` checks types *and* meaning: a result that is not the value of its expression fails validation,
so a client that re-asks on validation errors repairs wrong arithmetic as well as broken JSON. Imported
by nbllm's client and by instructor's, which runs in its own virtual environment.
"""

from __future__ import annotations

import ast
import operator

import pydantic

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def value_of(expression: str) -> int:
    """The value of ``37 + 12 x 5`` (digits, + - and x only; never ``eval``)."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"{expression!r} is not an arithmetic expression")

    return walk(ast.parse(expression.replace("x", "*"), mode="eval").body)


class Checked(pydantic.BaseModel):
    expression: str
    result: int

    @pydantic.model_validator(mode="after")
    def result_is_the_value(self) -> Checked:
        if self.result != value_of(self.expression):
            raise ValueError(f"result {self.result} is not the value of {self.expression}; compute it again")
        return self
