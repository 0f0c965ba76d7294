"""Executors for the cheap ops: everything that runs no model.

They are pure functions of their inputs' values, so the scheduler runs them
inline as soon as they are ready, item by item, and they never need a
batch. Prompt templates are rendered here too, since both cheap `template`
nodes and model ops (`sample`, `revise`, judge rubrics) need them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ttcl.compiler import ast
from ttcl.compiler.budget import NUMBER_FORMAT
from ttcl.compiler.dag import DagNode, PromptPart
from ttcl.errors import TtclRuntimeError
from ttcl.runtime import values as V
from ttcl.runtime.values import Answer, Candidate, Candidates, Value


class OpError(TtclRuntimeError):
    """A cheap op could not compute its value for one item (recorded against that item)."""


# ---------------------------------------------------------------- templates


def fmt_number(x: float | int) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return format(x, NUMBER_FORMAT)


def as_text(value: Any) -> str:
    """How a value reads inside a prompt."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return fmt_number(value)
    if isinstance(value, Answer):
        return value.value or ""
    if isinstance(value, Candidates):
        first = value.first()
        return first.text if first is not None else ""
    if isinstance(value, Candidate):
        return value.text
    return str(value)


def field_of(value: Any, attrs: list[str]) -> Any:
    """`{c.text}`-style access: on candidates a field means the first (highest-ranked) member."""
    for attr in attrs:
        if isinstance(value, Candidates):
            value = value.first()
        if value is None:
            return None
        if isinstance(value, Candidate):
            if attr not in ("text", "prompt", "answer", "score"):
                raise OpError(f"candidates have no field {attr!r}")
            value = getattr(value, attr)
        elif isinstance(value, Answer) and attr in ("answer", "value"):
            value = value.value
        else:
            raise OpError(f"value of type {type(value).__name__} has no field {attr!r}")
    return value


def render(parts: list[PromptPart], values: Mapping[str, Value], local: Mapping[str, Any] | None = None) -> str:
    """Fill a template: sourced fields read node values; unsourced ones read `local` (per-candidate: c, feedback)."""
    out: list[str] = []
    for part in parts:
        if part.text is not None:
            out.append(part.text)
            continue
        if part.source is not None:
            base: Any = values.get(part.source)
        else:
            if local is None or not part.path or part.path[0] not in local:
                name = ".".join(part.path)
                raise OpError(f"template field {{{name}}} has no value here")
            base = local[part.path[0]]
        out.append(as_text(field_of(base, part.path[1:])))
    return "".join(out)


# ---------------------------------------------------------------- predicates and arithmetic


def _arith(symbol: str, a: float, b: float | None) -> float:
    if symbol == "neg":
        return -a
    assert b is not None
    if symbol == "+":
        return a + b
    if symbol == "-":
        return a - b
    if symbol == "*":
        return a * b
    if symbol == "/":
        if b == 0:
            raise OpError("division by zero")
        return a / b
    raise OpError(f"unknown arithmetic operator {symbol!r}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _comparable(v: Any) -> Any:
    if isinstance(v, Answer):
        return v.value
    return v


def compare(symbol: str, a: Any, b: Any) -> bool:
    a, b = _comparable(a), _comparable(b)
    if symbol in ("<", "<=", ">", ">=") and (a is None or b is None):
        return False
    try:
        return bool(_COMPARE[symbol](a, b))
    except TypeError as e:
        raise OpError(f"cannot compare {a!r} {symbol} {b!r}") from e


def eval_predicate(expr: ast.Expr, scope: Mapping[str, Any]) -> Any:
    """A `filter` predicate for one candidate: `score`, `length` and static names in `scope`."""
    match expr:
        case ast.Number(value=v):
            return v
        case ast.Bool(value=v):
            return v
        case ast.String(parts=parts) if not expr.is_template:  # a literal, or a text param folded in
            return "".join(p.text for p in parts)
        case ast.Name(id=name):
            if name not in scope:
                raise OpError(f"filter predicate: unknown name {name!r}")
            return scope[name]
        case ast.UnaryOp(op="not", operand=x):
            return not eval_predicate(x, scope)
        case ast.UnaryOp(op="-", operand=x):
            return -_num(eval_predicate(x, scope))
        case ast.BinOp(op=op, left=l, right=r):
            return _arith(op, _num(eval_predicate(l, scope)), _num(eval_predicate(r, scope)))
        case ast.Compare(op=op, left=l, right=r):
            return compare(op, eval_predicate(l, scope), eval_predicate(r, scope))
        case ast.BoolOp(op="and", left=l, right=r):
            return bool(eval_predicate(l, scope)) and bool(eval_predicate(r, scope))
        case ast.BoolOp(op="or", left=l, right=r):
            return bool(eval_predicate(l, scope)) or bool(eval_predicate(r, scope))
    raise OpError(f"filter predicate: unsupported expression {type(expr).__name__}")


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool | int | float):
        return float(v)
    raise OpError(f"expected a number, got {type(v).__name__}")


# ---------------------------------------------------------------- the cheap ops


def _cands(node: DagNode, values: Mapping[str, Value], role: str = "cands") -> Candidates:
    ids = node.input_nodes(role)
    if not ids:
        raise OpError(f"{node.op}: no {role} input")
    v = values.get(ids[0])
    if v is None:
        return Candidates()
    if not isinstance(v, Candidates):
        raise OpError(f"{node.op}: expected candidates, got {type(v).__name__}")
    return v


def _one(node: DagNode, values: Mapping[str, Value], role: str) -> Value:
    ids = node.input_nodes(role)
    if not ids:
        raise OpError(f"{node.op}: no {role} input")
    return values.get(ids[0])


def run_cheap(
    node: DagNode,
    values: Mapping[str, Value],
    ran: Callable[[str], bool],
    *,
    inputs: Mapping[str, Value],
    budget_left: Callable[[str], float],
    scope: Mapping[str, Any],
    budget_pool: Callable[[str], float] | None = None,
) -> Value:
    """The value of one cheap node for one item. `ran(id)` says whether an input node ran (for phi)."""
    a = node.args
    match node.op:
        case "input":
            name = a.name or ""
            if name not in inputs:
                raise OpError(f"no value for input {name!r}")
            return inputs[name]
        case "param" | "const":
            return a.value
        case "budget_left":
            return budget_left(a.name or "")
        case "budget_pool":
            return budget_pool(a.name or "") if budget_pool is not None else math.inf
        case "template":
            return render(a.prompt or [], values)
        case "vote":
            return V.vote(_cands(node, values), weighted=a.weight == "score")
        case "best":
            return V.best(_cands(node, values))
        case "top":
            return V.top(_cands(node, values), a.k or 1)
        case "filter":
            if a.predicate is None:
                raise OpError("filter: no predicate")
            pred = a.predicate
            # the variables it reads, and the calls in it, come in as `pred:NAME` ports (QA pass: they were
            # never read, and every item failed with "unknown name 'm'" where `ttcl check` had said nothing)
            read = {p.role.removeprefix("pred:"): values.get(p.node) for p in node.inputs if p.role.startswith("pred:")}

            def keep(c: Candidate) -> bool:
                local = {**scope, **read, "score": c.score if c.score is not None else 0.0, "length": float(c.tokens),
                         "finished": c.finished}
                return bool(eval_predicate(pred, local))

            return V.filter_cands(_cands(node, values), keep)
        case "concat":
            return _cands(node, values, "left") + _cands(node, values, "right")
        case "agreement" | "best_score" | "mean_score" | "count" | "entropy":
            return V.STATS[node.op](_cands(node, values))
        case "all_finished":
            return V.all_finished(_cands(node, values))
        case "backup":
            return V.backup(_cands(node, values), _cands(node, values, "rollouts"))
        case "balance":
            n = a.n or 1
            total = a.value if node.input_nodes("total") == [] else _num(_one(node, values, "total"))
            want = n if total is None or math.isnan(float(total)) else min(n, max(0, math.floor(float(total) + 1e-9)))
            temp = a.temperature if a.temperature is not None else _num(_one(node, values, "temperature"))
            return V.balance(_cands(node, values), want, temp)
        case "arith":
            sym = a.symbol or "+"
            if sym == "neg":
                return _arith(sym, _num(_one(node, values, "operand")), None)
            return _arith(sym, _num(_one(node, values, "left")), _num(_one(node, values, "right")))
        case "compare":
            return compare(a.symbol or "==", _one(node, values, "left"), _one(node, values, "right"))
        case "bool":
            if a.symbol == "not":
                return not bool(_one(node, values, "operand"))
            left, right = bool(_one(node, values, "left")), bool(_one(node, values, "right"))
            return (left and right) if a.symbol == "and" else (left or right)
        case "guard":
            return bool(_one(node, values, "cond"))
        case "phi":
            chosen: Value = None
            for src in node.input_nodes("value"):
                if ran(src):
                    chosen = values.get(src)
            return chosen
        case "return":
            return _one(node, values, "value")
    raise OpError(f"op {node.op!r} is not a cheap op")
