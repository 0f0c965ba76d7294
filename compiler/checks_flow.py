"""Statement checks: bindings, control flow, returns, loop bounds.

A strategy body is walked once, in order, with the local names bound so
far (`Env`). Control flow matters for three reasons:

- every path must end in `return`, and nothing may follow a `return` or
  `break` in the same block (it could never run);
- a name bound in one arm of an `if` only, or first bound inside a
  `repeat`, may be unbound after it;
- a `repeat` count must be static, because the DAG unrolls the loop and
  the budget bound multiplies by it.
"""

from __future__ import annotations

from ttcl.compiler.ast import Assign, Break, Expr, If, Repeat, Return, Span, Stmt, Strategy
from ttcl.compiler.builtins import BUILTINS, MAX_REPEAT, MAX_UNROLL, VALUE_TYPES, Ty
from ttcl.compiler.checks_calls import STATIC_EXPECTED
from ttcl.compiler.checks_exprs import Env, ExprChecker, type_hint
from ttcl.compiler.params import AUTO, StaticEvalError, static_value


def assigned_names(stmts: list[Stmt]) -> set[str]:
    out: set[str] = set()
    for st in stmts:
        if isinstance(st, Assign):
            out.add(st.target)
        elif isinstance(st, If):
            out |= assigned_names(st.then) | assigned_names(st.orelse)
        elif isinstance(st, Repeat):
            out |= assigned_names(st.body)
    return out


class FlowChecker:
    """Checks one strategy body."""

    def __init__(self, exprs: ExprChecker, strategy: Strategy):
        self.x = exprs
        self.ctx = exprs.ctx
        self.strategy = strategy
        self.returns = Ty(strategy.returns.name)
        self.loop_depth = 0
        self.unroll = 1  # product of the enclosing repeat counts
        # names re-bound to a new type in the current loop body: a loop-carried value must keep its type
        self.rebinds: dict[str, tuple[Ty, Span]] = {}

    def run(self) -> None:
        env = Env()
        for inp in self.strategy.inputs:
            env.bind(inp.name, Ty(inp.type.name), inp.span)
        self.x.env = env
        if not self.block(self.strategy.body):
            self._missing_return()

    # ------------------------------------------------------------ blocks

    def block(self, stmts: list[Stmt]) -> bool:
        """Check a block in the current env; True when every path through it ends in return/break."""
        done: str | None = None
        for st in stmts:
            if done is not None:
                self.ctx.error(st.span, f"unreachable code after {done}", hint="remove it, or move it before the statement that leaves the block")
                return True
            done = self.stmt(st)
        return done is not None

    def stmt(self, st: Stmt) -> str | None:
        """Check one statement; returns how it leaves the block (`return`...), or None when it falls through."""
        match st:
            case Assign():
                self.assign(st)
            case Return():
                self.ret(st)
                return "`return`"
            case Break():
                if self.loop_depth == 0:
                    self.ctx.error(st.span, "`break` outside `repeat`", hint="`break` leaves the innermost `repeat`; use `return` to leave the strategy")
                return "`break`"
            case If():
                if self.if_(st):
                    return "an `if` whose every arm leaves the block"
            case Repeat():
                self.repeat(st)
        return None

    def assign(self, st: Assign) -> None:
        name = st.target
        kind = self.x.scope.kind_of(name)
        ty = self.x.value(st.value)
        if kind is not None or name in BUILTINS:
            what = f"a {kind}" if kind else "a built-in function"
            self.ctx.error(st.span, f"cannot assign to `{name}`: it is {what}", hint=f"use another name, for example `{name}_value`")
            return
        if ty is Ty.text_list:
            self.ctx.error(st.value.span, "a list can only be written as an argument (`stop = [...]`)", hint="pass the list where it is used")
            ty = Ty.error
        env = self.x.env
        if name in env.types and name not in env.partial and ty not in (Ty.error, env.types[name]) and env.types[name] is not Ty.error:
            self.rebinds.setdefault(name, (env.types[name], st.span))
        env.bind(name, ty, st.span)

    def ret(self, st: Return) -> None:
        ty = self.x.value(st.value)
        if ty not in (Ty.error, self.returns):
            hint = type_hint(self.returns, ty) or f"change the return type to `-> {ty.value}`"
            self.ctx.error(st.value.span, f"strategy `{self.strategy.name}` returns {self.returns.value}, but this is {ty.value}",
                           expected=self.returns.value, hint=hint)

    # ------------------------------------------------------------ if

    def if_(self, st: If) -> bool:
        self.cond(st.cond, "`if`")
        before = self.x.env
        self.x.env = before.copy()
        then_done = self.block(st.then)
        then_env = self.x.env
        self.x.env = before.copy()
        else_done = self.block(st.orelse) if st.orelse else False
        else_env = self.x.env
        if then_done and else_done:
            self.x.env = before
            return True
        if then_done:
            self.x.env = else_env
        elif else_done:
            self.x.env = then_env
        else:
            self.x.env = self._merge(before, then_env, else_env, st)
        return False

    def _merge(self, before: Env, a: Env, b: Env, st: If) -> Env:
        out = before
        changed = assigned_names(st.then) | assigned_names(st.orelse)  # only these can differ from `before`
        for name in sorted(n for n in changed if n in a.types or n in b.types):
            in_a = name in a.types and name not in a.partial
            in_b = name in b.types and name not in b.partial
            if in_a and in_b:
                ta, tb = a.types[name], b.types[name]
                if Ty.error not in (ta, tb) and ta != tb:
                    self.ctx.error(b.assigned_at.get(name, st.span), f"`{name}` is {ta.value} after one arm of the `if` and {tb.value} after the other",
                                   hint="give the two values different names, or make both arms bind the same type")
                    ta = Ty.error
                out.types[name] = ta
                out.partial.pop(name, None)
                out.assigned_at[name] = b.assigned_at.get(name) or a.assigned_at[name]
            else:
                # bound in full on one arm, or (a nested `if`) only partly on one arm and not at all on the other
                src = a if in_a else b if in_b else a if name in a.types else b
                out.types[name] = src.types[name]
                out.partial[name] = ("if", st.span.line)
                if name in src.assigned_at:
                    out.assigned_at[name] = src.assigned_at[name]
        return out

    def cond(self, expr: Expr, where: str) -> None:
        ty = self.x.value(expr)
        if ty not in (Ty.error, Ty.bool):
            self.ctx.error(expr.span, f"the condition of {where} must be bool, got {ty.value}", expected="bool",
                           hint=type_hint(Ty.bool, ty) or "compare values, for example `best_score(c) > 0.5`")

    # ------------------------------------------------------------ repeat

    def repeat(self, st: Repeat) -> None:
        count = self._count(st.count)
        before = self.x.env
        self.x.env = before.copy()
        saved_rebinds, self.rebinds = self.rebinds, {}
        saved_unroll = self.unroll
        self.unroll *= max(count or 1, 1)
        if count is not None and self.unroll > MAX_UNROLL:
            self.ctx.error(st.count.span, f"nested `repeat` loops unroll to {self.unroll} iterations, over the limit of {MAX_UNROLL}",
                           hint="lower the counts; the DAG unrolls every iteration")
        self.loop_depth += 1
        self.block(st.body)
        if st.until is not None:
            self.cond(st.until, "`until`")
        self.loop_depth -= 1
        self.unroll = saved_unroll
        body = self.x.env
        for name, (old, span) in self.rebinds.items():
            if name in before.types and name not in before.partial and body.types.get(name) not in (old, Ty.error):
                self.ctx.error(span, f"`{name}` is {old.value} before the `repeat` but {body.types[name].value} after an iteration",
                               hint="a value carried from one iteration to the next keeps its type; use a new name for the other value")
        self.rebinds = saved_rebinds
        out = before
        for name in sorted(assigned_names(st.body)):
            if name not in body.types:
                continue
            ty = body.types[name]
            if name in before.types and name not in before.partial:
                out.types[name] = ty if ty == before.types[name] else Ty.error
                out.assigned_at[name] = body.assigned_at.get(name, before.assigned_at.get(name, st.span))
            else:
                out.types[name] = ty
                if name not in before.partial:
                    out.partial[name] = ("repeat", st.span.line)
        self.x.env = out

    def _count(self, expr: Expr) -> int | None:
        ty = self.x.value(expr)
        if ty is Ty.error:
            return None
        if ty is not Ty.number:
            self.ctx.error(expr.span, f"a `repeat` count must be a static int, got {ty.value}", expected=STATIC_EXPECTED,
                           hint=type_hint(Ty.number, ty))
            return None
        try:
            value = static_value(expr, self.x.params)
        except StaticEvalError as e:
            if not e.not_static:
                self.ctx.error(e.node.span, f"`repeat` count: {e.message}")
                return None
            self.ctx.error(expr.span, "a `repeat` count must be static, so the loop has a bound before it runs", expected=STATIC_EXPECTED,
                           hint="use a param (`param rounds: int = 4 in 1..16`) and stop early with `until cond` or `break`")
            return None
        if value is AUTO or not isinstance(value, int | float):
            return None
        if isinstance(value, float) and not value.is_integer():
            self.ctx.error(expr.span, f"a `repeat` count must be a whole number, got {value:g}", expected=STATIC_EXPECTED)
            return None
        if value < 0 or value > MAX_REPEAT:
            self.ctx.error(expr.span, f"`repeat` count {int(value)} is outside 0..{MAX_REPEAT}", expected=f"a count in 0..{MAX_REPEAT}")
            return None
        return int(value)

    # ------------------------------------------------------------ returns

    def _missing_return(self) -> None:
        s = self.strategy
        body = s.body
        if s.span.end_line > 0 and s.span.end_column > 1:
            span = Span(file=s.span.file, line=s.span.end_line, column=s.span.end_column - 1, end_line=s.span.end_line,
                        end_column=s.span.end_column, start_pos=max(s.span.end_pos - 1, 0), end_pos=s.span.end_pos)
        else:
            span = s.span
        last = body[-1] if body else None
        if isinstance(last, If) and not last.orelse:
            hint = f"the `if` at line {last.span.line} has no `else`: add `else {{ return ... }}`, or a `return` after it"
        elif isinstance(last, If):
            hint = f"an arm of the `if` at line {last.span.line} does not return; end each arm with `return ...`"
        elif isinstance(last, Repeat):
            hint = "a `repeat` can finish without returning; add `return ...` after the loop"
        else:
            hint = "end the strategy with `return ...`"
        self.ctx.error(span, f"strategy `{s.name}` can reach its end without returning {_a(self.returns)}",
                       expected="a `return` on every path", hint=hint)


def _a(ty: Ty) -> str:
    if ty in VALUE_TYPES and ty is not Ty.candidates:
        return ("an " if ty.value[0] in "aeiou" else "a ") + ty.value
    return ty.value
