"""Call checks: built-in arguments, strategy calls, verifier constructors, and recursion.

A built-in call is bound against its signature in `builtins.py` (too many
positional arguments, unknown or repeated keywords, missing ones), then each
argument is checked by what the parameter accepts: a model name, a verifier
name, a static int, a template, a predicate. A strategy call passes one
value per input, and its keywords set params of the callee's module, so
they must be static and in that param's range. Calls between strategies
form a graph; a cycle in it would make the inlined DAG, and so the cost,
unbounded.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

from ttcl.compiler.ast import (
    Attribute,
    Call,
    Expr,
    Keyword,
    ListExpr,
    Name,
    ParamDecl,
    Strategy,
    String,
)
from ttcl.compiler.builtins import (
    BUILTINS,
    VERIFIERS,
    ArgKind,
    BuiltinSig,
    ParamSpec,
    Ty,
    VerifierSig,
    signature_text,
)
from ttcl.compiler.checks_scope import (
    CallEdge,
    CallTarget,
    CheckContext,
    ModuleScope,
    StrategyKey,
    Symbol,
)
from ttcl.compiler.diagnostics import did_you_mean
from ttcl.compiler.params import StaticEvalError, param_range, static_value

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from ttcl.compiler.checks_exprs import Env
    from ttcl.compiler.params import ParamValue

STATIC_EXPECTED = "a whole number known before the run: a literal, a param, or arithmetic on those"


class CallMixin:
    """Call checking for `ExprChecker` (split out to keep each module readable)."""

    if TYPE_CHECKING:
        ctx: CheckContext
        scope: ModuleScope
        params: dict[str, ParamValue]
        strategy: StrategyKey | None
        env: Env
        extra: dict[str, Ty]

        def check(self, expr: Expr) -> Ty: ...
        def value(self, expr: Expr) -> Ty: ...
        def expect(self, expr: Expr, want: Ty, what: str) -> Ty: ...
        def with_extra(self, names: dict[str, Ty], kind: str) -> AbstractContextManager[None]: ...
        def unknown_name(self, node: Name, *, what: str = "name") -> None: ...
        def imported_strategy(self, node: Attribute) -> tuple[ModuleScope, str] | None: ...
        def known_names(self) -> list[str]: ...

    # ------------------------------------------------------------ dispatch

    def check_call(self, call: Call) -> Ty:
        func = call.func
        if isinstance(func, Attribute) and isinstance(func.value, Name) and self.scope.kind_of(func.value.id) == "import":
            target = self.imported_strategy(func)
            if target is None:
                return self._fallback_args(call)
            scope, name = target
            return self.strategy_call(call, scope, scope.strategies[name], f"{func.value.id}.{name}")
        if isinstance(func, Attribute) and isinstance(func.value, Name) and self._unknown_head(func.value):
            return self._fallback_args(call)
        if not isinstance(func, Name):
            self.ctx.error(func.span, "only built-ins and strategies can be called", expected="`name(...)` or `alias.strategy(...)`")
            return self._fallback_args(call)
        name = func.id
        if name in self.extra or name in self.env.types:
            ty = self.extra.get(name) or self.env.types[name]
            self.ctx.error(func.span, f"`{name}` is {ty.value}, not a function", hint=did_you_mean(name, [*BUILTINS, *self.scope.strategies]))
            return self._fallback_args(call)
        kind = self.scope.kind_of(name)
        if kind == "strategy":
            self.ctx.symbols[id(func)] = Symbol("strategy", name, self.scope.key)
            return self.strategy_call(call, self.scope, self.scope.strategies[name], name)
        if kind is not None:
            return self._not_callable(call, name, kind)
        sig = BUILTINS.get(name)
        if sig is not None:
            self.ctx.symbols[id(func)] = Symbol("builtin", name)
            self.ctx.calls[id(call)] = CallTarget(builtin=sig)
            return self.builtin_call(call, sig)
        if name in VERIFIERS:
            self.ctx.error(func.span, f"`{name}(...)` makes a verifier and is only used in a declaration",
                           expected=f'`verifier v = {signature_text(VERIFIERS[name])}` at the top of the file, then `verify(v, cands)`')
            return self._fallback_args(call)
        self.ctx.error(func.span, f"unknown function `{name}`", hint=did_you_mean(name, [*BUILTINS, *self.scope.strategies]))
        return self._fallback_args(call)

    def _unknown_head(self, head: Name) -> bool:
        """`helpr.main(...)` with no such import: report the alias (with a suggestion) and stop."""
        name = head.id
        if name in self.extra or name in self.env.types or self.scope.kind_of(name) is not None or name in BUILTINS:
            return False
        aliases = list(self.scope.imports)
        self.ctx.error(head.span, f"unknown import alias `{name}`",
                       expected=("an import alias: " + ", ".join(f"`{a}`" for a in aliases)) if aliases else "an `import \"file.ttc\" as alias` first",
                       hint=did_you_mean(name, aliases))
        return True

    def _not_callable(self, call: Call, name: str, kind: str) -> Ty:
        hints = {
            "model": f"generate with it: `sample({name}, prompt)`",
            "verifier": f"score candidates with it: `verify({name}, cands)`",
            "import": f"call one of its strategies: `{name}.main(...)`",
            "param": None,
        }
        what = {"model": "a model", "verifier": "a verifier", "import": "an imported module", "param": "a param"}[kind]
        self.ctx.error(call.func.span, f"`{name}` is {what}, not a function", hint=hints[kind])
        return self._fallback_args(call)

    def _fallback_args(self, call: Call) -> Ty:
        """Check the arguments of a call that failed, so their own mistakes are still reported."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            if not (isinstance(arg, Name) and arg.id == "score"):
                self.check(arg)
        return Ty.error

    # ------------------------------------------------------------ binding

    def bind(self, call: Call, sig: BuiltinSig | VerifierSig) -> dict[str, Expr]:
        """Map arguments to parameters, reporting extra positional, unknown, repeated and missing ones."""
        params = sig.params
        bound: dict[str, Expr] = {}
        expected = _LazySignature(sig)
        for i, arg in enumerate(call.args):
            if i >= len(params):
                self.ctx.error(arg.span, f"`{sig.name}` takes at most {len(params)} positional argument{'s' if len(params) != 1 else ''}, got {len(call.args)}",
                               expected=str(expected))
                self.check(arg)
                break
            bound[params[i].name] = arg
        for kw in call.keywords:
            if sig.param(kw.name) is None:
                self.ctx.error(kw.span, f"`{sig.name}` has no argument `{kw.name}`", expected=str(expected), hint=did_you_mean(kw.name, sig.param_names))
                self._check_loose(kw)
            elif kw.name in bound:
                self.ctx.error(kw.span, f"argument `{kw.name}` of `{sig.name}` is given twice", expected=str(expected), hint="keep one")
            else:
                bound[kw.name] = kw.value
        missing = [p.name for p in params if p.required and p.name not in bound]
        if missing:
            names = ", ".join(f"`{m}`" for m in missing)
            self.ctx.error(call.span, f"`{sig.name}` is missing {'its argument' if len(missing) == 1 else 'arguments'} {names}", expected=str(expected))
        return bound

    def _check_loose(self, kw: Keyword) -> None:
        if not (isinstance(kw.value, Name) and kw.value.id == "score"):
            self.check(kw.value)

    def builtin_call(self, call: Call, sig: BuiltinSig) -> Ty:
        bound = self.bind(call, sig)
        for spec in sig.params:
            if spec.name in bound:
                self.check_arg(sig.name, spec, bound[spec.name])
        if sig.name == "revise" and "feedback" not in bound:
            self._feedback_needs_verifier(bound.get("prompt"))
        return sig.returns

    def _feedback_needs_verifier(self, prompt: Expr | None) -> None:
        """A revise prompt naming `{feedback}` with no `feedback` verifier would render it as empty text."""
        if not isinstance(prompt, String):
            return
        for part in prompt.parts:
            path = getattr(part, "path", None)
            if path and path[0] == "feedback":
                self.ctx.error(part.span, "`{feedback}` in a revise prompt needs a feedback verifier",
                               expected="`revise(..., feedback = VERIFIER)`",
                               hint="pass `feedback = v` with a verifier declared as `verifier v = ...`, or drop `{feedback}`")
                return

    # ------------------------------------------------------------ arguments

    def check_arg(self, func: str, spec: ParamSpec, expr: Expr) -> None:
        what = f"`{spec.name}` of `{func}`"
        match spec.kind:
            case ArgKind.value:
                if spec.static:
                    if self.expect(expr, Ty.number, what) is Ty.number:
                        self.static_int(expr, what, spec.min_value, spec.max_value, why=spec.name)
                elif spec.type is not None and self.expect(expr, spec.type, what) is Ty.number:
                    self._literal_bounds(expr, what, spec.min_value, spec.max_value, open_low=spec.min_exclusive)
            case ArgKind.model | ArgKind.verifier:
                self.decl_ref(expr, spec.kind.value, what)
            case ArgKind.model_ref:
                if isinstance(expr, String) and not expr.is_template and _plain(expr).strip():
                    self.ctx.record(expr, Ty.text)
                else:
                    self.decl_ref(expr, "model", what, allow_string=True)
            case ArgKind.string_literal | ArgKind.choice:
                self._string_literal(expr, spec, what)
            case ArgKind.weight:
                if isinstance(expr, Name) and expr.id in spec.choices:
                    self.ctx.symbols[id(expr)] = Symbol("weight", expr.id)
                    self.ctx.record(expr, Ty.number)
                else:
                    self.ctx.error(expr.span, f"{what} must be " + " or ".join(f"`{c}`" for c in spec.choices),
                                   hint="omit `weight` for a plain majority vote")
            case ArgKind.stop:
                self._stop(expr, what)
            case ArgKind.predicate:
                with self.with_extra({"score": Ty.number, "length": Ty.number, "finished": Ty.bool}, "predicate"):
                    self.expect(expr, Ty.bool, what)
            case ArgKind.template:
                extra = {n: (Ty.candidates if n == "c" else Ty.text) for n in spec.template_fields}
                with self.with_extra(extra, "template"):
                    self.expect(expr, Ty.text, what)

    def _stop(self, expr: Expr, what: str) -> None:
        """Stop strings are fixed before the run: string literals, a list of them, or a text param."""
        ty = self.value(expr)
        if ty is Ty.error:
            return
        items = expr.items if isinstance(expr, ListExpr) else [expr]
        for item in items:
            literal = isinstance(item, String) and not item.is_template
            sym = self.ctx.symbols.get(id(item))
            if not literal and not (sym is not None and sym.kind == "param" and self.ctx.types.get(id(item)) is Ty.text):
                self.ctx.error(item.span, f"{what} must be a plain string, a list of them, or a text param",
                               expected='`stop = "\\n"` or `stop = ["\\n", "####"]`',
                               hint="stop strings are fixed before the run; templates and variables are not")
                return
            value = _plain(item) if isinstance(item, String) else self.params.get(getattr(item, "id", ""))
            if value == "":
                self.ctx.error(item.span, f"{what}: a stop string must not be empty", expected='a non-empty string such as `"\\n"`',
                               hint="omit `stop` to sample to max_tokens or the end of sequence")

    def decl_ref(self, expr: Expr, kind: str, what: str, *, allow_string: bool = False) -> None:
        """`expr` must name a `model` (or `verifier`) declaration of this module."""
        table = self.scope.models if kind == "model" else self.scope.verifiers
        if isinstance(expr, Name) and expr.id in table and expr.id not in self.env.types and expr.id not in self.extra:
            self.ctx.symbols[id(expr)] = Symbol(kind, expr.id, self.scope.key)  # type: ignore[arg-type]
            self.ctx.record(expr, Ty(kind))
            return
        expected = f"the name of a `{kind}` declaration" + (" or a model reference string" if allow_string else "")
        if isinstance(expr, Name):
            known = self.scope.kind_of(expr.id) or ("var" if expr.id in self.env.types else None)
            if known is None and expr.id not in BUILTINS:
                self.ctx.error(expr.span, f"unknown {kind} `{expr.id}`", expected=expected, hint=did_you_mean(expr.id, table) or _declare_hint(kind))
                return
            ty = self.check(expr)
            if ty is Ty.error:
                return
            if expr.id in self.env.types or expr.id in self.extra:  # an input or variable, shadowing or not
                got, hint = f"a {ty.value} value here (an input or variable)", None
            else:
                got = {"model": "a model", "verifier": "a verifier", "module": "an imported module", "strategy": "a strategy",
                       "param": "a param"}.get(self.scope.kind_of(expr.id) or "", ty.value)
                hint = did_you_mean(expr.id, table)
            self.ctx.error(expr.span, f"{what} must be a {kind}, but `{expr.id}` is {got}", expected=expected,
                           hint=_swap_hint(kind, expr.id) or hint)
            return
        if isinstance(expr, String) and not allow_string:
            self.ctx.error(expr.span, f"{what} must name a declared {kind}, not a string", expected=expected, hint=_declare_hint(kind))
            return
        ty = self.check(expr)
        if ty is not Ty.error:
            self.ctx.error(expr.span, f"{what} must be a {kind}, got {ty.value}", expected=expected)

    def _string_literal(self, expr: Expr, spec: ParamSpec, what: str) -> None:
        if not isinstance(expr, String) or expr.is_template:
            ty = self.check(expr)
            if ty is not Ty.error:
                self.ctx.error(expr.span, f"{what} must be a plain string literal", expected=spec.describe())
            return
        self.ctx.record(expr, Ty.text)
        if spec.choices and _plain(expr) not in spec.choices:
            self.ctx.error(expr.span, f'{what} is "{_plain(expr)}"', expected=spec.describe(), hint=did_you_mean(_plain(expr), spec.choices))

    def static_int(self, expr: Expr, what: str, low: float | None, high: float | None, *, why: str) -> int | None:
        """The value of a static int argument (None when `auto` or invalid), reporting what is wrong."""
        try:
            value = static_value(expr, self.params)
        except StaticEvalError as e:
            if not e.not_static:
                self.ctx.error(e.node.span, f"{what}: {e.message}")
                return None
            self.ctx.error(expr.span, f"{what} must be static", expected=STATIC_EXPECTED,
                           hint=f"`{why}` sizes the work, and the budget bound needs it before anything runs; use a param (`param {why}: int = ...`)")
            return None
        if not isinstance(value, int | float):
            return None  # auto: solved by the budget stage
        if isinstance(value, float) and not value.is_integer():
            self.ctx.error(expr.span, f"{what} must be a whole number, got {value:g}", expected=STATIC_EXPECTED)
            return None
        return self._bounds(expr, what, int(value), low, high)

    def _literal_bounds(self, expr: Expr, what: str, low: float | None, high: float | None, *, open_low: bool = False) -> None:
        try:
            value = static_value(expr, self.params)
        except StaticEvalError as e:
            if not e.not_static:  # static, and invalid (`1.0 / 0.0`): every item would fail on it
                self.ctx.error(expr.span, f"{what}: {e}")
            return
        if not isinstance(value, int | float):
            return
        if isinstance(value, float) and not math.isfinite(value):
            self.ctx.error(expr.span, f"{what} is {value}, not a finite number", expected="a finite number")
            return
        if open_low and low is not None and (value <= low or (high is not None and value > high)):
            rng = f"({_num(low)}..{_num(high)}]"
            self.ctx.error(expr.span, f"{what} is {_num(value)}, outside {rng}", expected=f"a value above {_num(low)}, at most {_num(high)}")
            return
        self._bounds(expr, what, value, low, high)

    def _bounds(self, expr: Expr, what: str, value: float, low: float | None, high: float | None) -> int | None:
        if high is None and low is not None and value < low:  # a minimum only: "outside >= 0" read badly
            self.ctx.error(expr.span, f"{what} is {_num(value)}, below the minimum {_num(low)}",
                           expected=f"a value of at least {_num(low)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            rng = f"{_num(low)}..{_num(high)}" if high is not None else f">= {_num(low)}"
            self.ctx.error(expr.span, f"{what} is {_num(value)}, outside {rng}", expected=f"a value in {rng}")
            return None
        return int(value) if float(value).is_integer() else None

    # ------------------------------------------------------------ strategy calls

    def strategy_call(self, call: Call, callee: ModuleScope, strategy: Strategy, shown: str) -> Ty:
        key = StrategyKey(callee.key, strategy.name)
        self.ctx.calls[id(call)] = CallTarget(strategy=key)
        if self.strategy is not None:
            self.ctx.edges.append(CallEdge(self.strategy, key, call.span, shown))
        inputs = strategy.inputs
        expected = f"`{shown}(" + ", ".join(f"{i.name}: {i.type.name}" for i in inputs) + ")`"
        for i, arg in enumerate(call.args):
            if i >= len(inputs):
                self.ctx.error(arg.span, f"`{shown}` takes {len(inputs)} input{'s' if len(inputs) != 1 else ''}, got {len(call.args)}", expected=expected)
                self.check(arg)
                continue
            self.expect(arg, Ty(inputs[i].type.name), f"input `{inputs[i].name}` of `{shown}`")
        if len(call.args) < len(inputs):
            missing = ", ".join(f"`{i.name}`" for i in inputs[len(call.args):])
            self.ctx.error(call.span, f"`{shown}` is missing input{'s' if len(inputs) - len(call.args) > 1 else ''} {missing}", expected=expected)
        seen: set[str] = set()
        for kw in call.keywords:
            decl = callee.params.get(kw.name)
            if decl is None:
                names = list(callee.params)
                self.ctx.error(kw.span, f"`{shown}` has no param `{kw.name}`: keyword arguments set params of {callee.file}",
                               expected=("one of " + ", ".join(f"`{n}`" for n in names)) if names else f"{callee.file} declares no params",
                               hint=did_you_mean(kw.name, names))
                self._check_loose(kw)
            elif kw.name in seen:
                self.ctx.error(kw.span, f"param `{kw.name}` of `{shown}` is given twice", hint="keep one")
            else:
                seen.add(kw.name)
                self._param_keyword(kw, decl, shown, callee)
        return Ty(strategy.returns.name)

    def _param_keyword(self, kw: Keyword, decl: ParamDecl, shown: str, callee: ModuleScope) -> None:
        what = f"param `{kw.name}` of `{shown}`"
        if decl.type in ("int", "float"):
            if self.expect(kw.value, Ty.number, what) is not Ty.number:
                return
            low, high = param_range(decl)
            if decl.type == "int":
                self.static_int(kw.value, what, low, high, why=kw.name)
                return
            try:
                value = static_value(kw.value, self.params)
            except StaticEvalError:
                self.ctx.error(kw.value.span, f"{what} must be static", expected="a number literal, a param, or arithmetic on those")
                return
            if isinstance(value, int | float):
                self._bounds(kw.value, what, value, low, high)
            return
        want = Ty.bool if decl.type == "bool" else Ty.text
        if self.expect(kw.value, want, what) is Ty.error:
            return
        sym = self.ctx.symbols.get(id(kw.value))
        literal = (isinstance(kw.value, String) and not kw.value.is_template) or type(kw.value).__name__ == "Bool"
        if not literal and (sym is None or sym.kind != "param"):
            self.ctx.error(kw.value.span, f"{what} must be static", expected=f"a {decl.type} literal or a {decl.type} param")


class _LazySignature:
    """`sample(model, prompt, ...)`, formatted only when a diagnostic needs it."""

    def __init__(self, sig: BuiltinSig | VerifierSig):
        self.sig = sig

    def __str__(self) -> str:
        return f"`{signature_text(self.sig)}`"


def _plain(s: String) -> str:
    return "".join(getattr(p, "text", "") for p in s.parts)


def _num(v: float | None) -> str:
    if v is None:
        return "?"
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _declare_hint(kind: str) -> str:
    if kind == "model":
        return 'declare it at the top of the file: `model policy = "ttcl:arith-s"`'
    return 'declare it at the top of the file: `verifier exact = check("arith")`'


def _swap_hint(kind: str, name: str) -> str | None:
    if kind == "verifier":
        return f'to judge with model `{name}`, declare `verifier j = judge({name}, "...")` and pass `j`'
    return None


# ---------------------------------------------------------------- verifier declarations


def check_verifier_call(checker: CallMixin, ctor: VerifierSig, call: Call) -> None:
    """Arguments of `check(...)`, `reward(...)`, `prm(...)`, `judge(...)` in a `verifier` declaration."""
    bound = checker.bind(call, ctor)
    for spec in ctor.params:
        if spec.name in bound:
            checker.check_arg(ctor.name, spec, bound[spec.name])
    name_arg = bound.get("name")
    if ctor.name == "check" and isinstance(name_arg, String) and not name_arg.is_template:
        known = registered_checkers()
        if known is not None and _plain(name_arg) not in known:
            checker.ctx.error(name_arg.span, f'no checker named "{_plain(name_arg)}"', expected="one of " + ", ".join(f'"{k}"' for k in known),
                              hint=did_you_mean(_plain(name_arg), known) or "checkers register under the `ttcl.verifiers` entry-point group")


@functools.cache
def registered_checkers() -> list[str] | None:
    """Names of the registered checkers (scanning entry points is slow, so once per process)."""
    try:
        from ttcl.runtime.tasks import available_checkers
    except ImportError:
        return None
    return available_checkers()


# ---------------------------------------------------------------- recursion


MAX_CALL_DEPTH = 64  # strategy calls nested deeper than this are refused (each call is inlined)


def report_recursion(ctx: CheckContext, order: list[StrategyKey], names: dict[StrategyKey, str]) -> None:
    """One diagnostic per call cycle, at the call that closes it, naming the whole cycle; and one
    when calls nest more than MAX_CALL_DEPTH deep. Iterative, so no chain of calls can exhaust
    Python's stack."""
    graph: dict[StrategyKey, list[CallEdge]] = {}
    for edge in ctx.edges:
        graph.setdefault(edge.caller, []).append(edge)
    state: dict[StrategyKey, int] = {}  # 1 on the stack, 2 done
    depth: dict[StrategyKey, int] = {}  # the longest chain of calls below a strategy (done ones)
    stack: list[tuple[StrategyKey, CallEdge | None]] = []
    seen_cycles: set[frozenset[StrategyKey]] = set()

    for root in order:
        if root in state:
            continue
        state[root] = 1
        stack.append((root, None))
        work: list[tuple[StrategyKey, int]] = [(root, 0)]  # (strategy, next edge to follow)
        while work:
            node, i = work[-1]
            edges = graph.get(node, [])
            if i < len(edges):
                work[-1] = (node, i + 1)
                edge = edges[i]
                if state.get(edge.callee) == 1:
                    _report_cycle(ctx, stack, edge, names, seen_cycles)
                elif edge.callee not in state:
                    state[edge.callee] = 1
                    stack.append((edge.callee, edge))
                    work.append((edge.callee, 0))
                continue
            work.pop()
            stack.pop()
            state[node] = 2
            depth[node] = 1 + max((depth.get(e.callee, 0) for e in edges), default=0)
    for root in order:
        if depth.get(root, 0) > MAX_CALL_DEPTH:
            _report_depth(ctx, root, graph, depth, names)
            return


def _report_depth(ctx: CheckContext, root: StrategyKey, graph: dict[StrategyKey, list[CallEdge]],
                  depth: dict[StrategyKey, int], names: dict[StrategyKey, str]) -> None:
    chain = [names.get(root, root.name)]
    node, first = root, None
    while graph.get(node):
        edge = max(graph[node], key=lambda e: depth.get(e.callee, 0))
        first = first or edge
        chain.append(edge.shown)
        node = edge.callee
    shown = " -> ".join(chain[:4] + ["..."] + chain[-2:]) if len(chain) > 8 else " -> ".join(chain)
    assert first is not None
    ctx.error(
        first.span,
        f"strategy calls nest {depth[root]} deep, more than {MAX_CALL_DEPTH}: {shown}",
        expected=f"at most {MAX_CALL_DEPTH} strategies in a chain of calls",
        hint="calls are inlined; merge the strategies of the chain, or loop with `repeat K { ... }`",
    )


def _report_cycle(ctx: CheckContext, stack: list[tuple[StrategyKey, CallEdge | None]], closing: CallEdge,
                  names: dict[StrategyKey, str], seen: set[frozenset[StrategyKey]]) -> None:
    keys = [k for k, _ in stack]
    start = keys.index(closing.callee)
    members = frozenset(keys[start:])
    if members in seen:
        return
    seen.add(members)
    path = [names.get(keys[start], keys[start].name)] + [e.shown for _, e in stack[start + 1:] if e is not None] + [closing.shown]
    ctx.error(
        closing.span,
        "recursive strategy call: " + " -> ".join(path),
        expected="strategies that call each other without a cycle",
        hint="calls are inlined, so recursion makes the cost unbounded; loop with `repeat K { ... } until cond` instead",
    )
