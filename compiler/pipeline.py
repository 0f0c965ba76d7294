"""The compiler's single entry point: parse -> load -> check -> DAG -> bound.

`compile_program` is what `ttcl check`, `ttcl graph` and `ttcl run` call.
Every failure is a `TtclError` with diagnostics: syntax and semantic errors
(exit 2), and `auto` params that cannot fit (exit 1). An over-budget program
still compiles; its report's verdict says so, and the command decides.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttcl.compiler.ast import Auto, Module, Span, String, TemplateText
from ttcl.compiler.budget import spec_lookup
from ttcl.compiler.budget_auto import solve_autos
from ttcl.compiler.budget_report import BudgetReport, ContextOverflow, analyze
from ttcl.compiler.checks import CheckedProgram, check_program
from ttcl.compiler.dag import Dag
from ttcl.compiler.dag_build import ModuleInfo, build, instances_of
from ttcl.compiler.diagnostics import (
    Diagnostic,
    DiagnosticError,
    SemanticDiagnosticError,
    did_you_mean,
)
from ttcl.compiler.endpoints import untrusted_remote
from ttcl.compiler.loader import Program, load_program
from ttcl.compiler.models import from_here


@dataclass
class Compiled:
    """Everything the compiler knows about a program."""

    program: Program
    checked: CheckedProgram
    params: dict[str, Any]  # the root module's param values, `auto` ones solved
    dag: Dag
    report: BudgetReport
    # every imported module instance's param values, qualified as `--set` names them (`wbon.temperature`): a run's
    # trace header pins them too (QA pass: a resume with another `--set wbon.temperature` mixed two runs' answers)
    imported_params: dict[str, Any] = field(default_factory=dict)

    @property
    def sources(self) -> dict[str, str]:
        return self.program.sources

    @property
    def module(self) -> Module:
        return self.program.root.module


def compile_program(
    path: Path | str | None = None,
    *,
    source: str | None = None,
    file: str | None = None,
    overrides: Mapping[str, str] | None = None,
    model_overrides: Mapping[str, str] | None = None,
    max_input_tokens: int | None = None,
    allow_remote: Iterable[str] = (),
    import_paths: list[Path | str] | None = None,
) -> Compiled:
    """Compile `path` (or `source`, shown as `file`) with `--set` overrides and `--model NAME=PATH` overrides.

    An endpoint written in the program text that points off this machine is
    an error unless its host is in `allow_remote`; one given in
    `model_overrides` (the user's own command line) is trusted.
    `import_paths`: directories besides the root's own tree that imports may reach (see `load_program`).
    """
    model_overrides = {name: from_here(ref) for name, ref in (model_overrides or {}).items()}
    with paused_gc(), _deep_stack():
        try:
            program = load_program(path, source=source, file=file, import_paths=import_paths)
            checked = check_program(program, dict(overrides or {}))
            sources = program.sources
            try:
                compiled = _compile_checked(program, checked, model_overrides, max_input_tokens)
                _refuse_unread_sets(compiled, overrides or {})
                _check_remote(compiled, set((model_overrides or {}).values()), frozenset(allow_remote))
                return compiled
            except DiagnosticError as e:
                if not e.sources:
                    e.sources = sources
                raise
        except RecursionError:
            shown = file or (str(path) if path is not None else "<input>")
            raise SemanticDiagnosticError([Diagnostic(
                span=Span(file=shown, line=1, column=1, end_line=1, end_column=1),
                message="the program nests too deeply to compile (blocks inside strategy calls inside blocks ...)",
                hint="flatten it: fewer nested `if`/`repeat` blocks, shorter chains of strategy calls",
            )]) from None


RECURSION_LIMIT = 20_000  # passes recurse over the AST and the inlined calls; nesting is capped well below


@contextmanager
def _deep_stack() -> Iterator[None]:
    """Room for the recursive passes; anything deeper still ends in a diagnostic, not a crash."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector while compiling.

    A compile allocates tens of thousands of short-lived objects (AST, DAG
    nodes, costs) and creates no garbage cycles worth chasing, yet the
    collector's generation scans cost about a quarter of the time
    (bench/bench_check.py). Reference counting still frees everything.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def model_override_names(instances: Mapping[str, ModuleInfo]) -> dict[str, set[str]]:
    """What `--model NAME=...` may name: each model, and each verifier that names its model by reference.

    Keys are qualified by the instance path (`bon.policy` for a model of the
    module imported `as bon`); the value is the set of model refs a key may
    also be given as (`--model ttcl:arith-orm=PATH` rebinds that reference).
    """
    out: dict[str, set[str]] = {}
    for inst, info in instances.items():
        prefix = f"{inst}." if inst else ""
        for m in info.module.models:
            out.setdefault(prefix + m.name, set()).add(m.ref)
        for v in info.module.verifiers:
            for arg in [*v.call.args, *(kw.value for kw in v.call.keywords)]:
                if isinstance(arg, String) and not arg.is_template:
                    ref = "".join(p.text for p in arg.parts if isinstance(p, TemplateText))
                    out.setdefault(prefix + v.name, set()).add(ref)
                    break
    return out


def check_model_overrides(instances: Mapping[str, ModuleInfo], overrides: Mapping[str, str], sources: dict[str, str]) -> None:
    """An unknown `--model NAME=...` is an error (a typo must not silently run the declared model)."""
    names = model_override_names(instances)
    refs = {r for rs in names.values() for r in rs}
    root = instances[""].module
    diags = []
    for key, path in overrides.items():
        if key in names or key in refs:
            continue
        anchor = root.models[0].span if root.models else Span(file=root.path, line=1, column=1, end_line=1, end_column=1)
        known = sorted(names)
        diags.append(Diagnostic(
            span=anchor, message=f"`--model {key}={path}`: no model or verifier `{key}` in {root.path}",
            expected=("one of: " + ", ".join(known)) if known else "this program declares no model",
            hint=did_you_mean(key, known),
        ))
    if diags:
        raise SemanticDiagnosticError(diags, sources)


def _compile_checked(
    program: Program, checked: CheckedProgram, model_overrides: Mapping[str, str] | None, max_input_tokens: int | None,
) -> Compiled:
    instances, sources = instances_of(checked)
    if model_overrides:
        check_model_overrides(instances, model_overrides, sources)
    module = program.root.module
    root_params = dict(instances[""].params)
    autos = [d for d in module.params if isinstance(root_params.get(d.name), Auto)]
    needs_flops = any(lim.unit == "flops" for b in module.budgets for lim in b.limits)

    def evaluate(values: Mapping[str, Any]) -> tuple[Dag, BudgetReport]:
        dag = build(instances=instances, params=dict(values), model_overrides=model_overrides,
                    max_input_tokens=max_input_tokens, strategy=checked.entry.name, sources=sources)
        diagnostics: list = []
        report = analyze(dag, module, spec_lookup(diagnostics, needs_flops=needs_flops))
        if diagnostics:
            raise SemanticDiagnosticError(diagnostics, sources)
        return dag, report

    chosen, choices = solve_autos(autos, lambda v: evaluate(v)[1], sources) if autos else ({}, [])
    dag, report = evaluate(chosen)
    if report.context_over:
        raise SemanticDiagnosticError([_context_diagnostic(dag, c) for c in report.context_over], sources)
    params = {**root_params, **chosen}
    report.params = {k: v for k, v in params.items() if not isinstance(v, Auto)}
    report.auto = choices
    if max_input_tokens is not None and all(d.type.max_len is not None for d in checked.entry.inputs):
        report.warnings.append(f"max_input_tokens {max_input_tokens} is not used: every input of "
                               f"`{checked.entry.name}` declares its own bound (`text[<=N]`)")
    imported = {f"{inst}.{k}": v for inst, info in instances.items() if inst
                for k, v in info.params.items() if not isinstance(v, Auto)}
    return Compiled(program=program, checked=checked, params=params, dag=dag, report=report,
                    imported_params=dict(sorted(imported.items())))


def _check_remote(compiled: Compiled, user_refs: set[str], allowed: frozenset[str]) -> None:
    """Program text may come from anyone: it may not send data off this machine unless the user allows the host."""
    diagnostics: list[Diagnostic] = []
    seen: set[tuple[str, int]] = set()
    for node in compiled.dag:
        a = node.args
        for ref in (a.model, a.verifier.model if a.verifier else None, a.feedback.model if a.feedback else None):
            if ref is None or ref.ref in user_refs or (ref.ref, ref.span.line) in seen:
                continue
            host = untrusted_remote(ref.ref, allowed)
            if host is not None:
                seen.add((ref.ref, ref.span.line))
                diagnostics.append(Diagnostic(
                    span=ref.span,
                    message=f"model `{ref.name}` points at `{host}`, which is not this machine; "
                            "a program may only name a remote endpoint the user allows",
                    hint=f"run with `--allow-remote {host}`, add it to `allow_remote` in your ttcl config, "
                         "or give the endpoint yourself with `--model NAME=URL`",
                ))
    if diagnostics:
        raise SemanticDiagnosticError(diagnostics, compiled.sources)


def _refuse_unread_sets(compiled: Compiled, overrides: Mapping[str, str]) -> None:
    """`--set ALIAS.NAME=V` where every call of the imported module's strategies gives NAME itself (or none is
    called) changes nothing: refused, since a run, its trace header and a sweep would report V as if it had
    mattered (QA pass: `--sweep s1.more=2,30` read "+0.000 at 1.00x the FLOPs")."""
    dag = compiled.dag
    diagnostics = []
    for key, raw in overrides.items():
        inst, _, name = key.rpartition(".")
        if not inst or name in dag.params_read.get(inst, set()):
            continue
        calls = [c for c in dag.calls if c.inst == inst]
        lines = sorted({c.span.line for c in calls})
        where = (f"no call of `{inst}`'s strategies (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))}) "
                 f"reads its own `{name}`: each gives `{name} = ...` itself, or does not use it") if calls \
            else f"no strategy of `{inst}` is called"
        span = calls[0].span if calls else compiled.checked.entry.span
        diagnostics.append(Diagnostic(span=span, message=f"`--set {key}={raw}` changes nothing: {where}",
                                      hint=f"set it where it is used (the call's `{name} = ...`), or drop it"))
    if diagnostics:
        raise SemanticDiagnosticError(diagnostics, compiled.sources)


def _context_diagnostic(dag: Dag, over: ContextOverflow) -> Diagnostic:
    node = dag.nodes[over.node]
    return Diagnostic(
        span=node.span,
        message=f"{over.node} ({over.op}) may need {over.need:,} tokens of context; model `{over.model}` has {over.n_ctx:,}",
        expected=f"a worst-case sequence of at most {over.n_ctx:,} tokens (prompt bound + max_tokens)",
        hint=_context_hint(node, over, dag),
    )


def _makers(dag: Dag, node: Any) -> list[Any]:
    """The generating nodes (sample, extend, revise) whose candidates reach `node`, through cheap ones."""
    seen, out, todo = set(), [], [p.node for p in node.inputs if p.role == "cands"]
    while todo:
        n = dag.nodes[todo.pop()]
        if n.id in seen:
            continue
        seen.add(n.id)
        if n.args.max_tokens is not None:
            out.append(n)
        else:
            todo += [p.node for p in n.inputs if p.role in ("cands", "left", "right")]
    return sorted(out, key=lambda n: (n.span.line, n.id))


def _context_hint(node: Any, over: ContextOverflow, dag: Dag) -> str:
    """What to change, in the node's own terms (QA pass: "lower max_tokens" where the program wrote none, the
    built-in's default of 256 being the cause, and on a `verify`, which has no max_tokens)."""
    from ttcl.compiler.builtins import BUILTINS

    rest = "lower the input's `text[<=N]` bound, or use a model with a longer context"
    if node.id.count("repeat[") and node.op in ("extend", "verify", "revise"):
        rest = "run fewer rounds of the loop, " + rest
    mt = node.args.max_tokens
    if mt is None:  # verify, judge, likelihood: they read the candidates as generated
        makers = _makers(dag, node)
        named = ", ".join(f"`{m.op}` at line {m.span.line}" for m in makers[:3]) + (", ..." if len(makers) > 3 else "")
        return f"lower the `max_tokens` of {named or 'the calls'}, whose candidates it reads; or {rest}"
    spec = BUILTINS[node.op].param("max_tokens") if node.op in BUILTINS else None
    room = over.n_ctx - (over.need - mt)
    fix = f"`max_tokens = {room}` or less (a verifier reading its candidates may need less)" if room > 0 \
        else "a lower `max_tokens`"
    if spec is not None and spec.default == mt:
        return f"`max_tokens` is {mt} (`{node.op}`'s default where a call gives none): give {fix}; or {rest}"
    return f"give {fix}; or {rest}"


def root_info(compiled: Compiled) -> ModuleInfo:
    """The root module instance as the DAG builder saw it."""
    return ModuleInfo(compiled.module, compiled.params, {}, "")
