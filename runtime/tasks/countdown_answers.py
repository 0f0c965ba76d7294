"""One text per countdown answer: expressions that are the same computation vote together.

A majority vote counts equal answers. On `countdown` the answer is an expression, and
one computation can be written many ways: `(7-3)*5+2`, `2+(7-3)*5` and `2+5*(7-3)` are one
solution, reached by the same combinations in another order. Voted as written they split
their votes, as `1,234.0` and `1234` would on a numeric task (`runtime/extract.py` normalises
those). `canonical` writes each such class one way: a chain of `+` (or of `*`) is flattened
and its operands sorted, and every parenthesis the order needs is kept.

Only commutativity and associativity of `+` and of `*` are used, never rewriting across `-`
or `/` (`8-(3-1)` and `8-3+1` stay two answers). So the canonical text uses the same numbers,
has the same value, and keeps the game's rules whenever the written one does (every
intermediate value a positive integer of at most VALUE_MAX): the partial sums of positive
terms, and the partial products of positive factors, lie between the operands and the whole.
`outcome` is the same for both texts, for any expression over at most six numbers (every
countdown answer; a longer one may come out past `evaluate`'s 64 tokens or 8 brackets deep).
A literal `0` goes last in its chain, so that a partial sum is never 0. A text that does not
parse is returned as given, trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttcl.runtime.tasks.countdown import _PREC, Tokens

_MAX_DEPTH = 8


@dataclass(frozen=True)
class _Node:
    """A number (`op` None, `args` empty), a chain `op` over 2+ args (`+`, `*`), or a binary `-` or `/`."""

    op: str | None
    args: tuple[_Node, ...] = ()
    number: str = ""


def canonical(text: str) -> str:
    """The one text of `text`'s class of expressions (spaces dropped); unparseable text as given, trimmed
    (never with inner spaces dropped: `1 0-7` is not `10-7`)."""
    tree = _parse(text)
    return text.strip() if tree is None else _render(_normal(tree))


def _parse(text: str) -> _Node | None:
    tk = Tokens.of(text)
    if tk is None:
        return None

    def binary(ops: str, operand, depth: int) -> _Node:
        v = operand(depth)
        while (t := tk.peek()) is not None and t in ops:
            v = _Node(tk.take(), (v, operand(depth)))
        return v

    def expr(depth: int) -> _Node:
        return binary("+-", term, depth)

    def term(depth: int) -> _Node:
        return binary("*/", atom, depth)

    def atom(depth: int) -> _Node:
        t = tk.take()
        if t == "(":
            if depth > _MAX_DEPTH:  # as deep as `countdown.evaluate` reads
                raise ValueError("deep")
            v = expr(depth + 1)
            if tk.take() != ")":
                raise ValueError(")")
            return v
        if t.isdigit():
            return _Node(None, number=str(int(t)))
        raise ValueError(t)

    try:
        tree = expr(0)
    except ValueError:
        return None
    return tree if tk.done() else None


def _normal(node: _Node) -> _Node:
    """Flatten chains of `+` and of `*`, and sort each chain's operands by their text."""
    if node.op is None:
        return node
    args = tuple(_normal(a) for a in node.args)
    if node.op in "-/":
        return _Node(node.op, args)
    flat: list[_Node] = []
    for a in args:
        flat.extend(a.args if a.op == node.op else (a,))
    return _Node(node.op, tuple(sorted(flat, key=lambda a: (a.number == "0", _render(a)))))


def _render(node: _Node) -> str:
    if node.op is None:
        return node.number
    p = _PREC[node.op]
    parts = []
    for k, a in enumerate(node.args):
        s = _render(a)
        if a.op is not None:
            q = _PREC[a.op]
            # an operand of lower precedence always needs brackets; one of equal precedence does
            # unless it is the leftmost (read left to right, `a-b+c` is `(a-b)+c`)
            if q < p or (q == p and k > 0):
                s = f"({s})"
        parts.append(s)
    return node.op.join(parts)
