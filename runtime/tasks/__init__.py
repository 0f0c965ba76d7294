"""Tasks and their exact checkers, found by name through the `ttcl.verifiers` entry points."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.tasks.base import Checker

ENTRY_POINT_GROUP = "ttcl.verifiers"


def _builtins() -> dict[str, Checker]:
    from ttcl.runtime.tasks.arith import checker as arith
    from ttcl.runtime.tasks.expr import checker as expr

    return {"arith": arith, "expr": expr}


def available_checkers() -> list[str]:
    names = set(_builtins())
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_checker(name: str) -> Checker:
    """The checker registered under `name` (entry point first, built-ins as fallback)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                obj = ep.load()
            except Exception as e:  # a broken plugin must not hide the built-in
                builtin = _builtins().get(name)
                if builtin is not None:
                    return builtin
                raise TtclRuntimeError(f"verifier {name!r}: entry point {ep.value!r} failed to load: {e}") from e
            return obj() if isinstance(obj, type) else obj
    builtin = _builtins().get(name)
    if builtin is not None:
        return builtin
    known = available_checkers()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TtclRuntimeError(f"unknown checker {name!r}{hint} (known: {', '.join(known)})")


__all__ = ["Checker", "ENTRY_POINT_GROUP", "available_checkers", "get_checker"]
