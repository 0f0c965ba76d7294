"""The compiler's single entry point: parse -> load -> check -> DAG -> bound.

`compile_program` is what `ttcl check`, `ttcl graph` and `ttcl run` call.
Every failure is a `TtclError` with diagnostics: syntax and semantic errors
(exit 2), and `auto` params that cannot fit (exit 1). An over-budget program
still compiles; its report's verdict says so, and the command decides.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttcl.compiler.ast import Auto, Module
from ttcl.compiler.budget import spec_lookup
from ttcl.compiler.budget_auto import solve_autos
from ttcl.compiler.budget_report import BudgetReport, analyze
from ttcl.compiler.checks import CheckedProgram, check_program
from ttcl.compiler.dag import Dag
from ttcl.compiler.dag_build import ModuleInfo, build, instances_of
from ttcl.compiler.diagnostics import DiagnosticError, SemanticDiagnosticError
from ttcl.compiler.loader import Program, load_program


@dataclass
class Compiled:
    """Everything the compiler knows about a program."""

    program: Program
    checked: CheckedProgram
    params: dict[str, Any]  # the root module's param values, `auto` ones solved
    dag: Dag
    report: BudgetReport

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
) -> Compiled:
    """Compile `path` (or `source`, shown as `file`) with `--set` overrides and `--model NAME=PATH` overrides."""
    with paused_gc():
        program = load_program(path, source=source, file=file)
        checked = check_program(program, dict(overrides or {}))
        sources = program.sources
        try:
            return _compile_checked(program, checked, model_overrides, max_input_tokens)
        except DiagnosticError as e:
            if not e.sources:
                e.sources = sources
            raise


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


def _compile_checked(
    program: Program, checked: CheckedProgram, model_overrides: Mapping[str, str] | None, max_input_tokens: int | None,
) -> Compiled:
    instances, sources = instances_of(checked)
    module = program.root.module
    root_params = dict(instances[""].params)
    autos = [d for d in module.params if isinstance(root_params.get(d.name), Auto)]

    def evaluate(values: Mapping[str, Any]) -> tuple[Dag, BudgetReport]:
        dag = build(instances=instances, params=dict(values), model_overrides=model_overrides,
                    max_input_tokens=max_input_tokens, strategy=checked.entry.name, sources=sources)
        diagnostics: list = []
        report = analyze(dag, module, spec_lookup(diagnostics))
        if diagnostics:
            raise SemanticDiagnosticError(diagnostics, sources)
        return dag, report

    chosen, choices = solve_autos(autos, lambda v: evaluate(v)[1], sources) if autos else ({}, [])
    dag, report = evaluate(chosen)
    params = {**root_params, **chosen}
    report.params = {k: v for k, v in params.items() if not isinstance(v, Auto)}
    report.auto = choices
    return Compiled(program=program, checked=checked, params=params, dag=dag, report=report)


def root_info(compiled: Compiled) -> ModuleInfo:
    """The root module instance as the DAG builder saw it."""
    return ModuleInfo(compiled.module, compiled.params, {}, "")
