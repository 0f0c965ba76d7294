"""Shared state of the checks: module scopes, symbols, and the context every pass writes to.

A module's top-level names (imports, models, verifiers, params, strategies)
share one namespace; `ModuleScope` indexes them once, so that each pass looks
names up instead of rescanning the module. `CheckContext` carries the
diagnostics sink and the maps that later stages read from `CheckedProgram`
(types and symbols by node identity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ttcl.compiler.ast import Import, ModelDecl, Node, ParamDecl, Span, Strategy, VerifierDecl
from ttcl.compiler.builtins import BuiltinSig, Ty
from ttcl.compiler.diagnostics import Diagnostic
from ttcl.compiler.loader import LoadedModule, Program
from ttcl.compiler.params import ParamValue

SymbolKind = Literal[
    "input", "var", "param", "model", "verifier", "strategy", "import", "builtin", "budget", "predicate", "template", "weight"
]

DeclKind = Literal["import", "model", "verifier", "param", "strategy"]

_ARTICLE = {"import": "an import alias", "model": "a model", "verifier": "a verifier", "param": "a param", "strategy": "a strategy"}


def decl_phrase(kind: DeclKind) -> str:
    return _ARTICLE[kind]


@dataclass(frozen=True)
class Symbol:
    """What a Name (or Attribute) refers to.

    `module` is the key of the module that declares it (for an import, the
    module it names); `name` is the declared name (for `bon.main`, `main`).
    """

    kind: SymbolKind
    name: str
    module: str | None = None


@dataclass(frozen=True)
class StrategyKey:
    """A strategy, program-wide: the module's key and the strategy's name."""

    module: str
    name: str


@dataclass(frozen=True)
class CallTarget:
    """What a Call node calls: a built-in, or a strategy (with the params its keywords set)."""

    builtin: BuiltinSig | None = None
    strategy: StrategyKey | None = None


@dataclass(frozen=True)
class CallEdge:
    """One strategy calling another, for the recursion check."""

    caller: StrategyKey
    callee: StrategyKey
    span: Span
    shown: str  # the callee as written: `helper`, `bon.main`


@dataclass
class ModuleScope:
    """The top-level names of one module (the first declaration wins; duplicates are reported)."""

    loaded: LoadedModule
    imports: dict[str, Import] = field(default_factory=dict)
    models: dict[str, ModelDecl] = field(default_factory=dict)
    verifiers: dict[str, VerifierDecl] = field(default_factory=dict)
    params: dict[str, ParamDecl] = field(default_factory=dict)
    strategies: dict[str, Strategy] = field(default_factory=dict)
    kinds: dict[str, tuple[DeclKind, Node]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.loaded.key

    @property
    def file(self) -> str:
        return self.loaded.file

    def kind_of(self, name: str) -> DeclKind | None:
        entry = self.kinds.get(name)
        return entry[0] if entry else None


MAX_ERRORS = 200  # the checks stop here: every further error would cost time and help no one


class TooManyErrors(Exception):
    """Raised by CheckContext.error at MAX_ERRORS; `check_program` reports what it has, and says it stopped."""


@dataclass
class CheckContext:
    """Everything the passes share: the program, scopes, resolved params, the diagnostics sink, and the maps they fill."""

    program: Program
    scopes: dict[str, ModuleScope] = field(default_factory=dict)
    module_params: dict[str, dict[str, ParamValue]] = field(default_factory=dict)  # by module key
    diagnostics: list[Diagnostic] = field(default_factory=list)
    types: dict[int, Ty] = field(default_factory=dict)
    symbols: dict[int, Symbol] = field(default_factory=dict)
    calls: dict[int, CallTarget] = field(default_factory=dict)
    edges: list[CallEdge] = field(default_factory=list)

    def error(self, span: Span, message: str, *, expected: str | None = None, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(span=span, message=message, expected=expected, hint=hint))
        if len(self.diagnostics) >= MAX_ERRORS:
            raise TooManyErrors()

    def record(self, node: Node, ty: Ty) -> Ty:
        self.types[id(node)] = ty
        return ty
