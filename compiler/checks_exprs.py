"""Expression checks: name resolution, types, operators and prompt templates.

`ExprChecker.check(expr)` returns the expression's `Ty` and records it in
`CheckContext.types` (keyed by `id(node)`), and records what every Name
refers to in `CheckContext.symbols`. An expression that already failed gets
`Ty.error`, and nothing that uses it reports again, so one typo gives one
diagnostic. Calls are checked in `checks_calls.CallMixin`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ttcl.compiler.ast import (
    Attribute,
    BinOp,
    Bool,
    BoolOp,
    Call,
    Compare,
    Expr,
    ListExpr,
    Name,
    Number,
    Span,
    String,
    TemplateField,
    UnaryOp,
)
from ttcl.compiler.builtins import (
    BUDGET_LEFT,
    BUDGET_LEFT_UNITS,
    BUDGET_NAME,
    BUDGET_POOL,
    BUILTINS,
    CANDIDATE_FIELDS,
    VALUE_TYPES,
    Ty,
)
from ttcl.compiler.checks_calls import CallMixin
from ttcl.compiler.checks_scope import CheckContext, ModuleScope, StrategyKey, Symbol
from ttcl.compiler.diagnostics import did_you_mean
from ttcl.compiler.params import ParamValue

_PARAM_TYPES = {"int": Ty.number, "float": Ty.number, "bool": Ty.bool, "text": Ty.text}

_NOT_A_VALUE_HINT = {
    Ty.model: "generate with it: `sample({name}, prompt)`",
    Ty.verifier: "score candidates with it: `verify({name}, cands)`",
    Ty.strategy: "call it: `{name}(...)`",
    Ty.module: "call one of its strategies: `{name}.main(...)`",
    Ty.builtin: "call it: `{name}(...)`",
}


def param_type(ptype: str) -> Ty:
    return _PARAM_TYPES[ptype]


@dataclass
class Env:
    """The local names of a strategy at one point of its body.

    `partial` holds names bound on some paths only (one arm of an `if`, or
    first bound inside a `repeat`), with the reason; using one is an error.
    """

    types: dict[str, Ty] = field(default_factory=dict)
    partial: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> ("if" | "repeat", line)
    assigned_at: dict[str, Span] = field(default_factory=dict)

    def copy(self) -> Env:
        return Env(dict(self.types), dict(self.partial), dict(self.assigned_at))

    def bind(self, name: str, ty: Ty, span: Span) -> None:
        self.types[name] = ty
        self.partial.pop(name, None)
        self.assigned_at[name] = span


def unbound_message(name: str, why: tuple[str, int]) -> tuple[str, str]:
    """The message and hint for a name that is bound on some paths only."""
    kind, line = why
    if kind == "if":
        return (f"`{name}` may be unbound here: it is assigned in only one arm of the `if` at line {line}",
                f"assign `{name}` before the `if`, or in both arms")
    return (f"`{name}` is not visible after the `repeat` at line {line}, where it is first assigned",
            f"assign `{name}` before the loop to carry its value out of it")


def type_hint(expected: Ty, got: Ty) -> str | None:
    """A fix for the common mix-ups between value types."""
    return {
        (Ty.candidates, Ty.text): "generate candidates first, for example `sample(policy, question)`",
        (Ty.text, Ty.candidates): 'build a prompt from candidates with a template such as "...{drafts.text}...", or continue them with `extend` or `revise`',
        (Ty.text, Ty.answer): 'put the answer in a template: "...{ans}..."',
        (Ty.text, Ty.number): 'put the number in a template: "...{x}..."',
        (Ty.answer, Ty.candidates): "aggregate them: `vote(drafts)` or `best(drafts)`",
        (Ty.candidates, Ty.answer): "pass the candidates themselves (before `vote` or `best`)",
        (Ty.bool, Ty.number): "compare it, for example `x >= 0.5`",
        (Ty.bool, Ty.candidates): "test a number computed from them, for example `agreement(drafts) >= 0.5`",
        (Ty.number, Ty.candidates): "measure them: `count(...)`, `agreement(...)`, `best_score(...)`",
    }.get((expected, got))


class ExprChecker(CallMixin):
    """Types the expressions of one strategy body (or of one module-level declaration)."""

    def __init__(
        self,
        ctx: CheckContext,
        scope: ModuleScope,
        params: dict[str, ParamValue],
        *,
        strategy: StrategyKey | None = None,
        assigned_later: frozenset[str] = frozenset(),
    ):
        self.ctx = ctx
        self.scope = scope
        self.params = params
        self.strategy = strategy
        self.env = Env()
        self.extra: dict[str, Ty] = {}
        self.extra_kind = "template"
        self.assigned_later = assigned_later
        self._reported_partial: set[str] = set()
        self._dispatch: dict[type, Callable[[Any], Ty]] = {}

    # ------------------------------------------------------------ entry points

    def check(self, expr: Expr) -> Ty:
        cls = type(expr)
        method = self._dispatch.get(cls)
        if method is None:
            method = self._dispatch[cls] = getattr(self, f"visit_{cls.__name__}")
        ty = method(expr)
        self.ctx.types[id(expr)] = ty
        return ty

    def value(self, expr: Expr) -> Ty:
        """The type of an expression used as a value: model/verifier/strategy names are errors here."""
        ty = self.check(expr)
        if ty in VALUE_TYPES or ty in (Ty.error, Ty.text_list):
            return ty
        name = _shown(expr)
        hint = _NOT_A_VALUE_HINT.get(ty, "{name}").format(name=name)
        self.ctx.error(expr.span, f"`{name}` is {_phrase(ty)}, not a value", expected="text, candidates, a number, an answer or a bool", hint=hint)
        return Ty.error

    def expect(self, expr: Expr, want: Ty, what: str) -> Ty:
        """Check `expr` as a value of type `want`; `what` names the slot in the message."""
        ty = self.value(expr)
        if ty not in (Ty.error, want):
            self.ctx.error(expr.span, f"{what} must be {want.value}, got {ty.value}", expected=want.value, hint=type_hint(want, ty))
            return Ty.error
        return ty

    @contextmanager
    def with_extra(self, names: dict[str, Ty], kind: str) -> Iterator[None]:
        """Names bound only inside one argument: `c` in a revise prompt, `score` in a filter predicate."""
        saved, saved_kind = self.extra, self.extra_kind
        self.extra = {**saved, **names}
        self.extra_kind = kind
        try:
            yield
        finally:
            self.extra, self.extra_kind = saved, saved_kind

    # ------------------------------------------------------------ names

    def known_names(self) -> list[str]:
        return [*self.extra, *self.env.types, *self.scope.kinds]

    def visit_Name(self, node: Name) -> Ty:
        name = node.id
        if name in self.extra:
            self.ctx.symbols[id(node)] = Symbol(self.extra_kind, name)  # type: ignore[arg-type]
            return self.extra[name]
        if name in self.env.types:
            if name in self.env.partial:
                if name not in self._reported_partial:
                    self._reported_partial.add(name)
                    message, hint = unbound_message(name, self.env.partial[name])
                    self.ctx.error(node.span, message, hint=hint)
                return Ty.error
            self.ctx.symbols[id(node)] = Symbol("var", name, self.scope.key)
            return self.env.types[name]
        kind = self.scope.kind_of(name)
        if kind is not None:
            self.ctx.symbols[id(node)] = Symbol(kind, name, self.scope.key)
            if kind == "param":
                return param_type(self.scope.params[name].type)
            if kind == "import":
                return Ty.module
            return Ty(kind)
        if name in BUILTINS:
            self.ctx.symbols[id(node)] = Symbol("builtin", name)
            return Ty.builtin
        if name == BUDGET_NAME:
            self.ctx.error(node.span, "`budget` is read as `budget.left.<unit>`", expected="budget.left." + "|".join(BUDGET_LEFT_UNITS))
            return Ty.error
        self.unknown_name(node)
        return Ty.error

    def unknown_name(self, node: Name, *, what: str = "name") -> None:
        name = node.id
        if name in self.assigned_later:
            self.ctx.error(node.span, f"`{name}` is used before it is assigned", hint=f"move the assignment to `{name}` above this line")
            return
        hint = did_you_mean(name, [*self.known_names(), *BUILTINS])
        if name in ("none", "None", "null") and hint is None:  # the built-ins table writes an unset default as
            hint = "an argument whose default is `none` is unset: leave it out"  # `none` (QA pass: no hint at all)
        self.ctx.error(node.span, f"unknown {what} `{name}`", hint=hint)

    def visit_Attribute(self, node: Attribute) -> Ty:
        if isinstance(node.value, Attribute) and isinstance(node.value.value, Name) and node.value.value.id == BUDGET_NAME:
            return self._budget_left(node)
        if isinstance(node.value, Name) and node.value.id == BUDGET_NAME:
            self.ctx.error(node.span, "`budget` is read as `budget.left.<unit>`", expected="budget.left." + "|".join(BUDGET_LEFT_UNITS))
            return Ty.error
        if isinstance(node.value, Name) and self.scope.kind_of(node.value.id) == "import":
            target = self.imported_strategy(node)
            return Ty.strategy if target is not None else Ty.error
        base = self.check(node.value)
        if base is Ty.error:
            return Ty.error
        hint = f'fields are read inside templates: "{{{_shown(node)}}}"'
        if node.attr == "score" and base is Ty.candidates:
            hint = f"use `best_score({_shown(node.value)})` or `mean_score({_shown(node.value)})`"
        self.ctx.error(node.span, f"`{_shown(node)}`: fields cannot be read here", hint=hint)
        return Ty.error

    def _budget_left(self, node: Attribute) -> Ty:
        assert isinstance(node.value, Attribute)
        if node.value.attr not in (BUDGET_LEFT, BUDGET_POOL):
            self.ctx.error(node.value.span, f"`budget` has no field `{node.value.attr}`", expected="budget.left.<unit> or budget.pool.<unit>", hint=did_you_mean(node.value.attr, [BUDGET_LEFT, BUDGET_POOL]))
            return Ty.error
        if node.attr not in BUDGET_LEFT_UNITS:
            self.ctx.error(node.span, f"unknown budget unit `{node.attr}`", expected="one of " + ", ".join(BUDGET_LEFT_UNITS), hint=did_you_mean(node.attr, BUDGET_LEFT_UNITS))
            return Ty.error
        self.ctx.symbols[id(node)] = Symbol("budget", node.attr)
        return Ty.number

    def imported_strategy(self, node: Attribute) -> tuple[ModuleScope, str] | None:
        """`bon.main` -> (the scope of the module imported as `bon`, "main"); reports a missing strategy."""
        assert isinstance(node.value, Name)
        alias = node.value.id
        self.ctx.symbols[id(node.value)] = Symbol("import", alias, self.scope.loaded.imports.get(alias))
        self.ctx.types[id(node.value)] = Ty.module
        key = self.scope.loaded.imports.get(alias)
        target = self.ctx.scopes.get(key) if key is not None else None
        if target is None:
            return None  # the import failed; the loader reported it
        if node.attr not in target.strategies:
            names = list(target.strategies)
            self.ctx.error(node.span, f"module `{alias}` ({target.file}) has no strategy `{node.attr}`",
                           expected=("one of " + ", ".join(f"`{alias}.{n}`" for n in names)) if names else None,
                           hint=did_you_mean(node.attr, names))
            return None
        self.ctx.symbols[id(node)] = Symbol("strategy", node.attr, target.key)
        return target, node.attr

    # ------------------------------------------------------------ literals

    def visit_Number(self, node: Number) -> Ty:
        return Ty.number

    def visit_Bool(self, node: Bool) -> Ty:
        return Ty.bool

    def visit_String(self, node: String) -> Ty:
        for part in node.parts:
            if isinstance(part, TemplateField):
                self.template_field(part, node.span)
        return Ty.text

    def visit_ListExpr(self, node: ListExpr) -> Ty:
        items = [self.expect(item, Ty.text, "a list item") for item in node.items]
        return Ty.error if Ty.error in items else Ty.text_list

    def template_field(self, part: TemplateField, string_span: Span) -> Ty:
        span = part.span if part.span.line > 0 else string_span
        head, rest = part.path[0], part.path[1:]
        # a variable `question` in a revise prompt is what `{question}` always read there (the item's question, or
        # the text a helper was called with); with none, `{question}` is the item's question, as in a judge's rubric
        if head in self.extra and head in self.env.types and head != "question":
            self.ctx.error(span, f"template field `{{{head}}}` is ambiguous: `{head}` here is the candidate, but a variable `{head}` is also bound",
                           hint=f"rename the variable `{head}`")
            return Ty.error
        if head in self.extra and not (head == "question" and head in self.env.types):
            ty = self.extra[head]
        elif head in self.env.types and head not in self.env.partial:
            ty = self.env.types[head]
        elif self.scope.kind_of(head) == "param":
            ty = param_type(self.scope.params[head].type)
        elif self.scope.kind_of(head) is not None:
            kind = self.scope.kind_of(head)
            self.ctx.error(span, f"template field `{{{'.'.join(part.path)}}}`: `{head}` is {_phrase(Ty(kind) if kind != 'import' else Ty.module)}",
                           expected="a text, number, answer or candidates value")
            return Ty.error
        else:
            names = [*self.extra, *(n for n in self.env.types if n not in self.env.partial), *self.scope.params]
            if head in self.env.partial:
                message, hint = unbound_message(head, self.env.partial[head])
                self.ctx.error(span, f"template field `{{{head}}}`: {message}", hint=hint)
                return Ty.error
            if head in self.assigned_later:
                self.ctx.error(span, f"template field `{{{head}}}`: `{head}` is used before it is assigned",
                               hint=f"move the assignment to `{head}` above this line")
                return Ty.error
            hint = did_you_mean(head, names) or (f"the fields here are {', '.join(f'`{{{n}}}`' for n in names)}; "
                                                 "write `{{` for a literal brace" if names else
                                                 "write `{{` for a literal brace")
            self.ctx.error(span, f"unknown template field `{{{head}}}`", hint=hint)
            return Ty.error
        if not rest:
            return ty
        if ty is not Ty.candidates:
            self.ctx.error(span, f"template field `{{{'.'.join(part.path)}}}`: `{head}` is {ty.value}, which has no fields",
                           hint=f"write `{{{head}}}`")
            return Ty.error
        if len(rest) > 1 or rest[0] not in CANDIDATE_FIELDS:
            self.ctx.error(span, f"template field `{{{'.'.join(part.path)}}}`: candidates have no field `{'.'.join(rest)}`",
                           expected="one of " + ", ".join(f"`.{f}`" for f in CANDIDATE_FIELDS), hint=did_you_mean(rest[0], CANDIDATE_FIELDS))
            return Ty.error
        return Ty.number if rest[0] == "score" else Ty.text

    # ------------------------------------------------------------ operators

    def visit_BinOp(self, node: BinOp) -> Ty:
        left, right = self.value(node.left), self.value(node.right)
        if Ty.error in (left, right):
            return Ty.error
        if node.op == "+" and left == right and left in (Ty.number, Ty.candidates, Ty.text):
            return left
        if node.op != "+" and left == right == Ty.number:
            return Ty.number
        need = "two numbers, two texts or two candidates" if node.op == "+" else "numbers"
        self.ctx.error(node.span, f"`{node.op}` needs {need}; got {left.value} and {right.value}", hint=_binop_hint(node.op, left, right))
        return Ty.error

    def visit_UnaryOp(self, node: UnaryOp) -> Ty:
        want = Ty.number if node.op == "-" else Ty.bool
        ty = self.value(node.operand)
        if ty not in (Ty.error, want):
            self.ctx.error(node.span, f"`{node.op}` needs {want.value}, got {ty.value}", hint=type_hint(want, ty))
            return Ty.error
        return Ty.error if ty is Ty.error else want

    def visit_Compare(self, node: Compare) -> Ty:
        left, right = self.value(node.left), self.value(node.right)
        if Ty.error in (left, right):
            return Ty.bool
        if node.op in ("<", "<=", ">", ">="):
            if left == right == Ty.number:
                return Ty.bool
            self.ctx.error(node.span, f"`{node.op}` compares numbers; got {left.value} and {right.value}",
                           hint=type_hint(Ty.number, left if left is not Ty.number else right))
            return Ty.bool
        comparable = {left, right} <= {Ty.answer, Ty.text} or (left == right and left is not Ty.candidates)
        if not comparable:
            self.ctx.error(node.span, f"`{node.op}` compares two values of one type; got {left.value} and {right.value}",
                           hint="candidates are compared through a number: `count(...)`, `best_score(...)`" if Ty.candidates in (left, right) else None)
        return Ty.bool

    def visit_BoolOp(self, node: BoolOp) -> Ty:
        for side in (node.left, node.right):
            self.expect(side, Ty.bool, f"each side of `{node.op}`")
        return Ty.bool

    def visit_Call(self, node: Call) -> Ty:
        return self.check_call(node)


def _binop_hint(op: str, left: Ty, right: Ty) -> str | None:
    if op == "+" and Ty.candidates in (left, right):
        return "`+` concatenates two candidates values; both sides must be candidates"
    if Ty.text in (left, right) or Ty.answer in (left, right):
        return 'build text with a template: "{a} {b}"'
    return None


def _phrase(ty: Ty) -> str:
    return {Ty.model: "a model", Ty.verifier: "a verifier", Ty.strategy: "a strategy", Ty.module: "an imported module",
            Ty.builtin: "a built-in function", Ty.text_list: "a list"}.get(ty, ty.value)


def _shown(expr: Expr) -> str:
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Attribute):
        return f"{_shown(expr.value)}.{expr.attr}"
    return "this expression"
