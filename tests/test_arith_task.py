"""The arith task: generator, JSONL export, and the exact outcome and step checkers."""

from __future__ import annotations

import json

import pytest

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.tasks import Checker, available_checkers, get_checker
from ttcl.runtime.tasks.arith import (
    VALUE_MAX,
    checker,
    iter_jsonl,
    make_problems,
    parse_question,
    parse_steps_spec,
)

Q = "37 +12 *3 -5"
RIGHT = "37+12=49\n49*3=147\n147-5=142\n#### 142"


def test_problem_solution_and_answer() -> None:
    p = parse_question(Q)
    assert p is not None
    assert p.steps == 3
    assert p.values == [37, 49, 147, 142]
    assert p.answer == 142
    assert p.solution == RIGHT
    assert p.prompt == Q + "\n"


def test_generator_is_seeded_and_in_range() -> None:
    a = make_problems(200, range(1, 9), seed=3)
    b = make_problems(200, range(1, 9), seed=3)
    c = make_problems(200, range(1, 9), seed=4)
    assert a == b
    assert a != c
    assert [p.steps for p in a[:9]] == [1, 2, 3, 4, 5, 6, 7, 8, 1]
    for p in a:
        assert all(0 <= v <= VALUE_MAX for v in p.values)
        assert parse_question(p.question) == p
        assert checker.outcome(p.question, p.solution) == 1.0
        assert checker.steps(p.question, p.solution) == [1.0] * (p.steps + 1)


def test_value_bound_knob() -> None:
    hard = make_problems(300, range(1, 9), seed=0, value_max=999)
    assert max(max(p.values) for p in hard) > 99
    assert all(0 <= v <= 999 for p in hard for v in p.values)
    assert all(checker.outcome(p.question, p.solution) == 1.0 for p in hard)
    with pytest.raises(ValueError):
        make_problems(1, 3, seed=0, value_max=5)
    with pytest.raises(ValueError):
        make_problems(1, 0, seed=0)


def test_generator_goes_beyond_eight_steps() -> None:
    p = make_problems(1, 12, seed=0)[0]
    assert p.steps == 12
    assert checker.outcome(p.question, p.solution) == 1.0


def test_jsonl_lines_are_gsm8k_style() -> None:
    lines = list(iter_jsonl(make_problems(3, [2], seed=0)))
    rows = [json.loads(x) for x in lines]
    assert [r["steps"] for r in rows] == [2, 2, 2]
    for r in rows:
        assert set(r) == {"question", "answer", "steps"}
        assert r["answer"].splitlines()[-1].startswith("#### ")
        assert checker.outcome(r["question"], r["answer"]) == 1.0


@pytest.mark.parametrize(
    ("spec", "levels"),
    [("3", [3]), ("1..8", [1, 2, 3, 4, 5, 6, 7, 8]), (" 2 .. 4 ", [2, 3, 4]), ("5..5", [5])],
)
def test_steps_spec(spec: str, levels: list[int]) -> None:
    assert parse_steps_spec(spec) == levels


@pytest.mark.parametrize("spec", ["", "0", "8..1", "a..b", "1-8", "1..", "..3", "-2"])
def test_bad_steps_spec(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_steps_spec(spec)


# ------------------------------------------------------------------ extract / outcome


@pytest.mark.parametrize(
    ("completion", "extracted"),
    [
        (RIGHT, "142"),
        ("#### 7", "7"),
        ("####7", "7"),
        ("x\n####   12  \nmore", "12"),
        ("#### 1\n#### 2", "1"),  # the first marker wins
        ("no marker", None),
        ("####", None),
        ("####   \n5", None),
        ("", None),
        ("#### abc", "abc"),
    ],
)
def test_extract(completion: str, extracted: str | None) -> None:
    assert checker.extract(completion) == extracted


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        (RIGHT, 1.0),
        ("#### 142", 1.0),  # the outcome checker reads only the final answer
        ("#### +142", 1.0),
        ("37+12=50\n#### 142", 1.0),
        ("37+12=49\n49*3=147\n147-5=142\n#### 141", 0.0),
        ("37+12=49\n49*3=147\n147-5=142", 0.0),  # no marker
        ("#### 142.5", 0.0),
        ("#### 1 4 2", 0.0),
        ("#### -142", 0.0),
        ("", 0.0),
        ("\x00\xff garbage ####", 0.0),
    ],
)
def test_outcome(completion: str, score: float) -> None:
    assert checker.outcome(Q, completion) == score


@pytest.mark.parametrize("question", ["", "what is 2+2?", "37 +", "+12 *3", "37 /2", "1 2 3"])
def test_outcome_on_unparseable_question_is_zero(question: str) -> None:
    assert checker.outcome(question, "#### 4") == 0.0
    assert checker.steps(question, "2+2=4\n#### 4") == [0.0, 0.0]


def test_question_with_prompt_separator_parses() -> None:
    assert checker.outcome(Q + "\n", RIGHT) == 1.0
    assert checker.solve(Q) == "142"
    assert checker.solve("nonsense") is None


# ------------------------------------------------------------------ steps


@pytest.mark.parametrize(
    ("completion", "scores"),
    [
        (RIGHT, [1.0, 1.0, 1.0, 1.0]),
        (" 37 + 12 = 49 \n\n49 * 3 = 147\n147-5=142\n####142\n", [1.0, 1.0, 1.0, 1.0]),
        ("37+12=50\n50*3=150\n150-5=145\n#### 145", [0.0, 0.0, 0.0, 0.0]),
        ("37+12=49\n49*3=148\n148-5=143\n#### 143", [1.0, 0.0, 0.0, 0.0]),
        ("37+12=49\n49*3=147\n147-5=143\n#### 143", [1.0, 1.0, 0.0, 0.0]),
        ("37+12=49\n49*3=147\n147-5=142\n#### 143", [1.0, 1.0, 1.0, 0.0]),
        # right numbers, wrong operation or operand
        ("37-12=25\n25*3=75\n75-5=70\n#### 70", [0.0, 0.0, 0.0, 0.0]),
        ("37+12=49\n49*4=196\n196-5=191\n#### 191", [1.0, 0.0, 0.0, 0.0]),
        # a right result computed from the wrong running value
        ("37+12=49\n48*3=147\n147-5=142\n#### 142", [1.0, 0.0, 0.0, 0.0]),
        # skipped step: the answer line comes where step 3 belongs
        ("37+12=49\n49*3=147\n#### 142", [1.0, 1.0, 0.0]),
        # correct chain, but text after the answer line
        (RIGHT + "\n1+1=2", [1.0, 1.0, 1.0, 1.0, 0.0]),
        # an extra line inside the chain
        ("37+12=49\nhmm\n49*3=147\n147-5=142\n#### 142", [1.0, 0.0, 0.0, 0.0, 0.0]),
        # truncated mid-solution
        ("37+12=49\n49*3=1", [1.0, 0.0]),
        ("37+12=49\n49*3=147", [1.0, 1.0]),
        # malformed
        ("", []),
        ("\n\n  \n", []),
        ("#### 142", [0.0]),
        ("37+12=49=49\n#### 142", [0.0, 0.0]),
        ("37+12=\n#### 142", [0.0, 0.0]),
        ("<eos><pad>", [0.0]),
        ("37 plus 12 is 49", [0.0]),
    ],
)
def test_steps(completion: str, scores: list[float]) -> None:
    assert checker.steps(Q, completion) == scores
    assert len(checker.split_steps(completion)) == len(scores)


def test_first_error() -> None:
    assert checker.first_error(Q, RIGHT) is None
    assert checker.first_error(Q, "37+12=49\n49*3=148\n#### 143") == 1


def test_split_steps() -> None:
    assert checker.split_steps(RIGHT) == ["37+12=49", "49*3=147", "147-5=142", "#### 142"]
    assert checker.split_steps("a\r\n\n b ") == ["a", "b"]


@pytest.mark.parametrize("junk", [None, 3, b"#### 142", ["#### 142"]])
def test_never_raises_on_non_text(junk: object) -> None:
    assert checker.extract(junk) is None  # type: ignore[arg-type]
    assert checker.outcome(Q, junk) == 0.0  # type: ignore[arg-type]
    assert checker.steps(Q, junk) == []  # type: ignore[arg-type]
    assert checker.outcome(junk, "#### 1") == 0.0  # type: ignore[arg-type]


def test_every_prefix_and_single_char_corruption_is_scored_consistently() -> None:
    """For every corruption of the right answer the step scores stay a 1...1 0...0 prefix,
    and the outcome is 1 exactly when the final answer still reads 142."""
    variants = [RIGHT[:i] for i in range(len(RIGHT) + 1)]
    for i, ch in enumerate(RIGHT):
        for repl in "0123456789+-*=# \nx":
            if repl != ch:
                variants.append(RIGHT[:i] + repl + RIGHT[i + 1 :])
    for text in variants:
        s = checker.steps(Q, text)
        assert s == sorted(s, reverse=True)
        assert set(s) <= {0.0, 1.0}
        got = checker.extract(text)
        assert checker.outcome(Q, text) == (1.0 if got is not None and got.lstrip("+").isdigit() and int(got) == 142 else 0.0)
        if s and s[-1] == 1.0 and len(s) == 4:
            assert checker.outcome(Q, text) == 1.0


# ------------------------------------------------------------------ registry


def test_registry_entry_point_and_protocol() -> None:
    c = get_checker("arith")
    assert c is checker
    assert isinstance(c, Checker)
    assert c.name == "arith"
    assert "arith" in available_checkers()


def test_unknown_checker_did_you_mean() -> None:
    with pytest.raises(TtclRuntimeError, match=r"unknown checker 'arth'; did you mean 'arith'\?"):
        get_checker("arth")
    with pytest.raises(TtclRuntimeError, match="unknown checker 'zzz' \\(known: arith"):
        get_checker("zzz")


def test_numbers_past_pythons_digit_limit_are_wrong_never_an_exception() -> None:
    """int() refuses more than 4,300 digits: `#### 9…9` (a hosted model writes it in about 1.4k tokens) raised
    ValueError, and `verify(check("arith"))` failed the whole item, right samples and all (QA pass)."""
    big = "9" * 5000
    assert checker.outcome(Q, f"#### {big}") == 0.0
    assert checker.steps(Q, f"37+12={big}\n#### 142") == [0.0, 0.0]
    assert checker.steps(Q, f"37+12=49\n49*3=147\n147-5=142\n#### {big}") == [1.0, 1.0, 1.0, 0.0]
    assert checker.first_error(Q, f"#### {big}") == 0
    # a question with such a number (or whose running value grows past 10**4000) is not an arith question
    for q in ("1" + "0" * 5000 + " +1", "9" + " *99999" * 1000):
        assert not checker.reads(q) and checker.solve(q) is None and checker.outcome(q, "#### 1") == 0.0


def test_long_questions_take_linear_time_and_little_memory() -> None:
    """A run of spaces made the question regex backtrack (40k spaces: 4.6 s; a 1 MiB line: about 45 min), and a
    question of 100k `*9` kept every running value (2 GB) (QA pass)."""
    import time

    t = time.perf_counter()
    assert not checker.reads("1 +1" + " " * 200_000 + "x")
    assert not checker.reads("9" + " *9" * 300_000)  # more operations than a question has (1,000)
    assert checker.outcome("9" + " *9" * 1000, "#### " + str(9**1001)) == 1.0  # the generator's most
    assert time.perf_counter() - t < 30  # quadratic before: 144 s on this machine; linear: under 1 s


def test_the_answer_step_reads_the_answer_as_outcome_does() -> None:
    """`#### +142` was right by outcome and wrong as the answer step, so a right solution was not strict."""
    for answer in ("+142", " 142 ", "\u00a0142"):
        text = f"37+12=49\n49*3=147\n147-5=142\n####{answer}"
        assert checker.outcome(Q, text) == 1.0 and checker.steps(Q, text) == [1.0] * 4
