"""Golden valid programs: the exact DAG shape and the exact bounds of each.

Each `tests/golden/valid/NAME.ttc` has `NAME.json` beside it holding the
DAG's node ids, ops, guards and edges and the full budget report.
Regenerate after an intended change with `TTCL_UPDATE_GOLDEN=1 pytest tests/test_dag_golden.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import networkx as nx
import pytest

from ttcl.compiler.pipeline import compile_program

GOLDEN = Path(__file__).parent / "golden" / "valid"
CASES = sorted(p.stem for p in GOLDEN.glob("*.ttc"))


def _snapshot(name: str) -> dict:
    compiled = compile_program(Path(f"{name}.ttc"))
    return {"dag": compiled.dag.shape(), "report": compiled.report.model_dump(mode="json")}


@pytest.mark.parametrize("name", CASES)
def test_golden_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    got = _snapshot(name)
    expected_path = GOLDEN / f"{name}.json"
    if os.environ.get("TTCL_UPDATE_GOLDEN") == "1" or not expected_path.exists():
        expected_path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert got == json.loads(expected_path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", CASES)
def test_golden_dag_invariants(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acyclic; creation order is topological; every guard names a guard node; a non-phi node's guard implies its inputs' guards."""
    monkeypatch.chdir(GOLDEN)
    dag = compile_program(Path(f"{name}.ttc")).dag
    assert nx.is_directed_acyclic_graph(dag.graph)
    position = {n.id: i for i, n in enumerate(dag.topological_order())}
    for node in dag:
        for port in node.inputs:
            assert position[port.node] < position[node.id]
        if node.guard is not None:
            assert dag[node.guard.node].op == "guard"
            assert position[node.guard.node] < position[node.id]
        if node.op == "phi":
            continue
        chain = set(map(tuple, ((g.node, g.arm) for g in dag.guard_chain(node.id))))
        for port in node.inputs:
            inner = {(g.node, g.arm) for g in dag.guard_chain(port.node)}
            assert inner <= chain, (node.id, port.node)
    assert dag.output in dag.nodes


def test_an_if_arm_that_returns_costs_the_same_as_the_else_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: `if c { ...; return x }` then more work was bounded as the sum of both (31 calls, "over")."""
    monkeypatch.chdir(GOLDEN)
    early = compile_program(Path("if_return.ttc")).report
    with_else = compile_program(Path("if_else_return.ttc")).report
    assert early.total == with_else.total
    assert early.total["calls"] == 16 and early.verdict == "fits"
