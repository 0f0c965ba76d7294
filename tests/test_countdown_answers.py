"""Countdown's canonical answer text (`runtime/tasks/countdown_answers.py`): one computation
written in another order is one answer, another computation is another, the outcome never
changes, and a vote over a pool counts a class of expressions together."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.shipped import available
from ttcl.cli import main as ttcl_main
from ttcl.runtime.tasks.countdown import Expr, checker, evaluate, make_problems
from ttcl.runtime.tasks.countdown_answers import canonical
from ttcl.runtime.values import Candidate, Candidates, vote

Q = "3 7 5 2 -> 22"


@pytest.mark.parametrize("group", [
    ["(7-3)*5+2", "2+(7-3)*5", "2+5*(7-3)", "5*(7-3)+2", " ( 7 - 3 ) * 5 + 2 "],
    ["7*2+5+3", "7*2+(5+3)", "3+(5+2*7)", "(3+5)+7*2"],
    ["(2+3)*(4+1)", "(1+4)*(3+2)", "(3+2)*(1+4)"],
    ["6*3/2", "3*6/2"],
    ["7-(3+2)", "7-(2+3)"],
])
def test_one_computation_in_any_order_is_one_answer(group: list[str]) -> None:
    assert len({canonical(t) for t in group}) == 1


@pytest.mark.parametrize(("a", "b"), [
    ("8-(3-1)", "8-3+1"),  # another computation (6 then 7, against 5 then 6): not merged
    ("7-3-2", "7-(3+2)"),
    ("6/(2/3)", "6*3/2"),  # the same value, another computation
    ("(7-3)*5+2", "7*5-3*5+2"),  # the same value, other numbers
    ("1+2", "2-1"),
])
def test_another_computation_is_another_answer(a: str, b: str) -> None:
    assert canonical(a) != canonical(b)


@pytest.mark.parametrize("text", ["abc", "7-", "(7-3", "7-3)", "7 3", "", "((((((((((1))))))))))", "1+" * 80 + "1"])
def test_text_that_does_not_parse_is_kept_as_written(text: str) -> None:
    assert canonical(text) == text.strip()


@pytest.mark.parametrize(("question", "answer"), [("10 5 7 -> 3", "1 0-7"), ("3 4 5 -> 48", "3+4 5")])
def test_inner_spaces_never_join_numbers(question: str, answer: str) -> None:
    """Found by QA: an unparseable answer lost its spaces and became another, right, expression."""
    assert checker.outcome(question, f"#### {answer}") == 0.0
    assert checker.extract(f"#### {answer}") == answer


def test_a_literal_zero_keeps_its_place_after_the_positive_terms() -> None:
    """Found by QA: `5+0+0` sorted to `0+0+5`, whose first partial sum 0 breaks the rules."""
    assert canonical("5+0+0") == "5+0+0" and canonical("0+5+0") == "5+0+0"
    assert checker.outcome("5 0 0 -> 5", "#### 0+5+0") == checker.outcome("5 0 0 -> 5", "#### " + canonical("0+5+0"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/() ", max_size=40))
def test_the_canonical_text_keeps_within_the_answer_bound(text: str) -> None:
    """`ttcl check` bounds an answer by twice its text plus one (compiler.budget.answer_len); the canonical form
    adds parentheses (`9-2+3` -> `3+(9-2)`), never more than one pair per operator."""
    assert len(canonical(text)) <= 2 * len(text) + 1
    assert len(checker.extract("#### " + text) or "") <= 2 * len("#### " + text) + 1


def test_an_extractor_that_writes_past_the_bound_fails_the_item() -> None:
    from ttcl.runtime.extract import ExtractError, make_extractor

    assert canonical("8-2+6-1+5-3") == "5+(6+(8-2)-1)-3"  # 11 characters read as 15: the growth is real
    assert make_extractor(None, checker.extract)("#### 8-2+6-1+5-3") == "5+(6+(8-2)-1)-3"
    assert make_extractor(None)(".5") == "0.5"  # 2 characters as 3, within 2 * 2 + 1
    wordy = make_extractor(None, lambda text: text * 3)  # a plugin's extractor
    with pytest.raises(ExtractError, match="returned 18 characters from a text of 6"):
        wordy("#### 7")


def _shuffled(e: Expr, rng: random.Random) -> Expr:
    """The same computation with the operands of every `+` and `*` in a random order."""
    if e.op is None:
        return e
    assert e.left is not None and e.right is not None
    left, right = _shuffled(e.left, rng), _shuffled(e.right, rng)
    if e.op in "+*" and rng.random() < 0.5:
        left, right = right, left
    return Expr(e.value, e.op, left, right)


def _tree(numbers: tuple[int, ...], lines: tuple[tuple[int, str, int, int], ...]) -> Expr:
    pool = [Expr(n) for n in numbers]
    for a, op, b, v in lines:
        left = pool.pop(next(k for k, x in enumerate(pool) if x.value == a))
        right = pool.pop(next(k for k, x in enumerate(pool) if x.value == b))
        pool.append(Expr(v, op, left, right))
    return pool[-1]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(2, 5))
def test_generated_solutions_in_any_order_agree_and_stay_right(seed: int, steps: int) -> None:
    p = make_problems(1, steps, seed=seed)[0]
    tree = _tree(p.numbers, p.made_by)
    rng = random.Random(seed)
    texts = {_shuffled(tree, rng).text() for _ in range(6)}
    keys = {canonical(t) for t in texts}
    assert len(keys) == 1
    key = keys.pop()
    assert canonical(key) == key  # a fixed point
    for t in texts:
        assert checker.outcome(p.question, f"#### {t}") == 1.0
    assert checker.outcome(p.question, f"#### {key}") == 1.0


_EXPRESSION = st.recursive(
    st.integers(1, 120).map(str),
    lambda inner: st.tuples(inner, st.sampled_from("+-*/"), inner, st.booleans()).map(
        lambda t: f"({t[0]}{t[1]}{t[2]})" if t[3] else f"{t[0]}{t[1]}{t[2]}"),
    max_leaves=7,
)


@settings(max_examples=300, deadline=None)
@given(_EXPRESSION, st.lists(st.integers(1, 120), min_size=3, max_size=6), st.integers(1, 99))
def test_value_numbers_rules_and_outcome_never_change(text: str, numbers: list[int], target: int) -> None:
    """Any expression, within the rules or not: the canonical text has the same value, uses the
    same numbers, is within the rules exactly when the written one is, and scores the same."""
    key = canonical(text)
    for rules in (False, True):
        a, b = evaluate(text, rules=rules), evaluate(key, rules=rules)
        assert (a is None) == (b is None), (text, key, rules)
        if a is not None and b is not None:
            assert a[0] == b[0] and sorted(a[1]) == sorted(b[1])
    q = f"{' '.join(map(str, numbers))} -> {target}"
    assert checker.outcome(q, f"#### {text}") == checker.outcome(q, f"#### {key}")
    assert canonical(key) == key


def test_extract_gives_the_canonical_text() -> None:
    assert checker.extract("7-3=4\n4*5=20\n20+2=22\n#### 2 + (7-3)*5") == canonical("(7-3)*5+2")
    assert checker.extract("no marker here") is None


def test_a_vote_counts_one_computation_written_three_ways_together() -> None:
    """As written, the three spellings of one solution split their votes and a wrong answer
    written twice the same way wins; read by the checker they are one answer, and it wins."""
    texts = ["#### (7-3)*5+2", "#### 2+(7-3)*5", "#### 2+5*(7-3)", "#### 7*3+1", "#### 7*3+1"]
    as_written = Candidates(tuple(Candidate(prompt=Q, text=t, answer=t.removeprefix("#### ")) for t in texts))
    assert vote(as_written).value == "7*3+1"
    read = Candidates(tuple(Candidate(prompt=Q, text=t, answer=checker.extract(t)) for t in texts))
    won = vote(read).value
    assert won == canonical("(7-3)*5+2")
    assert checker.outcome(Q, f"#### {won}") == 1.0


needs_model = pytest.mark.skipif(not available("ttcl:countdown-s"), reason="bundled countdown-s not installed")

VOTE = """ttcl 1
model policy = "ttcl:countdown-s"
{extract}
strategy main(question: text[<=30]) -> answer {{
    return vote(sample(policy, "{{question}}\\n", n = 8, max_tokens = 117, temperature = 0.7))
}}
"""


@needs_model
def test_a_program_votes_with_the_tasks_extractor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`extract "countdown"` reads a program's answers with the countdown checker: the vote counts
    one computation's spellings together, and the gold is read the same way. Without it the vote
    is over the text as written."""
    from ttcl.runtime.tasks.countdown import iter_jsonl

    data = tmp_path / "cd.jsonl"
    data.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(12, [2, 3], seed=4242))))
    runs = {}
    for name, extract in (("task", 'extract "countdown"'), ("written", 'extract "####"')):
        prog = tmp_path / f"{name}.ttc"
        prog.write_text(VOTE.format(extract=extract))
        code = ttcl_main(["run", str(prog), "--dataset", str(data), "--device", "cpu", "--json"])
        out = capsys.readouterr()
        assert code == 0, out.err
        runs[name] = json.loads(out.out)["results"]
    golds = [json.loads(line)["answer"].rsplit("#### ", 1)[1] for line in data.read_text().splitlines()]
    task = runs["task"]
    assert [r["gold"] for r in task] == [canonical(g) for g in golds]
    assert all(r["answer"] is None or canonical(r["answer"]) == r["answer"] for r in task)
    assert all(r["correct"] == (r["answer"] == r["gold"]) for r in task)
    # the same samples (same seed): as written, the gold is as the dataset has it
    assert [r["gold"] for r in runs["written"]] == golds
    assert any(r["answer"] != canonical(r["answer"]) for r in runs["written"] if r["answer"]), "every text already canonical"
