"""Module-level checks: duplicate and reserved names, model options, verifier constructors, params, budgets, extract.

These need nothing from strategy bodies, so they run first and build the
`ModuleScope` that the body checks look names up in.
"""

from __future__ import annotations

from ttcl.compiler.ast import (
    Bool,
    BudgetDecl,
    ModelDecl,
    Node,
    Number,
    Span,
    Strategy,
    VerifierDecl,
)
from ttcl.compiler.builtins import (
    BOOL_MODEL_OPTIONS,
    BUDGET_NAME,
    BUILTINS,
    EXTRACT_FORMATS,
    MODEL_OPTIONS,
    VERIFIERS,
    signature_text,
)
from ttcl.compiler.checks_calls import registered_checkers
from ttcl.compiler.checks_scope import CheckContext, DeclKind, ModuleScope, decl_phrase
from ttcl.compiler.diagnostics import did_you_mean
from ttcl.compiler.loader import LoadedModule
from ttcl.compiler.params import check_param_decl
from ttcl.compiler.regex_engine import PatternError, compile_pattern

RESERVED = frozenset({BUDGET_NAME, *BUILTINS})
_WHOLE_UNITS = ("calls", "prompt_tokens", "gen_tokens", "tokens")


def build_scope(ctx: CheckContext, loaded: LoadedModule) -> ModuleScope:
    """Index a module's declarations, reporting duplicates and reserved names."""
    scope = ModuleScope(loaded)
    m = loaded.module
    groups: list[tuple[DeclKind, list[tuple[str, Node]], dict]] = [
        ("import", [(i.alias, i) for i in m.imports], scope.imports),
        ("model", [(d.name, d) for d in m.models], scope.models),
        ("verifier", [(d.name, d) for d in m.verifiers], scope.verifiers),
        ("param", [(d.name, d) for d in m.params], scope.params),
        ("strategy", [(s.name, s) for s in m.strategies], scope.strategies),
    ]
    entries = [(kind, name, node, table) for kind, items, table in groups for name, node in items]
    entries.sort(key=lambda e: (e[2].span.line, e[2].span.column))
    for kind, name, node, table in entries:
        if name in RESERVED:
            what = "a built-in function" if name in BUILTINS else "reserved for `budget.left`"
            ctx.error(node.span, f"`{name}` is {what} and cannot name {decl_phrase(kind)}", hint=f"rename it, for example `{name}_{kind}`")
            continue
        prior = scope.kinds.get(name)
        if prior is not None:
            pkind, pnode = prior
            ctx.error(
                node.span,
                f"duplicate declaration of `{name}`: already declared as {decl_phrase(pkind)} at line {pnode.span.line}",
                hint="top-level names share one namespace; rename one of them",
            )
            continue
        scope.kinds[name] = (kind, node)
        table[name] = node
    return scope


def check_declarations(ctx: CheckContext, scope: ModuleScope) -> None:
    """Every module-level check that does not look inside a strategy body."""
    m = scope.loaded.module
    for model in m.models:
        _check_model(ctx, model)
    for decl in m.params:
        ctx.diagnostics.extend(check_param_decl(decl))
    _check_budgets(ctx, m.budgets)
    if m.extract is not None:
        _check_extract(ctx, m.extract.pattern, m.extract.span)
    for strategy in m.strategies:
        _check_signature(ctx, scope, strategy)


def check_verifier_heads(ctx: CheckContext, decl: VerifierDecl) -> str | None:
    """The constructor's name if it is one of check/reward/prm/judge, else report and return None."""
    from ttcl.compiler.ast import Name

    func = decl.call.func
    if isinstance(func, Name) and func.id in VERIFIERS:
        return func.id
    shown = func.id if isinstance(func, Name) else "this"
    ctors = ", ".join(f"`{signature_text(s)}`" for s in VERIFIERS.values())
    ctx.error(
        func.span,
        f"`{shown}` does not make a verifier",
        expected=f"one of {ctors}",
        hint=did_you_mean(shown, VERIFIERS) or ("`sample` and the other built-ins are used inside strategies" if shown in BUILTINS else None),
    )
    return None


def _check_model(ctx: CheckContext, model: ModelDecl) -> None:
    if not model.ref.strip():
        ctx.error(model.span, f"model `{model.name}` has an empty reference", expected='"ttcl:NAME", a local model directory, or a path',
                  hint='the bundled default is "ttcl:arith-s"')
    seen: set[str] = set()
    for opt in model.options:
        if opt.name not in MODEL_OPTIONS:
            ctx.error(opt.span, f"unknown model option `{opt.name}`", expected="one of " + ", ".join(f"`{o}`" for o in MODEL_OPTIONS),
                      hint=did_you_mean(opt.name, MODEL_OPTIONS))
            continue
        if opt.name in seen:
            ctx.error(opt.span, f"model option `{opt.name}` is given twice", hint="keep one")
            continue
        seen.add(opt.name)
        value = opt.value
        if opt.name in BOOL_MODEL_OPTIONS:
            if not isinstance(value, Bool):
                ctx.error(value.span, f"model option `{opt.name}` ({MODEL_OPTIONS[opt.name]}) must be `true` or `false`")
            continue
        if not isinstance(value, Number) or value.value < 1 or not float(value.value).is_integer():
            ctx.error(value.span, f"model option `{opt.name}` ({MODEL_OPTIONS[opt.name]}) must be a positive whole number",
                      expected="a number such as `8G` or `32`")


def _check_budgets(ctx: CheckContext, budgets: list[BudgetDecl]) -> None:
    seen_scope: dict[str, BudgetDecl] = {}
    for budget in budgets:
        prior = seen_scope.get(budget.scope)
        scope_text = "per item" if budget.scope == "item" else "pooled"
        if prior is not None:
            ctx.error(budget.span, f"a second `budget {scope_text}` block; the first is at line {prior.span.line}",
                      hint="merge the limits into one block")
            continue
        seen_scope[budget.scope] = budget
        units: dict[str, Span] = {}
        for limit in budget.limits:
            if limit.unit in units:
                ctx.error(limit.span, f"`{limit.unit}` is limited twice in this budget (first at line {units[limit.unit].line})",
                          hint="keep one limit per unit")
                continue
            units[limit.unit] = limit.span
            value = limit.value.value
            if value < 0:
                ctx.error(limit.value.span, f"budget limit `{limit.unit} <= {limit.value.text}` is negative", expected="a limit >= 0")
            elif limit.unit in _WHOLE_UNITS and not float(value).is_integer():
                ctx.error(limit.value.span, f"`{limit.unit}` are counted in whole numbers; {limit.value.text} is not one",
                          expected="a whole number such as `8k`")
    set_policy = [b for b in seen_scope.values() if b.on_exhaust is not None]
    if len(set_policy) == 2 and set_policy[0].on_exhaust != set_policy[1].on_exhaust:
        # one policy acts on every refusal of the run (QA pass: the pooled block's was dropped without a word)
        first, second = sorted(set_policy, key=lambda b: b.span.line)
        ctx.error(second.span, f"`on_exhaust = {second.on_exhaust}` here and `on_exhaust = {first.on_exhaust}` in the "
                  f"`budget {'per item' if first.scope == 'item' else 'pooled'}` block at line {first.span.line}: one "
                  "policy applies to both budgets of a run", hint="set on_exhaust once, in either block")


def _check_extract(ctx: CheckContext, pattern: str, span: Span) -> None:
    if pattern in EXTRACT_FORMATS or pattern in (registered_checkers() or ()):
        return  # a format, or a task whose checker reads the answers (`extract "countdown"`)
    expected = ("one of " + ", ".join(f'"{f}"' for f in EXTRACT_FORMATS)
                + ", a registered checker's name (its task's extractor), or a regex with exactly one group")
    checkers = list(registered_checkers() or ())
    if pattern.isidentifier() and checkers:  # a bare name: meant as a format or a checker, not as a regex
        ctx.error(span, f'no extract format or checker named "{pattern}"', expected=expected,
                  hint=did_you_mean(pattern, [*EXTRACT_FORMATS, *checkers]) or "checkers register under the "
                  "`ttcl.verifiers` entry-point group; a regex needs exactly one group")
        return
    try:
        groups = compile_pattern(pattern).groups
    except PatternError as e:
        ctx.error(span, f"extract pattern is not a valid regex: {e.reason}", expected=expected,
                  hint=did_you_mean(pattern, [*EXTRACT_FORMATS, *checkers]))
        return
    if groups != 1:
        ctx.error(span, f"extract regex has {groups} groups", expected=expected,
                  hint="wrap the answer in one group, for example `answer: (-?\\d+)`; make other groups non-capturing `(?:...)`")


def _check_signature(ctx: CheckContext, scope: ModuleScope, strategy: Strategy) -> None:
    seen: set[str] = set()
    for inp in strategy.inputs:
        if inp.name in seen:
            ctx.error(inp.span, f"input `{inp.name}` is declared twice in strategy `{strategy.name}`", hint="rename one of them")
        seen.add(inp.name)
        kind = scope.kind_of(inp.name)
        if kind is not None or inp.name in RESERVED:
            what = decl_phrase(kind) if kind else "a built-in"
            ctx.error(inp.span, f"input `{inp.name}` shadows {what} of the same name", hint=f"rename the input, for example `{inp.name}_in`")
        if inp.type.max_len is not None:
            if inp.type.name != "text":
                ctx.error(inp.type.span, f"only text inputs take a length bound; `{inp.name}` is {inp.type.name}",
                          hint=f"write `{inp.name}: {inp.type.name}`")
            elif inp.type.max_len < 1:
                ctx.error(inp.type.span, f"length bound of `{inp.name}` must be at least 1 token", expected="`text[<=N]` with N >= 1")
    if strategy.returns.max_len is not None:
        ctx.error(strategy.returns.span, "a return type takes no length bound", hint=f"write `-> {strategy.returns.name}`")
