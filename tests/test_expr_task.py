"""The expr task: generator, answer space, JSONL export, and the exact outcome, step and
process checkers on hand-made right, wrong and malformed solutions."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from ttcl.runtime.scoring import CheckScorer
from ttcl.runtime.tasks import available_checkers, get_checker
from ttcl.runtime.tasks.expr import (
    VALUE_MAX,
    checker,
    guess_pass_bound,
    iter_jsonl,
    make_problems,
    parse_question,
)
from ttcl.runtime.values import Candidate, Candidates

Q = "(12+7)*3-(30-4); 5*8"  # 19*3 - 26 = 31 and 40; 12+7, 30-4 and 5*8 are independent
RIGHT = "12+7=19\n30-4=26\n19*3=57\n57-26=31\n5*8=40\n#### 31,40"
RIGHT_OTHER_ORDER = "5*8=40\n30-4=26\n12+7=19\n19*3=57\n57-26=31\n#### 31,40"


def _value(text: str) -> str:
    p = parse_question(text)
    assert p is not None
    return p.answer


def test_parse_precedence_and_parentheses() -> None:
    p = parse_question(Q)
    assert p is not None
    assert p.steps == 5
    assert p.answer == "31,40"
    assert p.question == Q  # renders back with the fewest parentheses
    assert _value("2+3*4") == "14"
    assert _value("(2+3)*4") == "20"
    assert _value("20-5-3") == "12"  # left to right
    assert _value("20-(5-3)") == "18"
    assert _value(" 20 - ( 5 - 3 ) ;2*3\n") == "18,6"


@pytest.mark.parametrize("question", ["", "12", "(12+7", "12+", "12//3", "a+b", "12+7)", "()", "1" * 7 + "+1",
                                      "1+1;2+2;3+3;4+4", "1+1;", "1+1;7", "+".join(["1"] * 14),
                                      "(" * 20 + "1+1" + ")" * 20])
def test_unparseable_questions(question: str) -> None:
    assert parse_question(question) is None
    assert checker.outcome(question, "#### 19") == 0.0
    assert checker.steps(question, "12+7=19\n#### 19") == [0.0, 0.0]
    assert checker.solve(question) is None


def test_generator_is_seeded_in_range_and_round_trips() -> None:
    a = make_problems(300, range(2, 9), seed=3)
    assert a == make_problems(300, range(2, 9), seed=3)
    assert a != make_problems(300, range(2, 9), seed=4)
    assert [p.steps for p in a[:8]] == [2, 3, 4, 5, 6, 7, 8, 2]
    assert {len(p.parts) for p in a} == {2, 3}
    rng = random.Random(0)
    for p in a:
        assert all(0 <= v <= VALUE_MAX for v in p.values())
        assert parse_question(p.question) == p
        for _ in range(3):  # every random valid order is a right chain
            sol = p.solution(rng)
            assert checker.outcome(p.question, sol) == 1.0
            assert checker.steps(p.question, sol) == [1.0] * (p.steps + 1)
            assert checker.strict(p.question, sol)
    with pytest.raises(ValueError):
        make_problems(1, 1, seed=0)
    with pytest.raises(ValueError):
        make_problems(1, 13, seed=0)


def test_several_chains_per_question() -> None:
    p = parse_question(Q)
    assert p is not None
    orders = {tuple(p.solution(random.Random(s)).splitlines()) for s in range(400)}
    # 12+7 and 30-4 in either order, 19*3 after 12+7, 57-26 last of the first part; 5*8 anywhere
    assert p.n_chains() == len(orders) == 15
    assert min(q.n_chains() for q in make_problems(100, 5, seed=5)) > 1


def test_n_chains_counts_valid_orders() -> None:
    for p in make_problems(30, range(2, 6), seed=9):
        lines = p.solution().splitlines()[:-1]
        valid = sum(checker.strict(p.question, "\n".join([*perm, f"#### {p.answer}"]))
                    for perm in itertools.permutations(lines))
        assert valid == p.n_chains()


def test_question_blind_guesser_is_below_five_percent_per_bin() -> None:
    for steps in range(2, 9):
        ref = make_problems(3000, steps, seed=100 + steps)
        assert guess_pass_bound(ref, 64) < 0.05
    # the bound is not vacuous: a narrow answer space fails it
    narrow = [parse_question(f"{x}+1; 1+1") for x in range(1, 30)] * 3
    assert guess_pass_bound([p for p in narrow if p is not None], 64) > 0.5


def test_jsonl_lines_are_gsm8k_style() -> None:
    rows = [json.loads(x) for x in iter_jsonl(make_problems(4, [3], seed=0))]
    for r in rows:
        assert set(r) == {"question", "answer", "steps"} and r["steps"] == 3
        assert r["answer"].splitlines()[-1].startswith("#### ")
        assert checker.strict(r["question"], r["answer"])


def test_registered_as_a_verifier() -> None:
    assert "expr" in available_checkers()
    assert get_checker("expr") is checker or get_checker("expr").name == "expr"


# ------------------------------------------------------------------ outcome


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        (RIGHT, 1.0),
        (RIGHT_OTHER_ORDER, 1.0),
        ("#### 31,40", 1.0),  # the outcome reads only the final answer
        ("#### 31, 40", 1.0),
        ("#### +31,+40", 1.0),
        ("#### 40,31", 0.0),  # in question order
        ("#### 31", 0.0),
        ("#### 31,40,0", 0.0),
        (RIGHT.replace("#### 31,40", "#### 31,41"), 0.0),
        (RIGHT.replace("\n#### 31,40", ""), 0.0),
        ("#### 31.0,40", 0.0),
        ("#### -31,40", 0.0),
        ("#### 31,,40", 0.0),
        ("", 0.0),
        ("\x00\xff ####", 0.0),
    ],
)
def test_outcome(completion: str, score: float) -> None:
    assert checker.outcome(Q, completion) == score


# ------------------------------------------------------------------ steps (and the process scorer)


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT, [1.0] * 6),
        (RIGHT_OTHER_ORDER, [1.0] * 6),
        (" 12 + 7 = 19 \n\n30-4=26\n19*3=57\n57-26=31\n5*8=40\n####31 , 40\n", [1.0] * 6),
        # partial solutions, right so far (what a process scorer sees mid-search)
        ("12+7=19", [1.0]),
        ("5*8=40\n30-4=26", [1.0, 1.0]),
        # arithmetic slip, carried through
        ("12+7=19\n30-4=26\n19*3=47\n47-26=21\n5*8=40\n#### 21,40", [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        # reducing an operation before its operands are known
        ("19*3=57\n12+7=19", [0.0, 0.0]),
        ("57-26=31", [0.0]),
        # right value, wrong operand order or operator
        ("7+12=19", [0.0]),
        ("12-7=5", [0.0]),
        ("8*5=40", [0.0]),
        # an operation that is not in the question
        ("12+8=20", [0.0]),
        # reducing the same operation twice
        ("12+7=19\n12+7=19", [1.0, 0.0]),
        # the answer before every operation is reduced
        ("12+7=19\n#### 31,40", [1.0, 0.0]),
        # text after the answer line
        (RIGHT + "\n1+1=2", [1.0] * 6 + [0.0]),
        (RIGHT + "\n#### 31,40", [1.0] * 6 + [0.0]),
        # malformed
        ("", []),
        ("\n \n", []),
        ("12+7=19=19", [0.0]),
        ("12+7=", [0.0]),
        ("twelve plus seven", [0.0]),
        ("<eos><pad>", [0.0]),
    ],
)
def test_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores
    assert len(checker.split_steps(completion)) == len(scores)


def test_repeated_subexpressions_are_each_reduced_once() -> None:
    q = "(12+7)-(12+7); 12+7"
    assert _value(q) == "0,19"
    assert checker.steps(q, "12+7=19\n12+7=19\n19-19=0\n12+7=19\n#### 0,19") == [1.0] * 5
    assert checker.steps(q, "12+7=19\n19-19=0") == [1.0, 0.0]
    assert checker.steps(q, "12+7=19\n12+7=19\n12+7=19\n12+7=19") == [1.0, 1.0, 1.0, 0.0]


def test_strict_and_first_error() -> None:
    assert checker.strict(Q, RIGHT)
    assert not checker.strict(Q, "#### 31,40")  # right answer, no steps shown
    assert not checker.strict(Q, "12+7=19\n30-4=26\n19*3=57\n57-26=31\n5*8=41\n#### 31,40")
    assert checker.first_error(Q, RIGHT) is None
    assert checker.first_error(Q, "12+7=19\n30-4=25") == 1


@pytest.mark.parametrize("junk", [None, 3, b"#### 31,40", ["#### 31,40"]])
def test_never_raises_on_non_text(junk: object) -> None:
    assert checker.extract(junk) is None
    assert checker.outcome(Q, junk) == 0.0
    assert checker.steps(Q, junk) == []
    assert checker.outcome(junk, "#### 1") == 0.0
    assert not checker.strict(junk, RIGHT)


def _cands(*texts: str) -> Candidates:
    return Candidates(tuple(Candidate(prompt=Q + "\n", text=t) for t in texts))


def test_check_as_exact_process_scorer() -> None:
    partial_right, partial_wrong = "12+7=19\n30-4=26", "12+7=19\n30-4=24"
    cands = _cands(partial_right, partial_wrong, RIGHT, "#### 31,40")
    [outcome] = CheckScorer("expr").score([(Q, cands)])
    [last] = CheckScorer("expr", "last").score([(Q, cands)])
    [smin] = CheckScorer("expr", "min").score([(Q, cands)])
    assert not isinstance(outcome, Exception) and not isinstance(last, Exception) and not isinstance(smin, Exception)
    assert outcome.scores == [0.0, 0.0, 1.0, 1.0]  # a partial solution has no answer yet
    assert last.scores == [1.0, 0.0, 1.0, 0.0]  # right so far / wrong / right / no steps shown
    assert smin.scores == [1.0, 0.0, 1.0, 0.0]
    assert last.steps[1] == (1.0, 0.0)


def test_check_agg_compiles_into_the_verifier_ref() -> None:
    from ttcl.compiler.pipeline import compile_program

    src = '''ttcl 1
model policy = "ttcl:arith-s"
verifier oracle = check("expr", agg = "last")
verifier exact = check("expr")
budget per item { calls <= 64 }
strategy main(question: text[<=40]) -> answer {
    first = sample(policy, "{question}\\n", n = 4, max_tokens = 14, stop = "\\n")
    kept = top(verify(oracle, first), k = 2)
    grown = extend(policy, kept, n = 2, max_tokens = 14, stop = "\\n")
    return vote(verify(exact, grown))
}
'''
    compiled = compile_program(source=src, file="t.ttc")
    refs = {n.args.verifier.name: n.args.verifier for n in compiled.dag.nodes.values() if n.args.verifier is not None}
    assert refs["oracle"].kind == "check" and refs["oracle"].checker == "expr" and refs["oracle"].agg == "last"
    assert refs["exact"].agg is None


# ---------------------------------------------------------------- the `state` chain style

RIGHT_STATE = "19*3-(30-4); 5*8\n19*3-26; 5*8\n57-26; 5*8\n31; 5*8\n31; 40\n#### 31,40"


def test_state_style_solutions_are_right_in_every_valid_order() -> None:
    rng = random.Random(5)
    for p in make_problems(140, range(2, 9), seed=11):
        sol = p.solution(rng, style="state")
        lines = sol.split("\n")
        assert len(lines) == p.steps + 1 and lines[-2].count(";") == len(p.parts) - 1
        assert checker.strict(p.question, sol), sol
        # the last state holds the values alone
        assert lines[-2].replace(" ", "").split(";") == p.answer.split(",")
    p = parse_question(Q)
    assert p is not None
    seen = {p.solution(random.Random(s), style="state") for s in range(200)}
    assert RIGHT_STATE in seen and len(seen) > 5  # several orders, each one written in full
    with pytest.raises(ValueError, match="style"):
        p.solution(style="tree")


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT_STATE, [1.0] * 6),
        ("(12+7)*3-(30-4); 40\n(12+7)*3-26; 40\n19*3-26; 40\n57-26; 40\n31; 40\n#### 31,40", [1.0] * 6),
        ("12+7=19\n19*3-(30-4); 5*8\n19*3-26; 5*8", [1.0, 0.0, 0.0]),  # a line that restates, not reduces
        ("12+7=19\n(12+7)*3-26; 5*8", [1.0, 0.0]),  # the state forgets the first reduction
        ("(19)*3-(30-4) ; 5*8", [1.0]),  # redundant parentheses and spaces parse to the same state
        ("19*3-(30-4); 5*8\n30-4=26\n57-26; 5*8\n31; 5*8", [1.0] * 4),  # the styles may mix
        ("19*3-(30-4); 5*8\n30-4=26\n31; 5*8", [1.0, 1.0, 0.0]),  # two reductions on one line
        ("20*3-(30-4); 5*8", [0.0]),  # a wrong value
        ("19*3-(30-4)", [0.0]),  # an expression dropped
        ("19*3-(30-4); 5*8; 1+1", [0.0]),  # an expression added
        ("19*3-26; 5*8", [0.0]),  # two reductions on one line
        ("19*3-30-4; 5*8", [0.0]),  # the parentheses lost: another tree
        ("19*3-(30-4); 5*8\n19*3-(30-4); 5*8", [1.0, 0.0]),  # no reduction
        ("31; 40\n#### 31,40", [0.0, 0.0]),
        ("19*3-(30-4); 5*8;", [0.0]),
        ("19*3-(30-4" + ")" * 30 + "; 5*8", [0.0]),
    ],
)
def test_state_style_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores


RIGHT_TRACE = ("30-4=26 -> (12+7)*3-26; 5*8\n5*8=40 -> (12+7)*3-26; 40\n12+7=19 -> 19*3-26; 40\n"
               "19*3=57 -> 57-26; 40\n57-26=31 -> 31; 40\n#### 31,40")


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT_TRACE, [1.0] * 6),
        ("12+7=19->19*3-(30-4);5*8", [1.0]),  # spacing is free
        ("12+7=18 -> 19*3-(30-4); 5*8", [0.0]),  # a wrong value in the operation
        ("12+7=19 -> 18*3-(30-4); 5*8", [0.0]),  # ... or in the state
        ("30-4=26 -> 19*3-(30-4); 5*8", [0.0]),  # the operation is not the one the state reduces
        ("12+7=19 -> 19*3-(30-4); 40", [0.0]),  # the state reduces two
        ("12+7=19 -> ", [0.0]),
        (" -> 19*3-(30-4); 5*8", [0.0]),
        ("12+7=19 -> 19*3-(30-4); 5*8 -> 19*3-(30-4); 5*8", [0.0]),
    ],
)
def test_trace_style_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores


def test_trace_style_solutions_are_right() -> None:
    p = parse_question(Q)
    assert p is not None
    assert RIGHT_TRACE in {p.solution(random.Random(s), style="trace") for s in range(200)}
    for i, p in enumerate(make_problems(140, range(2, 9), seed=12)):
        sol = p.solution(random.Random(i), style="trace")
        assert checker.strict(p.question, sol), sol
        # the same order as style `ops` with the same rng, each operation followed by its state
        ops = p.solution(random.Random(i), style="ops").split("\n")
        assert [ln.split(" -> ")[0] for ln in sol.split("\n")] == ops[:-1] + [ops[-1]]
        assert sol.split("\n")[-2].split(" -> ")[1].replace(" ", "").split(";") == p.answer.split(",")


# ---------------------------------------------------------------- the `subst` chain style

RIGHT_SUBST = "30-4=26\n12+7=19\n(12+7)*3=19*3=57\n(12+7)*3-(30-4)=57-26=31\n5*8=40\n#### 31,40"


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT_SUBST, [1.0] * 6),
        ("12+7=19\n( 12+7 ) * 3 = 19*3 = 57", [1.0, 1.0]),  # spacing and redundant parentheses are free
        ("12+7=19\n(12+7)*3=19*3=57\n30-4=26\n57-26=31", [1.0] * 4),  # the styles may mix
        ("12+7=19\n(12+7)*3=18*3=54", [1.0, 0.0]),  # a wrong value substituted
        ("12+7=19\n(12+7)*3=19*3=58", [1.0, 0.0]),  # a wrong value
        ("12+7=19\n(12+7)*3=3*19=57", [1.0, 0.0]),  # operands swapped
        ("12+7=19\n12+7*3=19*3=57", [1.0, 0.0]),  # the parentheses lost: not a sub-expression here
        ("12+7=19\n(30-4)*3=19*3=57", [1.0, 0.0]),  # a sub-expression the question does not have
        ("(12+7)*3=19*3=57", [0.0]),  # 12+7 is not reduced yet
        ("12+7=19\n(12+7)*3=19*3=57\n(12+7)*3=19*3=57", [1.0, 1.0, 0.0]),  # reduced twice
        ("12+7=12+7=19", [1.0]),  # a literal operation may name itself
        ("12+7=19\n(12+7)*3==57", [1.0, 0.0]),
        ("12+7=19\n=19*3=57", [1.0, 0.0]),
        ("12+7=19\n(12+7)*3=19*3=57=57", [1.0, 0.0]),
        ("12+7=19\n(12+7" + ")" * 30 + "*3=19*3=57", [1.0, 0.0]),
    ],
)
def test_subst_style_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores


def test_subst_style_solutions_are_right() -> None:
    p = parse_question(Q)
    assert p is not None
    assert RIGHT_SUBST in {p.solution(random.Random(s), style="subst") for s in range(200)}
    for i, p in enumerate(make_problems(140, range(2, 9), seed=13)):
        sol = p.solution(random.Random(i), style="subst")
        assert checker.strict(p.question, sol), sol
        # the same order and values as style `ops` with the same rng, each line ending in its operation
        ops = p.solution(random.Random(i), style="ops").split("\n")
        assert [ln.split("=", ln.count("=") - 1)[-1] for ln in sol.split("\n")[:-1]] == ops[:-1]
        assert sol.split("\n")[-1] == ops[-1]


def test_a_step_two_ready_operations_read_alike_may_reduce_either() -> None:
    """`2+2=4` was tied to the first such operation, so a valid order that meant the other was scored wrong from
    its next line on: about 1 gold solution in 1,000 at 5+ operations, and the oracle PRM pruned them (QA pass)."""
    q = "(2+2)*3; (2+2)*5"
    assert checker.steps(q, "2+2=4\n4*5=20\n2+2=4\n4*3=12\n#### 12,20") == [1.0] * 5
    assert checker.strict(q, "2+2=4\n4*5=20\n2+2=4\n4*3=12\n#### 12,20")
    assert checker.steps(q, "2+2=4\n4*5=20\n4*5=20") == [1.0, 1.0, 0.0]  # each operation is reduced once
    q2 = "(3+4)*2+(3+4)*5; 1+1"
    assert checker.steps(q2, "3+4=7\n7*5=35\n3+4=7\n7*2=14\n14+35=49\n1+1=2\n#### 49,2") == [1.0] * 7
    assert checker.steps(q, "(2+2)*3; 4*5\n4*3; 4*5\n12; 4*5\n12; 20\n#### 12,20") == [1.0] * 5  # state style
    assert checker.steps(q, "2+2=2+2=4\n(2+2)*5=4*5=20\n2+2=2+2=4\n(2+2)*3=4*3=12\n#### 12,20") == [1.0] * 5


def test_every_valid_order_of_every_generated_question_is_right() -> None:
    rng = random.Random(7)
    for p in make_problems(300, range(5, 13), seed=11):
        for style in ("ops", "subst"):
            sol = p.solution(rng, style=style)
            assert checker.strict(p.question, sol), (p.question, sol)


def test_numbers_past_pythons_digit_limit_are_wrong_never_an_exception() -> None:
    big = "9" * 5000
    assert checker.outcome(Q, f"#### {big},40") == 0.0
    assert checker.steps(Q, f"12+7={big}") == [0.0]
    assert checker.steps(Q, f"12+7=19\n30-4=26\n19*3=57\n57-26=31\n5*8=40\n#### {big}") == [1.0] * 5 + [0.0]
    assert checker.steps(Q, f"12+7={big} -> 19*3-(30-4); 5*8") == [0.0]
    assert checker.steps(Q, f"12+7=12+7={big}") == [0.0]


def test_a_question_with_a_value_below_zero_is_not_read() -> None:
    """`1-5; 2-3` was read, and its right answer `-4,-1` scored 0 (no step or answer writes a negative value)."""
    for q in ("1-5; 2-3", "(1-5)*2+9; 1+1"):
        assert not checker.reads(q) and checker.solve(q) is None


def test_the_zoos_labeller_ties_an_ambiguous_line_to_the_first_operation_as_the_shipped_labels_did() -> None:
    """The zoo's builds label with `labeller`, the checker as it was when the shipped verifiers' labels were made
    (5 of their 64,000 samples differ), so that `ttcl zoo train --only expr-prm` still gives the shipped weights."""
    from ttcl.runtime.tasks.expr import labeller

    q = "(2+2)*3; (2+2)*5"
    text = "2+2=4\n4*5=20\n2+2=4\n4*3=12\n#### 12,20"
    assert labeller.steps(q, text) == [1.0, 0.0, 0.0, 0.0, 0.0] and checker.steps(q, text) == [1.0] * 5
    assert labeller.steps(Q, RIGHT_OTHER_ORDER) == checker.steps(Q, RIGHT_OTHER_ORDER) == [1.0] * 6
