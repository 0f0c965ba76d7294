"""Small pure helpers of the DAG builder: prompt parts, names, signature binding, module lookups.

Split from `dag_exprs.py` so that module stays one stage at a sitting; none of these touch builder state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ttcl.compiler import builtins as B
from ttcl.compiler.ast import Attribute, Call, Expr, ModelDecl, Module, Name, Number, Strategy
from ttcl.compiler.dag import Port, PromptPart, ValueType


def _append_text(parts: list[PromptPart], text: str) -> None:
    if not text:
        return
    if parts and parts[-1].text is not None:
        parts[-1] = PromptPart.make(text=(parts[-1].text or "") + text)
    else:
        parts.append(PromptPart.make(text=text))


def _source_ports(parts: list[PromptPart]) -> list[Port]:
    seen = dict.fromkeys(p.source for p in parts if p.source is not None)
    return [Port.make(role="prompt", node=s) for s in seen]


def _name_of(expr: Expr) -> str:
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Attribute):
        return f"{_name_of(expr.value)}.{expr.attr}"
    return "value"


def _literal_number(expr: Expr) -> float | None:
    if isinstance(expr, Number):
        return expr.value
    return None


def _vtype(name: str) -> ValueType:
    return name if name in ("text", "candidates", "number", "answer", "bool") else "text"  # type: ignore[return-value]


_SIG_PARAMS: dict[str, dict[str, B.ParamSpec]] = {}


def _sig_params(sig: B.BuiltinSig | B.VerifierSig) -> dict[str, B.ParamSpec]:
    """A signature's parameters by name (cached: the builder asks for them on every call)."""
    key = f"{type(sig).__name__}:{sig.name}"
    found = _SIG_PARAMS.get(key)
    if found is None:
        found = _SIG_PARAMS[key] = {p.name: p for p in sig.params}
    return found


def _bind(sig: B.BuiltinSig | B.VerifierSig, call: Call) -> dict[str, Expr]:
    """Positional and keyword arguments by parameter name (defaults are applied by the caller)."""
    names = tuple(_sig_params(sig))
    bound: dict[str, Expr] = dict(zip(names, call.args, strict=False))
    for kw in call.keywords:
        bound[kw.name] = kw.value
    return bound

def _find_strategy(module: Module, name: str) -> Strategy | None:
    return next((s for s in module.strategies if s.name == name), None)


_LOCAL: dict[int, tuple[Module, frozenset[str]]] = {}


def _local_strategies(module: Module) -> frozenset[str]:
    """Strategy names of a module (cached by identity; the entry keeps the module alive so ids stay unique)."""
    hit = _LOCAL.get(id(module))
    if hit is None or hit[0] is not module:
        if len(_LOCAL) > 256:
            _LOCAL.clear()
        hit = _LOCAL[id(module)] = (module, frozenset(s.name for s in module.strategies))
    return hit[1]


def _find_model(module: Module, name: str) -> ModelDecl | None:
    return next((m for m in module.models if m.name == name), None)


def _find_verifier(module: Module, name: str) -> Any:
    return next((v for v in module.verifiers if v.name == name), None)


class CallParams(Mapping[str, Any]):
    """A module instance's params as one call of its strategy sees them: the call's keywords over the instance's
    own values. Which own values were read goes into `read` (one set per instance): `--set ALIAS.NAME` of a
    name no call reads changed nothing, and was reported as if it had (QA pass: a sweep of it read "+0.000 at
    1.00x the FLOPs")."""

    def __init__(self, own: Mapping[str, Any], given: dict[str, Any], read: set[str]) -> None:
        self.own, self.given, self.read = own, given, read

    def __getitem__(self, name: str) -> Any:
        if name in self.given:
            return self.given[name]
        value = self.own[name]
        self.read.add(name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.given or name in self.own

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.own), **dict.fromkeys(self.given)})

    def __len__(self) -> int:
        return len(set(self.own) | set(self.given))
