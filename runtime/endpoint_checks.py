"""Start-time checks that a strategy asks nothing of a server that it cannot do.

A missing capability is an error before any item runs, naming the node,
its source line and what the engine lacks, never a silently different
answer later.
"""

from __future__ import annotations

from typing import Any

from ttcl.compiler.dag import Dag
from ttcl.errors import TtclRuntimeError


def check_capabilities(dag: Dag, backends: dict[str, Any]) -> None:
    problems: list[str] = []
    for node in dag:
        a = node.args
        be = backends.get(a.model.ref) if a.model is not None else None
        prof = getattr(be, "profile", None)
        if prof is not None and a.stop and not prof.keeps_stop:
            problems.append(f"line {node.span.line}: `{node.op}` ({node.id}) stops at {list(a.stop)!r}, but "
                            f"{be.ep.base_url} ({prof.engine}) drops stop strings from its output, so a stop "
                            "cannot be told from an end of text; declare `?engine=` if the server is one that keeps them")
    if problems:
        raise TtclRuntimeError("the server cannot run this strategy:\n  " + "\n  ".join(problems))
