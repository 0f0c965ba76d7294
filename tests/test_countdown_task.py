"""The countdown task: generator, `reachable` against brute force, JSONL export (`ttcl data
countdown`), and the exact outcome, step and process checkers on hand-made right, wrong and
malformed solutions."""

from __future__ import annotations

import json
import random
from collections import Counter
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttcl.cli import main as ttcl_main
from ttcl.runtime.scoring import CheckScorer, make_scorer
from ttcl.runtime.tasks import available_checkers, get_checker
from ttcl.runtime.tasks.countdown import (
    MAX_STEPS,
    MIN_STEPS,
    NUMBER_MAX,
    NUMBER_MIN,
    VALUE_MAX,
    checker,
    combine,
    evaluate,
    generate,
    iter_jsonl,
    make_problems,
    parse_question,
    reachable,
)
from ttcl.runtime.values import Candidate, Candidates

Q = "3 7 5 2 -> 22"
# each derivation line carries the numbers left in brackets, as the generator writes it
RIGHT = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2"
# another derivation, and another expression, for the same question
RIGHT_OTHER = "7*2=14 [3 5 14]\n14+5=19 [3 19]\n19+3=22 [22]\n#### 7*2+5+3"
# the same expression as RIGHT_OTHER, reached in another order (two independent sub-steps)
RIGHT_OTHER_ORDER = "5+3=8 [7 2 8]\n7*2=14 [8 14]\n14+8=22 [22]\n#### 7*2+(5+3)"
# the bracket is optional
RIGHT_BARE = "7-3=4\n4*5=20\n20+2=22\n#### (7-3)*5+2"


# ------------------------------------------------------------------ generator


def test_generator_is_deterministic_in_the_seed() -> None:
    a = [p.to_json() for p in make_problems(40, range(MIN_STEPS, MAX_STEPS + 1), seed=5)]
    b = [p.to_json() for p in make_problems(40, range(MIN_STEPS, MAX_STEPS + 1), seed=5)]
    c = [p.to_json() for p in make_problems(40, range(MIN_STEPS, MAX_STEPS + 1), seed=6)]
    assert a == b
    assert a != c


def test_generator_draws_are_pinned() -> None:
    """The shipped countdown models train on these draws: a change to the generator's random
    draws changes their data, so it must be deliberate (and retrain them)."""
    first = make_problems(2, range(MIN_STEPS, MAX_STEPS + 1), seed=0)
    assert [p.question for p in first] == ["7 7 1 -> 49", "10 4 9 3 -> 61"]
    assert first[1].solution() == "9+10=19 [4 3 19]\n19*3=57 [4 57]\n4+57=61 [61]\n#### 4+(9+10)*3"


@pytest.mark.parametrize("steps", range(MIN_STEPS, MAX_STEPS + 1))
def test_every_generated_problem_is_solved_strictly_by_its_own_solution(steps: int) -> None:
    rng = random.Random(steps)
    for k, p in enumerate(make_problems(40 if steps <= 3 else 12, steps, seed=100 + steps)):
        assert p.steps == steps and len(p.numbers) == steps + 1
        assert all(NUMBER_MIN <= x <= NUMBER_MAX for x in p.numbers)
        assert 1 <= p.target <= VALUE_MAX and p.target not in p.numbers
        assert parse_question(p.question) == p
        assert reachable(p.numbers, p.target)
        for answer in (p.solution(), p.solution(rng)):  # the drawn derivation and a fresh random one
            assert checker.strict(p.question, answer), (p.question, answer)
            lines = checker.split_steps(answer)  # it stops once the target is made: at most steps + 1 lines
            assert 2 <= len(lines) <= steps + 1 and checker.steps(p.question, answer) == [1.0] * len(lines)
        if k < 5:
            solved = checker.solve(p.question)
            assert solved is not None and checker.outcome(p.question, f"#### {solved}") == 1.0


def test_difficulty_levels_cycle_and_bad_levels_are_refused() -> None:
    assert [p.steps for p in make_problems(8, [2, 5], seed=1)] == [2, 5] * 4
    for bad in (MIN_STEPS - 1, MAX_STEPS + 1):
        with pytest.raises(ValueError, match="steps must be in"):
            generate(bad, random.Random(0))
    with pytest.raises(ValueError, match="no difficulty levels"):
        make_problems(3, [], seed=0)


def test_jsonl_lines_are_gsm8k_style() -> None:
    rows = [json.loads(x) for x in iter_jsonl(make_problems(6, [3, 4], seed=2))]
    for r in rows:
        assert set(r) == {"question", "answer", "steps"}
        assert r["answer"].splitlines()[-1].startswith("#### ")
        assert 2 <= len(r["answer"].splitlines()) <= r["steps"] + 1  # it stops once the target is made
        assert checker.strict(r["question"], r["answer"])


# ------------------------------------------------------------------ reachable, against brute force


@cache
def _brute(pool: tuple[int, ...]) -> frozenset[int]:
    """Every value reachable by combining two available numbers at a time, in every order: the
    derivation search itself (a different algorithm from `reachable`'s split enumeration)."""
    if len(pool) == 1:
        return frozenset(pool) if 1 <= pool[0] <= VALUE_MAX else frozenset()
    out: set[int] = set()
    for i in range(len(pool)):
        for j in range(len(pool)):
            if i != j:
                for op in "+-*/":
                    v = combine(pool[i], op, pool[j])
                    if v is not None:
                        rest = tuple(sorted([x for k, x in enumerate(pool) if k not in (i, j)] + [v]))
                        out |= _brute(rest)
    return frozenset(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(NUMBER_MIN, NUMBER_MAX), min_size=1, max_size=5))
def test_reachable_matches_brute_force(pool: list[int]) -> None:
    n = len(pool)  # some of the numbers, each at most once
    want = set().union(*(_brute(tuple(sorted(pool[i] for i in range(n) if m >> i & 1))) for m in range(1, 1 << n)))
    got = {t for t in range(0, VALUE_MAX + 2) if reachable(pool, t)}
    assert got == set(want)


def test_reachable_edge_cases() -> None:
    assert not reachable([], 1)
    assert reachable([7], 7) and not reachable([7], 8)
    assert not reachable([10, 10, 1], 99)  # 10*10 = 100 is over VALUE_MAX
    assert not reachable([1] * (MAX_STEPS + 2), 1)  # more numbers than any question has
    assert reachable([3, 7, 5, 2], 22)


# ------------------------------------------------------------------ outcome


def test_registered_as_a_verifier() -> None:
    assert "countdown" in available_checkers()
    assert get_checker("countdown").name == "countdown"
    assert get_checker("countdown").outcome(Q, RIGHT) == 1.0


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        (RIGHT, 1.0),
        (RIGHT_OTHER, 1.0),
        (RIGHT_OTHER_ORDER, 1.0),
        ("#### (7-3)*5+2", 1.0),  # the outcome reads only the final expression
        ("####  ( 7 - 3 ) * 5 + 2 ", 1.0),
        ("#### 2+5*(7-3)", 1.0),
        ("#### (7-3)*5-2", 0.0),  # wrong value
        ("#### 7*3+3-2", 0.0),  # 22, but uses 3 twice and misses 5
        ("#### 5*3+7", 1.0),  # 22 from some of the numbers (each at most once): enough
        ("#### (7-3)*5+2+0", 0.0),  # a number that is not given
        ("#### 22", 0.0),
        ("#### (7-3)*5+2)", 0.0),
        ("#### ((7-3)*5+2", 0.0),
        ("#### -(3-7)*5+2", 0.0),  # no unary minus
        ("#### (7-3)5+2", 0.0),
        ("#### (\u0667-3)*5+2", 0.0),  # a non-ASCII digit
        (RIGHT.replace("#### ", ""), 0.0),
        ("", 0.0),
        ("####", 0.0),
        ("\x00\xff ####", 0.0),
    ],
)
def test_outcome(completion: str, score: float) -> None:
    assert checker.outcome(Q, completion) == score


@pytest.mark.parametrize(
    ("question", "expression"),
    [
        ("10 10 1 -> 99", "10*10-1"),  # 10*10 = 100 is over VALUE_MAX
        ("2 5 10 -> 7", "2-5+10"),  # 2-5 is not positive
        ("3 3 8 8 -> 24", "8/(3-8/3)"),  # 8/3 is not exact
        ("4 2 3 -> 6", "3/2*4"),  # 3/2 is not exact, though the value is a whole number
        ("5 5 9 -> 9", "5-5+9"),  # 5-5 = 0 is not positive
    ],
)
def test_outcome_keeps_every_operation_within_the_rules(question: str, expression: str) -> None:
    p = parse_question(question)
    assert p is not None
    ev = evaluate(expression)
    assert ev is not None and ev[0] == p.target and Counter(ev[1]) == Counter(p.numbers)  # right value, right numbers
    assert evaluate(expression, rules=True) is None
    assert checker.outcome(question, f"#### {expression}") == 0.0


def test_outcome_within_the_rules_is_reachable() -> None:
    """An expression the outcome accepts is a derivation under the rules, so `reachable` agrees."""
    rng, accepted = random.Random(9), 0
    for _ in range(300):
        p = generate(rng.randint(MIN_STEPS, 3), rng)
        nums = list(p.numbers)
        rng.shuffle(nums)
        text = str(nums[0])
        for x in nums[1:]:  # a random left-leaning expression over all the numbers
            text = f"({text}){rng.choice('+-*/')}{x}" if rng.random() < 0.5 else f"{x}{rng.choice('+-*/')}({text})"
        ev = evaluate(text, rules=True)
        if ev is not None:
            accepted += 1
            assert reachable(p.numbers, int(ev[0]))
            assert checker.outcome(f"{p.question.split(' ->')[0]} -> {int(ev[0])}", f"#### {text}") == 1.0
    assert accepted >= 30  # the property was exercised


# ------------------------------------------------------------------ steps (and the process scorer)


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT, [1.0] * 4),
        (RIGHT_OTHER, [1.0] * 4),
        (RIGHT_OTHER_ORDER, [1.0] * 4),
        (RIGHT_BARE, [1.0] * 4),
        # some of the numbers are enough: a shorter solution leaves 2 unused
        ("5*3=15 [7 2 15]\n15+7=22 [2 22]\n#### 5*3+7", [1.0] * 3),
        ("5*3=15\n15+7=22\n22/2=11", [1.0, 1.0, 0.0]),  # going on past the target loses it
        (" 7 - 3 = 4 \n\n3+... \n", [1.0, 0.0]),
        # the bracket, when written, must hold exactly the numbers left (in any order)
        ("7-3=4 [4 5 2]", [1.0]),
        ("7-3=4 [5 2]", [0.0]),
        ("7-3=4 [5 2 4 4]", [0.0]),
        ("7-3=4 [5 2 3]", [0.0]),
        ("7-3=4 []", [0.0]),
        ("7-3=4 [5 2 4]\n4*5=20 [2 20 5]", [1.0, 0.0]),
        ("7-3=4 [5 2 4", [0.0]),
        ("7-3=4 [5,2,4]", [0.0]),
        ("7-3=4 [5 2 4] and so on", [0.0]),
        ("3+7=10", [0.0]),  # right arithmetic, but a dead end: 10, 5, 2 cannot make 22
        ("7-3=4\n4*5=20\n2+20=22\n#### (7-3)*5+2", [1.0] * 4),  # operands in either order
        ("7-3=5", [0.0]),  # arithmetic slip
        ("7-3=4\n4*5=21\n21+2=23\n#### (7-3)*5+2", [1.0, 0.0, 0.0, 0.0]),  # the slip carries through
        ("7-4=3", [0.0]),  # 4 is not available yet
        ("7-3=4\n4*4=16", [1.0, 0.0]),  # only one 4
        ("3+3=6", [0.0]),  # only one 3
        ("7-3=4\n7*5=35", [1.0, 0.0]),  # 7 is used up
        ("7/2=3", [0.0]),  # division not exact
        ("3/7=0", [0.0]),
        ("7*5=35\n35*3=105", [0.0, 0.0]),  # over VALUE_MAX (and 7*5 is a dead end)
        ("3-7=-4", [0.0]),  # not positive
        ("7-3=4\n4*5=20\n20+2=22\n#### (7-3)*5-2", [1.0, 1.0, 1.0, 0.0]),  # answer expression wrong
        ("7-3=4\n4*5=20\n20+2=22\n#### (7-3)*5+2+3", [1.0, 1.0, 1.0, 0.0]),  # uses a number twice
        ("7-3=4\n4*5=20\n20+2=22\n#### 4*5+2", [1.0, 1.0, 1.0, 0.0]),  # intermediate values are not given
        (RIGHT + "\n1+1=2", [1.0] * 4 + [0.0]),  # text after the answer line
        (RIGHT + "\n" + "#### (7-3)*5+2", [1.0] * 4 + [0.0]),
        (RIGHT + "\nthe end", [1.0] * 4 + [0.0]),
        # malformed
        ("", []),
        ("\n \n", []),
        ("7-3=4=4", [0.0]),
        ("7-3=", [0.0]),
        ("seven minus three", [0.0]),
        ("<eos><pad>", [0.0]),
        ("7 - 3 = \u0664", [0.0]),  # a non-ASCII digit
    ],
)
def test_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores
    assert len(checker.split_steps(completion)) == len(scores)


def test_dead_end_is_a_dead_end() -> None:
    """The dead-end cases above are dead for the task's reason: the target is unreachable after them."""
    assert combine(3, "+", 7) == 10 and not reachable([10, 5, 2], 22)
    assert combine(7, "*", 5) == 35 and not reachable([35, 3, 2], 22)


def test_strict_and_first_error() -> None:
    for right in (RIGHT, RIGHT_OTHER, RIGHT_OTHER_ORDER, RIGHT_BARE):
        assert checker.strict(Q, right)
        assert checker.first_error(Q, right) is None
    assert not checker.strict(Q, "#### (7-3)*5+2")  # right answer, no derivation shown
    assert not checker.strict(Q, "3+7=10\n#### (7-3)*5+2")  # right answer after a dead end
    assert not checker.strict(Q, RIGHT + "\n1+1=2")
    assert checker.first_error(Q, "7-3=4\n4*5=20\n20+5=25") == 2
    assert checker.first_error(Q, "3+7=10\n10*2=20") == 0


@pytest.mark.parametrize("junk", [None, 3, b"#### (7-3)*5+2", ["#### (7-3)*5+2"], {"a": 1}])
def test_never_raises_on_non_text(junk: object) -> None:
    assert checker.extract(junk) is None
    assert checker.outcome(Q, junk) == 0.0
    assert checker.steps(Q, junk) == []
    assert checker.split_steps(junk) == []
    assert not checker.strict(Q, junk)
    assert checker.outcome(junk, RIGHT) == 0.0
    assert checker.steps(junk, RIGHT) == [0.0] * 4
    assert not checker.strict(junk, RIGHT)
    assert checker.solve(junk) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "question",
    ["", "3 7 5 2", "3 7 -> 22", "3 7 5 2 -> ", "3 7 5 2 -> -22", "3 7 5 2 => 22", "1 2 3 4 5 6 7 -> 8",
     "\u0663 7 5 2 -> 22", "3 7 5 2 -> 22 23"],
)
def test_malformed_questions_score_zero(question: str) -> None:
    assert parse_question(question) is None
    assert checker.outcome(question, RIGHT) == 0.0
    assert checker.steps(question, RIGHT) == [0.0] * 4
    assert checker.solve(question) is None


def test_unsolvable_question_has_no_solution_and_no_right_step() -> None:
    q = "10 10 1 -> 99"
    assert checker.solve(q) is None
    assert checker.steps(q, "10*10=100") == [0.0]
    assert checker.steps(q, "10-1=9") == [0.0]  # every step is a dead end


@pytest.mark.parametrize(
    "completion",
    [
        "#### " + "1+" * 200_000 + "1",  # a huge expression
        "#### " + "(" * 500 + "7" + ")" * 500,  # deep parentheses
        "#### " + "(" * 10 + "7-3" + ")" * 10 + "*5+2",  # deeper than the parser goes
        "7-3=4\n" * 50_000,  # a huge number of lines
        "#### " + "9" * 100_000,
        "7" * 100_000 + "-3=4",
        "#### (7-3)*5+2" + " " * 100_000 + "x",
    ],
)
def test_huge_or_deep_input_never_raises(completion: str) -> None:
    assert checker.outcome(Q, completion) == 0.0
    scores = checker.steps(Q, completion)
    assert len(scores) == len(checker.split_steps(completion))
    assert not checker.strict(Q, completion)


def test_many_repeated_lines_score_zero_after_the_first() -> None:
    completion = "7-3=4\n" * 20_000 + "#### (7-3)*5+2"
    assert checker.outcome(Q, completion) == 1.0  # the outcome reads the answer only
    assert checker.steps(Q, completion) == [1.0] + [0.0] * 20_000
    assert not checker.strict(Q, completion)


def test_moderately_nested_parentheses_are_read() -> None:
    assert checker.outcome(Q, "#### " + "(" * 9 + "7-3" + ")" * 9 + "*5+2") == 1.0


# ------------------------------------------------------------------ the process scorer


def _cands(*texts: str) -> Candidates:
    return Candidates(tuple(Candidate(prompt=Q + "\n", text=t) for t in texts))


def _prefixes(solution: str) -> list[str]:
    lines = solution.split("\n")
    return ["\n".join(lines[:k]) for k in range(1, len(lines) + 1)]


@pytest.mark.parametrize("agg", ["last", "min", "prod"])
def test_prefixes_of_a_right_solution_score_one(agg: str) -> None:
    for right in (RIGHT, RIGHT_OTHER, RIGHT_OTHER_ORDER, RIGHT_BARE):
        prefixes = _prefixes(right)
        [scored] = CheckScorer("countdown", agg).score([(Q, _cands(*prefixes))])
        assert not isinstance(scored, Exception)
        assert scored.scores == [1.0] * len(prefixes)
        assert [len(s or ()) for s in scored.steps] == list(range(1, len(prefixes) + 1))
        assert all(s == (1.0,) * len(s) for s in scored.steps if s is not None)


def test_check_as_exact_process_scorer() -> None:
    dead_end = "7-3=4 [5 2 4]\n4*2=8 [5 8]"  # right arithmetic and bracket; 8 and 5 cannot make 22
    assert not reachable([8, 5], 22)
    cands = _cands("7-3=4 [5 2 4]", dead_end, dead_end + "\n8+5=13 [13]", "7-3=4\n4*5=21", RIGHT, "#### (7-3)*5+2")
    [outcome] = CheckScorer("countdown").score([(Q, cands)])
    [last] = CheckScorer("countdown", "last").score([(Q, cands)])
    [smin] = CheckScorer("countdown", "min").score([(Q, cands)])
    [prod] = CheckScorer("countdown", "prod").score([(Q, cands)])
    for s in (outcome, last, smin, prod):
        assert not isinstance(s, Exception)
    assert outcome.scores == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]  # partial solutions have no answer yet
    # the answer line alone has the right expression but no chain of thought: not a right step
    assert last.scores == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert smin.scores == prod.scores == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert not checker.strict(Q, "7-3=4 [5 2 4]\n#### (7-3)*5+2")  # a partial derivation: not strict
    assert last.steps[1] == (1.0, 0.0)  # the dead-end step scores 0
    assert last.steps[2] == (1.0, 0.0, 0.0)


def test_check_countdown_compiles_into_the_verifier_ref() -> None:
    from ttcl.compiler.pipeline import compile_program

    src = '''ttcl 1
model policy = "ttcl:arith-s"
verifier oracle = check("countdown", agg = "last")
verifier exact = check("countdown")
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
    assert refs["oracle"].kind == "check" and refs["oracle"].checker == "countdown" and refs["oracle"].agg == "last"
    assert refs["exact"].checker == "countdown" and refs["exact"].agg is None
    # the scorer the runtime builds from each declaration (runtime/scoring.py's make_scorer)
    cands = _cands("7-3=4", "3+7=10", RIGHT)
    [oracle] = make_scorer(refs["oracle"]).score([(Q, cands)])
    [exact] = make_scorer(refs["exact"]).score([(Q, cands)])
    assert not isinstance(oracle, Exception) and not isinstance(exact, Exception)
    assert oracle.scores == [1.0, 0.0, 1.0]  # right so far / dead end / right
    assert exact.scores == [0.0, 0.0, 1.0]


# ------------------------------------------------------------------ `ttcl data countdown`


def test_cli_data_countdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert ttcl_main(["data", "countdown", "--steps", "2..5", "--n", "8", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["steps"] for r in rows] == [2, 3, 4, 5] * 2
    assert all(checker.strict(r["question"], r["answer"]) for r in rows)
    assert ttcl_main(["data", "countdown", "--steps", "2..5", "--n", "8", "--seed", "1"]) == 0
    assert capsys.readouterr().out == out
    assert ttcl_main(["data", "countdown", "--steps", "4", "--n", "0"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "1..3"), "invalid value for --steps: 2 to 5 (the count of numbers given minus one: 3 to 6 numbers), got '1..3'"),
        (("--steps", "2..6"), "invalid value for --steps: 2 to 5 (the count of numbers"),
        (("--steps", "6"), "invalid value for --steps: 2 to 5 (the count of numbers"),
        (("--steps", "five"), "invalid value for --steps: steps must be an integer N or a range A..B"),
        (("--steps", "5..2"), "invalid value for --steps"),
        (("--n", "many"), "invalid value for --n: expected an integer, got 'many'"),
        (("--n", "-1"), "invalid value for --n: must be >= 0, got -1"),
        (("--seed", "1.5"), "invalid value for --seed: expected an integer, got '1.5'"),
    ],
)
def test_cli_data_countdown_bad_arguments(args: tuple[str, ...], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert ttcl_main(["data", "countdown", *args]) == 2
    err = capsys.readouterr()
    assert err.out == ""
    assert message in err.err and len(err.err.strip().splitlines()) == 1
    assert "Traceback" not in err.err


# ---------------------------------------------------------------- search traces (chain style `search`)

# a failed attempt marked dead, then one that repeats its live prefix and makes the target
SEARCH = "7-3=4 [5 2 4]\n4+5=9 [2 9]\n9*2=18 [18] x\n7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2"


@pytest.mark.parametrize(("completion", "scores"), [
    (SEARCH, [1.0] * 7),
    # the target restated after each state, as style `search-target` writes it
    ("7-3=4 [5 2 4] -> 22\n4+5=9 [2 9] -> 22\n9*2=18 [18] -> 22 x\n7*2=14 [3 5 14] -> 22\n14+5=19 [3 19] -> 22\n"
     "19+3=22 [22] -> 22\n#### 7*2+5+3", [1.0] * 7),
    # a restated target that is not the question's
    ("7-3=4 [5 2 4] -> 21\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2", [0.0] * 4),
    # marked dead while the target is still reachable from what is left
    ("7-3=4 [5 2 4]\n4*5=20 [2 20] x\n7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2",
     [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    # marked dead on the line that makes the target
    ("7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22] x\n#### (7-3)*5+2", [1.0, 1.0, 0.0, 0.0]),
    # an abandoned attempt with wrong arithmetic stays wrong
    ("7-3=4 [5 2 4]\n4+5=10 [2 10]\n10*2=20 [20] x\n7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2",
     [1.0] + [0.0] * 6),
    # a dead end not yet marked scores 0 (the attempt is lost), and so does answering from it
    ("7-3=4 [5 2 4]\n4+5=9 [2 9]\n9*2=18 [18]\n#### (7-3+5)*2", [1.0, 0.0, 0.0, 0.0]),
    # the attempt after a dead mark starts from the question's numbers, not from what was left
    ("7-3=4 [5 2 4]\n4+5=9 [2 9]\n9*2=18 [18] x\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2",
     [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]),
])
def test_search_trace_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores
    assert checker.strict(Q, completion) == (min(scores) == 1.0)


def test_search_trace_prefixes_score_as_a_value_function() -> None:
    """A prefix ending inside an attempt that has gone dead scores 0 until the dead mark, then 1."""
    lines = SEARCH.split("\n")
    last = [checker.steps(Q, "\n".join(lines[: i + 1]))[-1] for i in range(len(lines))]
    assert last == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("style", ["search", "search-target", "search-retry"])
@pytest.mark.parametrize("steps", range(MIN_STEPS, MAX_STEPS + 1))
def test_search_traces_are_strictly_right(style: str, steps: int) -> None:
    rng = random.Random(steps)
    dead = 0
    for _ in range(60):
        p = generate(steps, rng)
        text = p.solution(rng, style)
        assert checker.strict(p.question, text), text
        assert (" -> " in text) == (style == "search-target")
        dead += text.count(" x\n")
    assert dead > 0  # the traces show failed attempts


def test_search_style_needs_an_rng_and_a_known_name() -> None:
    p = generate(3, random.Random(0))
    with pytest.raises(ValueError, match="rng"):
        p.solution(None, "search")
    with pytest.raises(ValueError, match="chain style"):
        p.solution(random.Random(0), "bogus")


def test_search_retry_never_repeats_a_failed_move_while_another_is_left() -> None:
    from ttcl.runtime.tasks.countdown_search import _key, _moves, search_trace

    rng = random.Random(7)
    for steps in (2, 3):
        for _ in range(40):
            p = generate(steps, rng)
            attempts = search_trace(p, rng, guide_range=(0.0, 0.3), max_chars=560, retry=0.7)
            failed: dict[tuple, set] = {}
            for lines in attempts[:-1]:
                node, last = tuple(lines[:-1]), _key(lines[-1])
                pool = list(p.numbers)
                for a, _, b, v in node:
                    pool.remove(a)
                    pool.remove(b)
                    pool.append(v)
                every = {_key((pool[i], op, pool[j], v)) for i, j, op, v in _moves(pool)}
                assert last not in failed.get(node, set()) or failed[node] >= every
                failed.setdefault(node, set()).add(last)
