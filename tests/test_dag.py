"""DAG schema and control-flow encoding: ids, guards, phis, line lookup, JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttcl.compiler.dag import GuardCond
from ttcl.compiler.diagnostics import SemanticDiagnosticError
from ttcl.compiler.pipeline import compile_program

GOLDEN = Path(__file__).parent / "golden" / "valid"
HEAD = 'ttcl 1\nmodel policy = "/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64)\n'


def dag_of(body: str, decls: str = "", **kw: object):  # type: ignore[no-untyped-def]
    src = f"{HEAD}{decls}strategy main(q: text[<=8]) -> answer {{\n{body}\n}}\n"
    return compile_program(source=src, file="t.ttc", **kw).dag  # type: ignore[arg-type]


def test_loop_iterations_are_namespaced_and_chained_by_stop_guards() -> None:
    dag = dag_of(
        "    c = sample(policy, q)\n    repeat 3 {\n        c = extend(policy, c)\n    } until best_score(c) > 0.5\n    return vote(c)"
    )
    assert [n.id for n in dag if n.op == "extend"] == ["main/repeat[0]/c", "main/repeat[1]/c", "main/repeat[2]/c"]
    assert dag["main/repeat[0]/c"].guard is None
    assert dag["main/repeat[1]/c"].guard == GuardCond(node="main/repeat[0]/stop", arm=False)
    assert [g.node for g in dag.guard_chain("main/repeat[2]/c")] == ["main/repeat[0]/stop", "main/repeat[1]/stop"]
    merged = dag["main/c#2"]
    assert merged.op == "phi"
    assert merged.input_nodes() == ["main/c", "main/repeat[0]/c", "main/repeat[1]/c", "main/repeat[2]/c"]


def test_branch_arms_sit_behind_one_guard_and_merge_in_a_phi() -> None:
    dag = dag_of(
        "    c = sample(policy, q)\n    if count(c) > 1 {\n        c = sample(policy, q, n = 2)\n    } else {\n"
        "        c = sample(policy, q, n = 3)\n    }\n    return vote(c)"
    )
    guard = dag["main/if"]
    assert guard.op == "guard" and dag[guard.input_nodes("cond")[0]].op == "compare"
    assert dag["main/c#2"].guard == GuardCond(node="main/if", arm=True)
    assert dag["main/c#3"].guard == GuardCond(node="main/if", arm=False)
    assert dag["main/c#4"].input_nodes() == ["main/c#2", "main/c#3"]


def test_break_guards_the_rest_of_the_iteration() -> None:
    dag = dag_of(
        "    c = sample(policy, q)\n    repeat 2 {\n        if agreement(c) > 0.9 {\n            break\n        }\n"
        "        c = extend(policy, c)\n    }\n    return vote(c)"
    )
    first = dag["main/repeat[0]/c"]
    # the `if` arm always breaks, so the rest of the iteration is its other arm (no exit flag needed)
    assert first.guard == GuardCond(node="main/repeat[0]/if", arm=False)
    assert "main/repeat[0]/exit.flag" not in dag.nodes


def test_a_break_inside_a_nested_if_guards_the_rest_with_an_exit_flag() -> None:
    dag = dag_of(
        "    c = sample(policy, q)\n    repeat 2 {\n        if agreement(c) > 0.5 {\n            if agreement(c) > 0.9 {\n"
        "                break\n            }\n        }\n        c = extend(policy, c)\n    }\n    return vote(c)"
    )
    first = dag["main/repeat[0]/c"]
    assert first.guard == GuardCond(node="main/repeat[0]/exit", arm=False)
    flag = dag["main/repeat[0]/exit.flag"]
    assert flag.op == "phi"
    assert [dag[i].args.value for i in flag.input_nodes()] == [False, True]


def test_imported_calls_are_inlined_with_call_path_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    dag = compile_program(Path("import_call.ttc")).dag
    assert "main/bon.main#1/drafts" in dag.nodes and "main/bon.main#2/drafts" in dag.nodes
    assert dag["main/bon.main#2/drafts"].args.n == 3  # keyword argument sets the callee's param
    assert dag["main/bon.main#1/drafts"].args.n == 4
    assert dag["main/bon.main#1/drafts"].module == "sub_budget.ttc"
    assert [c.ns for c in dag.calls] == ["main/bon.main#1", "main/bon.main#2", "main/polish#1"]


def test_nodes_at_line_and_static_args() -> None:
    dag = dag_of(
        '    d = sample(policy, "Q: {q} n={k}", n = k * 2, max_tokens = 7, temperature = 0.5, stop = ["\\n", "##"])\n'
        "    return vote(d)",
        decls="param k: int = 3 in 1..10\n",
    )
    (node,) = [n for n in dag.nodes_at_line(5) if n.op == "sample"]
    a = node.args
    assert (a.n, a.max_tokens, a.temperature, a.top_p, a.stop, a.model.name) == (6, 7, 0.5, 1.0, ["\n", "##"], "policy")
    assert [(p.text, p.path, p.source) for p in a.prompt] == [("Q: ", [], None), (None, ["q"], "main/q"), (" n=3", [], None)]
    assert node.span.line == 5 and node.span.file == "t.ttc"
    data = dag.to_json()
    assert data["output"] == dag.output and data["nodes"][0]["id"] == "main/q"


def test_dynamic_temperature_becomes_an_input() -> None:
    dag = dag_of("    d = sample(policy, q, temperature = 1.0 - agreement(sample(policy, q)))\n    return vote(d)")
    node = dag["main/d"]
    assert node.args.temperature is None
    assert dag[node.input_nodes("temperature")[0]].op == "arith"


def test_too_many_nodes_is_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    from ttcl.compiler import dag_build

    monkeypatch.setattr(dag_build, "MAX_NODES", 20)
    with pytest.raises(SemanticDiagnosticError) as err:
        dag_of("    c = sample(policy, q)\n    repeat 30 {\n        c = extend(policy, c)\n    }\n    return vote(c)")
    assert "the program unrolls to more than 20 DAG nodes" in str(err.value)


def test_many_names_in_long_loops_are_a_diagnostic_not_gigabytes(tmp_path) -> None:
    """A QA pass: 137,045 aliases (no DAG node each) and one `repeat 1024` made `ttcl check` copy the scope per round:
    4.2 GB and 34 s for a 1 MiB program; with nested loops it did not finish. Scope copies are counted now, and a
    loop keeps only the names its body binds: 30,000 names and 1,024 rounds are refused at once, one line, exit 2."""
    import subprocess
    import sys

    names = "".join(f"    a{i} = question\n" for i in range(30_000))
    prog = tmp_path / "wide.ttc"
    prog.write_text("ttcl 1\nstrategy main(question: text[<=20]) -> text {\n    c = question\n" + names
                    + "    repeat 1024 {\n        repeat 2 {\n            c = c\n        }\n    }\n    return c\n}\n")
    proc = subprocess.run([sys.executable, "-m", "ttcl.cli", "check", str(prog)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "names in scope here, across more branches and loop rounds than ttcl unrolls" in proc.stderr
    # a loop over few names keeps its meaning: the phi of c merges the rounds' bindings as before
    dag = dag_of("    c = sample(policy, q)\n    repeat 3 {\n        c = extend(policy, c)\n    }\n    return vote(c)")
    assert sum(n.op == "extend" for n in dag.nodes.values()) == 3


def test_filter_predicate_folds_params_and_wires_variables() -> None:
    dag = dag_of(
        "    c = sample(policy, q, n = 4)\n    m = mean_score(c)\n    f = filter(c, score >= m and length < cap)\n    return vote(f)",
        decls="param cap: int = 50 in 1..100\n",
    )
    node = dag["main/f"]
    assert node.input_nodes("pred:m") == ["main/m"]
    pred = node.args.predicate
    assert pred.right.right.value == 50.0 and pred.right.right.is_int


def test_node_ids_carry_no_positions_so_edits_elsewhere_do_not_rename_nodes() -> None:
    decls = 'verifier v = check("arith")\n'
    body = "    d = sample(policy, q, n = 4)\n    return vote(verify(v, d), weight = score)"
    before = [n.id for n in dag_of(body, decls)]
    # Lines and an unrelated statement added above: every existing node keeps its id.
    edited = [n.id for n in dag_of("    # a comment\n\n    e = sample(policy, q, n = 2)\n" + body, decls)]
    assert "main/return.verify" in before and "main/return.vote" in before and "main/return" in before
    assert set(before) <= set(edited)
    assert not any("@" in i for i in before + edited)


def test_two_loops_in_one_strategy_get_distinct_namespaces() -> None:
    dag = dag_of("    c = sample(policy, q)\n    repeat 2 {\n        c = extend(policy, c)\n    }\n"
                 "    repeat 2 {\n        c = extend(policy, c)\n    }\n    return vote(c)")
    assert [n.id for n in dag if n.op == "extend"] == [
        "main/repeat[0]/c", "main/repeat[1]/c", "main/repeat#2[0]/c", "main/repeat#2[1]/c"]


def test_loops_through_strategy_calls_count_against_the_unroll_limit(tmp_path) -> None:
    """Each strategy's nested loops were limited alone, so a strategy looping 65,536 times called from inside another
    such loop made `ttcl check` unroll 4.3e9 rounds for 42 s before another cap stopped it (a QA hunt)."""
    from ttcl.compiler.pipeline import compile_program

    src = ("ttcl 1\n\nstrategy g(q: text[<=20]) -> text {\n    x = q\n    repeat 1024 {\n        repeat 64 {\n"
           "            x = q\n        }\n    }\n    return q\n}\n\nstrategy main(question: text[<=20]) -> text {\n"
           "    y = question\n    repeat 2 {\n        y = g(question)\n    }\n    return y\n}\n")
    with pytest.raises(SemanticDiagnosticError) as err:
        compile_program(source=src, file="t.ttc")
    (d,) = err.value.diagnostics
    assert d.span.line == 6 and d.message == ("nested loops unroll to 131,072 rounds here, counting the loops around "
                                              "the calls that reach this strategy: over the limit of 65,536")
    # the same call outside a loop is within the limit
    compile_program(source=src.replace("    repeat 2 {\n        y = g(question)\n    }\n", "    y = g(question)\n"),
                    file="t.ttc")
