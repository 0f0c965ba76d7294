"""Static evaluation for the DAG builder: literals, params, variables bound to those, and arithmetic on them.

`n`, `max_tokens`, `k`, `rounds` and repeat counts must be known before
anything runs; these helpers compute them (and fold constant expressions
into `const` nodes). `/` of two ints stays an int when exact, as in
`params.static_value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ttcl.compiler.ast import (
    Auto,
    BinOp,
    Bool,
    BoolOp,
    Compare,
    Expr,
    Name,
    Number,
    String,
    TemplateText,
    UnaryOp,
)

if TYPE_CHECKING:
    from ttcl.compiler.dag_exprs import Frame

StaticValue = int | float | bool | str


class NotStatic(Exception):
    """The expression's value is only known at run time."""


def static_eval(expr: Expr, frame: Frame, known: Mapping[str, StaticValue]) -> StaticValue:
    """Literals, params, variables bound to those, and arithmetic/comparison on them."""
    match expr:
        case Number():
            return int(expr.value) if expr.is_int else float(expr.value)
        case Bool():
            return expr.value
        case String() if not expr.is_template:
            return "".join(p.text for p in expr.parts if isinstance(p, TemplateText))
        case Name():
            if expr.id in frame.env:
                node = frame.env[expr.id]
                if node in known:
                    return known[node]
                raise NotStatic(f"`{expr.id}` is a run-time value")
            if expr.id in frame.info.params:
                value = frame.info.params[expr.id]
                if isinstance(value, Auto):
                    raise NotStatic(f"param `{expr.id}` is `auto`")
                return value
            raise NotStatic(f"unknown name `{expr.id}`")
        case UnaryOp(op="-"):
            v = static_eval(expr.operand, frame, known)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise NotStatic("not a number")
            return -v
        case UnaryOp(op="not"):
            v = static_eval(expr.operand, frame, known)
            if not isinstance(v, bool):
                raise NotStatic("not a bool")
            return not v
        case BinOp():
            return arith(expr.op, static_eval(expr.left, frame, known), static_eval(expr.right, frame, known))
        case Compare():
            return compare(expr.op, static_eval(expr.left, frame, known), static_eval(expr.right, frame, known))
        case BoolOp():
            a, b = static_eval(expr.left, frame, known), static_eval(expr.right, frame, known)
            if not isinstance(a, bool) or not isinstance(b, bool):
                raise NotStatic("not a bool")
            return (a and b) if expr.op == "and" else (a or b)
    raise NotStatic("not a literal or a param")


def compare(op: str, a: StaticValue, b: StaticValue) -> bool:
    if isinstance(a, str) != isinstance(b, str) or isinstance(a, bool) != isinstance(b, bool):
        raise NotStatic("comparison of different types")
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if isinstance(a, bool | str):
        raise NotStatic("ordering on a non-number")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]


def arith(op: str, a: StaticValue, b: StaticValue) -> int | float:
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        raise NotStatic("arithmetic on a non-number")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise NotStatic("division by zero")
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


def format_static(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
