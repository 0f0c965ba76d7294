"""Exact bound arithmetic: each rule of compiler/budget.py checked by hand-computed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ttcl.compiler.ast import Span
from ttcl.compiler.budget import NUMBER_TEXT_TOKENS, SPECIAL_TOKENS, text_tokens, total_cost
from ttcl.compiler.costmodel import Cost, ModelSpec, forward_flops
from ttcl.compiler.dag import Dag, DagNode, GuardCond
from ttcl.compiler.diagnostics import BudgetDiagnosticError, SemanticDiagnosticError
from ttcl.compiler.pipeline import compile_program

POLICY = ModelSpec(non_embedding_params=1_000_000, n_layer=2, d_model=64)
RM = ModelSpec(non_embedding_params=500_000, n_layer=2, d_model=32)
HEAD = 'ttcl 1\nmodel policy = "/nonexistent/p" (params = 1M, n_layer = 2, d_model = 64)\nmodel rm = "/nonexistent/rm" (params = 500k, n_layer = 2, d_model = 32)\n'


def bounds(body: str, decls: str = "", inputs: str = "question: text[<=40]", **kw: object) -> dict[str, dict[str, float]]:
    src = f"{HEAD}{decls}\nstrategy main({inputs}) -> answer {{\n{body}\n}}\n"
    compiled = compile_program(source=src, file="t.ttc", **kw)  # type: ignore[arg-type]
    out = {row.node: row.bound for row in compiled.report.rows}
    for row in compiled.report.rows:
        out.setdefault(row.op, row.bound)
    out["total"] = compiled.report.total
    return out


def fwd(spec: ModelSpec, a: int, b: int) -> float:
    """The Kaplan sum written out, independent of costmodel's closed form."""
    return float(sum(2 * spec.non_embedding_params + 2 * spec.n_layer * spec.d_model * p for p in range(a + 1, b + 1)))


def test_forward_flops_matches_the_per_token_sum() -> None:
    assert forward_flops(POLICY, 0, 50) == fwd(POLICY, 0, 50)
    assert forward_flops(POLICY, 50, 70) == fwd(POLICY, 50, 70)
    assert fwd(POLICY, 0, 2) == 2 * 1_000_000 * 2 + 2 * 2 * 64 * (1 + 2)


def test_sample_prefills_the_prompt_once_for_n_samples() -> None:
    b = bounds('    d = sample(policy, "Q: {question}\\nA:", n = 5, max_tokens = 30)\n    return vote(d)')
    prompt = text_tokens("Q: ") + 40 + text_tokens("\nA:") + SPECIAL_TOKENS
    assert prompt == 47
    assert b["main/d"] == {
        "calls": 5, "prompt_tokens": 47, "gen_tokens": 150, "tokens": 197,
        "flops": fwd(POLICY, 0, 47) + 5 * fwd(POLICY, 47, 77),
    }
    assert b["main/d"]["flops"] == 94_288_768 + 5 * 60_480_000
    assert b["total"] == b["main/d"]


def test_template_literal_counts_utf8_bytes() -> None:
    b = bounds('    d = sample(policy, "é→{question}", max_tokens = 1)\n    return vote(d)')
    assert b["main/d"]["prompt_tokens"] == 2 + 3 + 40 + 1


def test_param_in_template_is_folded_to_its_text() -> None:
    b = bounds('    d = sample(policy, "n={k}: {question}", max_tokens = 1)\n    return vote(d)', "param k: int = 128 in 1..1000\n")
    assert b["main/d"]["prompt_tokens"] == len("n=128: ") + 40 + 1


def test_extend_reprefills_each_candidate_and_continues_n_ways() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 3, max_tokens = 10)\n'
        '    e = extend(policy, d, n = 2, max_tokens = 7)\n    return vote(e)'
    )
    length = 41 + 10  # each candidate: prompt 41 (40 + BOS) + 10 generated
    assert b["main/e"] == {
        "calls": 6, "prompt_tokens": 3 * length, "gen_tokens": 3 * 2 * 7, "tokens": 3 * length + 42,
        "flops": 3 * (fwd(POLICY, 0, length) + 2 * fwd(POLICY, length, length + 7)),
    }


def test_reward_model_reads_each_candidate_once() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 4, max_tokens = 9)\n    return vote(verify(orm, d))',
        "verifier orm = reward(rm)\n",
    )
    # the reward model's own template `{question}\n{completion}`: 40 + 1 + 9, plus one special token
    assert b["verify"] == {"calls": 4, "prompt_tokens": 4 * 51, "gen_tokens": 0, "tokens": 204, "flops": 4 * fwd(RM, 0, 51)}


def test_checker_costs_nothing() -> None:
    b = bounds('    d = sample(policy, question, n = 4, max_tokens = 9)\n    return vote(verify(ok, d))', 'verifier ok = check("arith")\n')
    assert b["verify"] == {"calls": 0, "prompt_tokens": 0, "gen_tokens": 0, "tokens": 0, "flops": 0}


def test_judge_one_forward_pass_per_candidate() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 3, max_tokens = 9)\n    return best(verify(j, d))',
        'verifier j = judge(policy, "Right? {c.text} yes/no:")\n',
    )
    rubric = len("Right? ") + 9 + len(" yes/no:") + SPECIAL_TOKENS
    assert b["verify"] == {"calls": 3, "prompt_tokens": 3 * rubric, "gen_tokens": 0, "tokens": 3 * rubric, "flops": 3 * fwd(POLICY, 0, rubric)}


def test_judge_without_candidate_field_reads_the_candidate_appended() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 1, max_tokens = 9)\n    return best(verify(j, d))',
        'verifier j = judge(policy, "Correct?")\n',
    )
    assert b["verify"]["prompt_tokens"] == len("Correct?") + (41 + 9) + SPECIAL_TOKENS


def test_revise_rounds_with_feedback_chain_lengths() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 2, max_tokens = 10)\n'
        '    r = revise(policy, d, feedback = orm, rounds = 2, max_tokens = 5)\n    return vote(r)',
        "verifier orm = reward(rm)\n",
    )
    fb = len("\nFeedback: ") + NUMBER_TEXT_TOKENS + len("\n")
    r1 = 41 + 10 + fb + SPECIAL_TOKENS
    r2 = 41 + 5 + fb + SPECIAL_TOKENS  # a revision keeps its draft's prompt: round 2 reads it and round 1's text
    # the reward model reads `{question}\n{completion}`: the question (40), a newline, the candidate's text, a special
    rm1, rm2 = 40 + 1 + 10 + SPECIAL_TOKENS, 40 + 1 + 5 + SPECIAL_TOKENS
    want_prompt = 2 * rm1 + 2 * r1 + 2 * rm2 + 2 * r2
    assert b["main/r"]["calls"] == 8
    assert b["main/r"]["prompt_tokens"] == want_prompt
    assert b["main/r"]["gen_tokens"] == 2 * 5 * 2
    flops = 2 * fwd(RM, 0, rm1) + 2 * (fwd(POLICY, 0, r1) + fwd(POLICY, r1, r1 + 5))
    flops += 2 * fwd(RM, 0, rm2) + 2 * (fwd(POLICY, 0, r2) + fwd(POLICY, r2, r2 + 5))
    assert b["main/r"]["flops"] == flops


def test_branch_takes_the_dearer_arm_per_unit() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 2, max_tokens = 10)\n'
        '    if agreement(d) > 0.5 {\n        d = sample(policy, question, n = 8, max_tokens = 1)\n'
        '    } else {\n        d = sample(policy, question, n = 1, max_tokens = 100)\n    }\n    return vote(d)'
    )
    assert b["total"]["calls"] == 2 + 8
    assert b["total"]["gen_tokens"] == 20 + 100
    assert b["total"]["prompt_tokens"] == 41 + 41


def test_repeat_sums_unrolled_iterations_with_growing_context() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 1, max_tokens = 4)\n'
        '    repeat 3 {\n        d = extend(policy, d, max_tokens = 2)\n    } until best_score(d) > 0.5\n    return vote(d)'
    )
    assert b["total"]["calls"] == 4
    assert b["total"]["prompt_tokens"] == 41 + 45 + 47 + 49
    assert b["total"]["gen_tokens"] == 4 + 3 * 2


@pytest.mark.parametrize("leave", ["return vote(big)", "break"])
def test_an_exit_in_a_loop_takes_the_dearer_of_the_exit_and_what_follows_it(leave: str) -> None:
    """QA pass: `repeat 2 { if c { big; return } } tail` was bounded at big + big + tail (131 calls), though a
    path runs one `big` or the tail; with `break`, at big + big. The rounds after an exit, and what follows the
    loop after a return, run on its other arm only, as after an `if` outside a loop."""
    b = bounds(
        '    d = sample(policy, question, n = 1, max_tokens = 4)\n'
        '    repeat 2 {\n        if count(d) > 0 {\n'
        '            big = sample(policy, question, n = 50, max_tokens = 4)\n'
        f'            {leave}\n        }}\n    }}\n'
        '    tail = sample(policy, question, n = 30, max_tokens = 4)\n    return vote(tail + d)'
    )
    # a return: 1 + 50 (returned in either round) or 1 + 30 (no exit); a break: 1 + 50 then the tail's 30
    assert b["total"]["calls"] == (1 + 50 + 30 if leave == "break" else 1 + 50)


def test_top_and_concat_bound_candidate_counts() -> None:
    b = bounds(
        '    a = sample(policy, question, n = 5, max_tokens = 3)\n    b = sample(policy, question, n = 2, max_tokens = 9)\n'
        '    c = extend(policy, top(a, k = 2) + b, n = 1, max_tokens = 1)\n    return vote(c)'
    )
    assert b["main/c"]["calls"] == 4
    assert b["main/c"]["prompt_tokens"] == 4 * (41 + 9)


def test_over_budget_names_dominating_nodes_and_amount() -> None:
    src = HEAD + "budget per item { calls <= 10 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    a = sample(policy, q, n = 8)\n    b = sample(policy, q, n = 4)\n    return vote(a + b)\n}\n"
    report = compile_program(source=src, file="t.ttc").report
    assert report.verdict == "over"
    (over,) = report.over()
    assert (over.unit, over.bound, over.limit, over.over_by) == ("calls", 12, 10, 2)
    assert [(d.node, d.amount, round(d.share, 3)) for d in over.dominating] == [("main/a", 8, 0.667), ("main/b", 4, 0.333)]


def test_set_override_fixes_over_budget() -> None:
    src = HEAD + "param n: int = 8 in 1..64\nbudget per item { calls <= 4 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    return vote(sample(policy, q, n = n))\n}\n"
    assert compile_program(source=src, file="t.ttc").report.verdict == "over"
    assert compile_program(source=src, file="t.ttc", overrides={"n": "4"}).report.verdict == "fits"


def test_auto_picks_largest_fitting_value() -> None:
    src = HEAD + "param n: int = auto in 1..100\nbudget per item { gen_tokens <= 1000 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    return vote(sample(policy, q, n = n, max_tokens = 30))\n}\n"
    compiled = compile_program(source=src, file="t.ttc")
    assert compiled.params["n"] == 33
    (choice,) = compiled.report.auto
    assert (choice.value, choice.next_over) == (33, "gen_tokens 1020 > 1000")


def test_auto_lowest_value_not_fitting_is_a_diagnostic() -> None:
    src = HEAD + "param n: int = auto in 5..100\nbudget per item { calls <= 4 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    return vote(sample(policy, q, n = n))\n}\n"
    with pytest.raises(BudgetDiagnosticError) as err:
        compile_program(source=src, file="t.ttc")
    assert err.value.exit_code == 1
    assert str(err.value).splitlines()[0] == (
        "t.ttc:4:16: error: no value of `n` in 5..100 fits the budget: with n = 5, calls 5 > 4"
    )


def test_a_context_overflow_no_auto_value_changes_is_not_blamed_on_the_auto_param() -> None:
    """docs/language.md's example: an unused `auto` param turned a context error (exit 2, at the sample) into
    "no value of `k` fits the budget" (exit 1); a param the context does depend on is still blamed."""
    from ttcl.compiler.diagnostics import DiagnosticError

    head = 'ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget per item { calls <= 64 }\n'
    unused = head + "param k: int = auto in 1..64\nstrategy main(q: text[<=256]) -> answer {\n" \
        "    return vote(sample(policy, q, n = 2, max_tokens = 256))\n}\n"
    with pytest.raises(DiagnosticError) as err:
        compile_program(source=unused, file="t.ttc")
    assert err.value.exit_code == 2
    assert str(err.value).splitlines()[0].startswith("t.ttc:6:17: error: main/return.sample (sample) may need 513 tokens")
    used = head + "param k: int = auto in 100..150\nstrategy main(q: text[<=100]) -> answer {\n" \
        "    return vote(sample(policy, q, n = 2, max_tokens = k))\n}\n"
    with pytest.raises(BudgetDiagnosticError) as err:
        compile_program(source=used, file="t.ttc")
    assert err.value.exit_code == 1
    assert str(err.value).splitlines()[0].startswith("t.ttc:4:16: error: no value of `k` in 100..150 fits the budget")


def test_missing_model_size_points_at_the_declaration() -> None:
    src = 'ttcl 1\nmodel policy = "/nonexistent/x"\nstrategy main(q: text[<=5]) -> answer {\n    return vote(sample(policy, q))\n}\n'
    with pytest.raises(SemanticDiagnosticError) as err:
        compile_program(source=src, file="t.ttc")
    text = str(err.value)
    assert text.splitlines()[0] == ("t.ttc:2:1: error: model `policy`: model `/nonexistent/x` is not a local model "
                                    "directory (no such directory), so its size is unknown")
    assert "hint: check the path" in text and "add `(params = ...)`" in text


def test_input_without_bound_needs_max_input_tokens() -> None:
    src = HEAD + "strategy main(q: text) -> answer {\n    return vote(sample(policy, q, max_tokens = 1))\n}\n"
    with pytest.raises(SemanticDiagnosticError) as err:
        compile_program(source=src, file="t.ttc")
    assert "input `q` has no length bound" in str(err.value)
    report = compile_program(source=src, file="t.ttc", max_input_tokens=99).report
    assert report.total["prompt_tokens"] == 100


def test_an_answer_is_bounded_by_twice_its_text_plus_one() -> None:
    """An extractor may rewrite what it reads (countdown's `9-2+3` votes as `3+(9-2)`; `.5` as `0.5`): an answer
    fed to a model counts 2 * gen + 1 tokens, which `runtime/extract.py` holds every extractor to (QA pass: it was
    bounded by the generated length alone)."""
    b = bounds('    a = vote(sample(policy, question, n = 2, max_tokens = 10))\n    d = sample(policy, "{a}", max_tokens = 5)\n'
               '    r = revise(policy, d, "{c.answer}")\n    return vote(r)')
    assert b["main/d"]["prompt_tokens"] == (2 * 10 + 1) + SPECIAL_TOKENS
    assert b["main/r"]["prompt_tokens"] == (2 * 5 + 1) + SPECIAL_TOKENS


def test_seconds_and_pooled_are_run_time_only() -> None:
    src = HEAD + "budget per item { seconds <= 5 }\nbudget pooled { calls <= 1 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    return vote(sample(policy, q, n = 3))\n}\n"
    report = compile_program(source=src, file="t.ttc").report
    assert [(lim.unit, lim.status, lim.note) for lim in report.limits] == [
        ("seconds", "run time", "enforced at run time"),
        ("calls", "run time", "pooled over a dataset run: enforced at run time"),
    ]
    assert report.verdict == "no budget"


def _node(node_id: str, guard: GuardCond | None = None, op: str = "sample") -> DagNode:
    return DagNode(id=node_id, op=op, type="candidates", span=Span(), module="m", ns="main", guard=guard)  # type: ignore[arg-type]


def test_total_cost_nests_max_over_arms_inside_sums() -> None:
    g1 = GuardCond(node="g1", arm=True)
    nodes = [
        _node("a"), _node("g1", op="guard"), _node("t", g1), _node("f", GuardCond(node="g1", arm=False)),
        _node("g2", g1, op="guard"), _node("tt", GuardCond(node="g2", arm=True)),
    ]
    dag = Dag({n.id: n for n in nodes}, "a", [], "main")
    costs = {"a": Cost(calls=1), "t": Cost(calls=2, gen_tokens=1), "f": Cost(calls=10), "tt": Cost(calls=5, gen_tokens=7)}
    total = total_cost(dag, costs)
    assert (total.calls, total.gen_tokens) == (1 + max(2 + 5, 10), 8)


def test_candidate_fields_in_a_prompt_use_generated_and_prompt_lengths() -> None:
    b = bounds(
        '    d = sample(policy, question, n = 2, max_tokens = 10)\n'
        '    e = sample(policy, "Fix: {d.text} / {d.prompt}", max_tokens = 1)\n    return vote(e)'
    )
    assert b["main/e"]["prompt_tokens"] == len("Fix: ") + 10 + len(" / ") + 41 + SPECIAL_TOKENS


def test_several_autos_are_solved_in_order() -> None:
    src = HEAD + "param a: int = auto in 1..10\nparam b: int = auto in 1..10\nbudget per item { gen_tokens <= 200 }\n" \
        "strategy main(q: text[<=5]) -> answer {\n    return vote(sample(policy, q, n = a, max_tokens = b * 10))\n}\n"
    compiled = compile_program(source=src, file="t.ttc")
    assert (compiled.params["a"], compiled.params["b"]) == (10, 2)
    assert [(c.param, c.value, c.next_over) for c in compiled.report.auto] == [
        ("a", 10, None), ("b", 2, "gen_tokens 300 > 200"),
    ]


def test_auto_set_from_the_command_line() -> None:
    src = HEAD + "param n: int = 3 in 1..50\nbudget per item { calls <= 7 }\nstrategy main(q: text[<=5]) -> answer {\n" \
        "    return vote(sample(policy, q, n = n))\n}\n"
    assert compile_program(source=src, file="t.ttc", overrides={"n": "auto"}).params["n"] == 7


def test_revise_without_prompt_uses_the_model_card_template(tmp_path: Path) -> None:
    model = tmp_path / "reviser"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 8, "n_positions": 512}))
    (model / "ttcl_meta.json").write_text(json.dumps({"revise_template": "{question}\nattempt:\n{attempt}\nfix:\n"}))
    src = f'ttcl 1\nmodel r = "{model}"\nstrategy main(question: text[<=30]) -> answer {{\n' \
        "    d = sample(r, question, max_tokens = 10)\n    return vote(revise(r, d, max_tokens = 5))\n}\n"
    compiled = compile_program(source=src, file="t.ttc")
    node = next(n for n in compiled.dag if n.op == "revise")
    assert [(p.text, p.path) for p in node.args.prompt] == [
        (None, ["question"]), ("\nattempt:\n", []), (None, ["c", "text"]), ("\nfix:\n", []),
    ]
    row = compiled.report.row(node.id)
    assert row is not None and row.bound["prompt_tokens"] == 30 + len("\nattempt:\n") + 10 + len("\nfix:\n") + 1


def test_a_list_doubled_in_a_loop_is_refused_at_its_line() -> None:
    """A QA hunt: `c1 = c1 + c1` in two nested loops passed `ttcl check` ("fits": joining lists costs nothing in any
    unit), and `ttcl run` filled the memory with 2^144 candidates (exit 70 under a cap, the OOM killer without; the
    slow suite's 24 GB incident, drawn by the budget-program generator). One value holds at most 65,536 candidates."""
    with pytest.raises(SemanticDiagnosticError) as err:
        bounds("    c = sample(policy, question, n = 2, max_tokens = 4)\n"
               "    repeat 12 {\n        repeat 12 {\n            c = c + c\n        }\n    }\n    return vote(c)")
    (d,) = err.value.diagnostics
    assert d.message == "`c` can hold up to 131,072 candidates, over the limit of 65,536 for one value"
    assert d.span.line == 9 and "top(c, k = N)" in (d.hint or "")  # the `c + c` line
    # 65,536 is allowed: 2 x 2^15
    assert bounds("    c = sample(policy, question, n = 2, max_tokens = 4)\n"
                  "    repeat 15 {\n        c = c + c\n    }\n    return vote(c)")


def test_a_text_doubled_in_a_loop_is_refused_at_its_line() -> None:
    """The same for text (QA pass): `t = t + t` 40 times passed `ttcl check`, and `ttcl run` built a 20 TB string
    (MemoryError, exit 70 under a 3 GB cap). One text value holds at most 16M tokens."""
    with pytest.raises(SemanticDiagnosticError) as err:
        bounds("    t = question\n    repeat 40 {\n        t = t + t\n    }\n    return vote(sample(policy, question, n = 1, max_tokens = 4))",
               inputs="question: text[<=20]")
    (d,) = err.value.diagnostics
    assert d.message == "`t` can grow to 20,971,520 tokens of text, over the limit of 16,777,216 for one value"
    assert "t = t + t" in (d.hint or "")
    assert bounds("    t = question\n    repeat 19 {\n        t = t + t\n    }\n    return vote(sample(policy, question, n = 1, max_tokens = 4))",
                  inputs="question: text[<=20]")


@pytest.mark.parametrize(("body", "message", "line"), [
    ("    x = 1 / 0\n    return vote(sample(policy, question, n = 1, max_tokens = 4))",
     "division by zero: this divisor is always 0", 6),
    ('    d = sample(policy, "", n = 1, max_tokens = 4)\n    return vote(d)',
     "`sample` needs a prompt: this one is always empty", 6),
])
def test_what_fails_every_item_is_refused_by_check(body: str, message: str, line: int) -> None:
    """`ttcl check` said "fits" and every item then failed (QA pass: "main/x: division by zero", "sample: the
    prompt is empty"). A division inside a branch is left to the run: the branch may never be taken."""
    with pytest.raises(SemanticDiagnosticError) as err:
        bounds(body)
    (d,) = err.value.diagnostics
    assert d.message == message and d.span.line == line
    assert bounds("    d = sample(policy, question, n = 2, max_tokens = 4)\n    if n > 0 {\n        x = count(d) / n\n"
                  "    }\n    return vote(d)", decls="param n: int = 0 in 0..4\n")


def test_auto_says_when_the_bound_falls_as_its_param_grows() -> None:
    """`n = 70 - k` gave "no value of `k` fits" (exit 1) though every k >= 30 fits, and `max_tokens = 96 / k` an
    unexplained "got 1.5" (QA pass)."""
    body = "    d = sample(policy, question, n = 70 - k, max_tokens = 4)\n    return vote(d)"
    decls = "param k: int = auto in 1..64\nbudget per item { calls <= 40 }\n"
    with pytest.raises(SemanticDiagnosticError) as err:
        bounds(body, decls=decls)
    (d,) = err.value.diagnostics
    assert d.message == ("`auto` takes the largest `k` whose worst case fits, assuming a larger value never costs "
                         "less; here it does: with k = 1, calls 69 > 40, but k = 64 fits")
    with pytest.raises(SemanticDiagnosticError, match=r"got 1.5 \(with `k` = 64, tried by `auto`\)"):
        bounds("    d = sample(policy, question, n = k, max_tokens = 96 / k)\n    return vote(d)",
               decls="param k: int = auto in 1..64\nbudget per item { calls <= 20 }\n")
