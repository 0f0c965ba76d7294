"""Semantic checks: `check_program(program, overrides) -> CheckedProgram`.

The passes run in order and all write to one diagnostics list; if any
error was found, `SemanticDiagnosticError` is raised once with all of them
(with the loader's import problems too), so `ttcl check` shows every
problem at once. The passes, by module:

- `checks_decls`: duplicate and reserved names, models, params, budgets, extract;
- `params`: param values per module instance, with `--set` overrides;
- `checks_exprs` / `checks_calls`: names, types, templates, built-in arguments, strategy calls;
- `checks_flow`: returns, unreachable code, `break`, static `repeat` bounds;
- `checks_calls.report_recursion`: cycles of strategy calls.

What later stages read from `CheckedProgram`:

- `params[path]`: the param values of each module instance. `path` is the
  alias chain from the root: `""` for the root, `"bon"` for `import ... as
  bon`, `"bon.inner"` one level deeper (`Program.instances()` walks them).
  An `auto` param has the value `Auto()`, left for the budget stage.
- `types[id(expr)]`: the `Ty` of every expression the checks visited.
- `symbols[id(name)]`: what a `Name` (or `alias.strategy` Attribute)
  refers to: a `Symbol(kind, name, module_key)`, kind one of input, var,
  param, model, verifier, strategy, import, builtin, budget, predicate,
  template, weight.
- `calls[id(call)]`: the `CallTarget` of every Call: its `BuiltinSig`, or the
  `StrategyKey(module_key, name)` it inlines.

Keys are `id(node)` of nodes inside `program`, which the CheckedProgram
keeps alive; use `type_of(node)` / `symbol_of(node)` / `call_of(node)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ttcl.compiler.ast import Node, Span, Strategy, VerifierDecl
from ttcl.compiler.builtins import VERIFIERS, Ty
from ttcl.compiler.checks_calls import check_verifier_call, report_recursion
from ttcl.compiler.checks_decls import build_scope, check_declarations, check_verifier_heads
from ttcl.compiler.checks_exprs import ExprChecker
from ttcl.compiler.checks_flow import FlowChecker, assigned_names
from ttcl.compiler.checks_scope import (
    MAX_ERRORS,
    CallTarget,
    CheckContext,
    ModuleScope,
    StrategyKey,
    Symbol,
    TooManyErrors,
)
from ttcl.compiler.diagnostics import Diagnostic
from ttcl.compiler.loader import MAX_INSTANCES, TOO_MANY_INSTANCES, Instance, LoadedModule, Program
from ttcl.compiler.params import (
    AUTO,
    ParamValue,
    resolve_params,
    split_overrides,
    unknown_alias_diagnostic,
)

__all__ = ["CheckedProgram", "check_program", "entry_strategy_name"]

ENTRY_NAME = "main"


@dataclass
class CheckedProgram:
    """A program that passed every check, with what later stages need (see the module docstring)."""

    program: Program
    params: dict[str, dict[str, ParamValue]]
    entry: Strategy
    entry_key: StrategyKey
    types: dict[int, Ty] = field(default_factory=dict)
    symbols: dict[int, Symbol] = field(default_factory=dict)
    calls: dict[int, CallTarget] = field(default_factory=dict)

    @property
    def root(self) -> LoadedModule:
        return self.program.root

    @property
    def sources(self) -> dict[str, str]:
        return self.program.sources

    def type_of(self, node: Node) -> Ty | None:
        return self.types.get(id(node))

    def symbol_of(self, node: Node) -> Symbol | None:
        return self.symbols.get(id(node))

    def call_of(self, node: Node) -> CallTarget | None:
        return self.calls.get(id(node))


def entry_strategy_name(strategies: list[Strategy]) -> str | None:
    """`main`, or the only strategy; None when there is no single entry."""
    names = [s.name for s in strategies]
    if ENTRY_NAME in names:
        return ENTRY_NAME
    return names[0] if len(names) == 1 else None


def check_program(program: Program, overrides: Mapping[str, str] | None = None) -> CheckedProgram:
    """Run every check over `program`; raise one DiagnosticError with every problem, or return the checked program."""
    ctx = CheckContext(program)
    try:
        return _check(ctx, program, overrides)
    except TooManyErrors:
        span = ctx.diagnostics[-1].span
        ctx.diagnostics.append(Diagnostic(span=span, message=f"stopped after {MAX_ERRORS} errors",
                                          hint="fix these and check again", severity="note"))
        raise program.error(ctx.diagnostics) from None


def _check(ctx: CheckContext, program: Program, overrides: Mapping[str, str] | None) -> CheckedProgram:
    for key, loaded in program.modules.items():
        ctx.scopes[key] = build_scope(ctx, loaded)
    for scope in ctx.scopes.values():
        check_declarations(ctx, scope)
    instances = _instances(ctx, program)
    instance_params = _resolve_all(ctx, instances, overrides or {})
    for inst in instances:
        # a param whose declaration is invalid is still static: `Auto()` stands in for its value
        unknown = {d.name: AUTO for d in inst.module.module.params}
        ctx.module_params.setdefault(inst.module.key, unknown | instance_params.get(inst.path, {}))
    order: list[StrategyKey] = []
    names: dict[StrategyKey, str] = {}
    for key, scope in ctx.scopes.items():
        params = ctx.module_params.get(key) or {d.name: AUTO for d in scope.loaded.module.params}
        for decl in scope.loaded.module.verifiers:
            _check_verifier(ctx, scope, params, decl)
        for strategy in scope.loaded.module.strategies:
            skey = StrategyKey(key, strategy.name)
            order.append(skey)
            names[skey] = strategy.name
            _check_strategy(ctx, scope, params, strategy, skey)
    report_recursion(ctx, order, names)
    entry = _entry(ctx, ctx.scopes[program.root_key])
    if ctx.diagnostics or program.diagnostics:
        raise program.error(ctx.diagnostics)
    assert entry is not None
    return CheckedProgram(
        program=program,
        params=instance_params,
        entry=entry,
        entry_key=StrategyKey(program.root_key, entry.name),
        types=ctx.types,
        symbols=ctx.symbols,
        calls=ctx.calls,
    )


def _instances(ctx: CheckContext, program: Program) -> list[Instance]:
    """Every module instance, at most the loader's MAX_INSTANCES (each is inlined). The loader refuses a tree past it
    (counted without unfolding it); this one said so again, with 1,000 where the loader and the docs said 10,000
    (QA pass): one limit, one message."""
    out: list[Instance] = []
    for inst in program.instances():
        if len(out) == MAX_INSTANCES:
            if not any(d.message == TOO_MANY_INSTANCES for d in program.diagnostics):  # the loader's, said once
                ctx.error(program.root.module.imports[0].span, TOO_MANY_INSTANCES)
            break
        out.append(inst)
    return out


def _resolve_all(ctx: CheckContext, instances: list[Instance], overrides: Mapping[str, str]) -> dict[str, dict[str, ParamValue]]:
    """Param values per instance path: defaults, then `--set` (`n=..` for the root, `bon.n=..` below it)."""
    by_path: dict[str, Mapping[str, str]] = {"": overrides}
    out: dict[str, dict[str, ParamValue]] = {}
    for inst in instances:
        mine = by_path.get(inst.path, {})
        own, nested = split_overrides(mine)
        module = inst.module.module
        prefix = f"{inst.path}." if inst.path else ""
        out[inst.path] = resolve_params(module, own, diagnostics=ctx.diagnostics, prefix=prefix)
        for alias, sub in nested.items():
            if alias not in inst.module.imports:
                raw = next(iter(sub.items()))
                ctx.diagnostics.append(unknown_alias_diagnostic(module, f"{prefix}{alias}.{raw[0]}={raw[1]}", alias))
            elif inst.module.imports[alias] is not None:
                by_path[inst.qualify(alias)] = sub
    return out


def _check_verifier(ctx: CheckContext, scope: ModuleScope, params: dict[str, ParamValue], decl: VerifierDecl) -> None:
    ctor = check_verifier_heads(ctx, decl)
    checker = ExprChecker(ctx, scope, params)
    if ctor is None:
        checker._fallback_args(decl.call)
        return
    check_verifier_call(checker, VERIFIERS[ctor], decl.call)


def _check_strategy(ctx: CheckContext, scope: ModuleScope, params: dict[str, ParamValue], strategy: Strategy, key: StrategyKey) -> None:
    exprs = ExprChecker(ctx, scope, params, strategy=key, assigned_later=frozenset(assigned_names(strategy.body)))
    FlowChecker(exprs, strategy).run()


def _entry(ctx: CheckContext, scope: ModuleScope) -> Strategy | None:
    module = scope.loaded.module
    strategies = module.strategies
    name = entry_strategy_name(strategies)
    if not strategies:
        ctx.error(Span(file=scope.file, line=1, column=1, end_line=1, end_column=1), f"{scope.file} declares no strategy",
                  expected="`strategy main(question: text[<=256]) -> answer { ... }`",
                  hint="the entry point is the strategy named `main`, or the only strategy")
        return None
    if name is None:
        others = ", ".join(f"`{s.name}`" for s in strategies)
        ctx.error(strategies[0].span, f"{len(strategies)} strategies ({others}) and none is named `main`",
                  expected="one strategy named `main`: the entry point", hint="rename the entry strategy to `main`")
        return None
    entry = scope.strategies.get(name) or strategies[0]
    _check_entry_signature(ctx, entry)
    return entry


def _check_entry_signature(ctx: CheckContext, entry: Strategy) -> None:
    """The entry receives one dataset item's question and returns its final answer."""
    if len(entry.inputs) != 1 or entry.inputs[0].type.name != "text":
        span = entry.inputs[1].span if len(entry.inputs) > 1 else entry.span
        ctx.error(span, f"the entry strategy `{entry.name}` must take exactly one text input (the question)",
                  expected=f"`strategy {entry.name}(question: text[<=256]) -> answer`",
                  hint="move other inputs into params, or into a helper strategy that the entry calls")
    if entry.returns.name not in ("answer", "text"):
        ctx.error(entry.returns.span, f"the entry strategy `{entry.name}` returns {entry.returns.name}",
                  expected="`-> answer` (or `-> text`): the item's final answer",
                  hint="aggregate before returning: `return vote(drafts)`" if entry.returns.name == "candidates" else None)
