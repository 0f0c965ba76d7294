"""The free ops: selection, statistics, templates and predicates, with exact results."""

from __future__ import annotations

import json
import math

import pytest

from ttcl.compiler import ast
from ttcl.compiler.dag import PromptPart
from ttcl.runtime.ops import OpError, eval_predicate, fmt_number, render
from ttcl.runtime.values import (
    Answer,
    Candidate,
    Candidates,
    agreement,
    best,
    entropy,
    fallback_answer,
    top,
    vote,
)


def cands(*pairs: tuple[str | None, float | None]) -> Candidates:
    return Candidates(tuple(Candidate("q\n", f"t{i}", a, s) for i, (a, s) in enumerate(pairs)))


def test_vote_majority_weighted_and_ties() -> None:
    c = cands(("3", 0.1), ("4", 0.9), ("3", 0.2), (None, 1.0))
    assert vote(c) == Answer("3", 2.0, 4)
    assert vote(c, weighted=True).value == "4"
    assert vote(cands(("5", None), ("6", None))).value == "5"  # tie: the earliest answer
    assert vote(cands((None, 1.0))) == Answer(None, 0.0, 1)


def test_best_and_top_rank_by_score_stably() -> None:
    c = cands(("1", 0.5), ("2", None), ("3", 0.9), ("4", 0.9))
    assert best(c).value == "3"
    assert [x.answer for x in top(c, 3).items] == ["3", "4", "1"]
    assert best(cands((None, 0.9), ("7", 0.1))).value == "7"


def test_statistics() -> None:
    c = cands(("1", 0.5), ("1", 0.1), ("2", 0.3), (None, None))
    assert agreement(c) == 0.5
    assert entropy(c) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert agreement(Candidates()) == 0.0


def test_fallback_prefers_the_latest_answer() -> None:
    assert fallback_answer([cands(("1", None)), Answer("9"), cands(("2", None))]).value == "9"
    assert fallback_answer([cands(("1", None), ("2", 0.9), ("2", None))]).value == "2"
    assert fallback_answer([]).value is None


def test_render_templates() -> None:
    c = cands(("42", 0.75))
    parts = [PromptPart(text="Q: "), PromptPart(path=["question"], source="in"), PromptPart(text=" / "),
             PromptPart(path=["c", "text"]), PromptPart(text=" / "), PromptPart(path=["c", "score"])]
    assert render(parts, {"in": "1 +1"}, {"c": c.items[0]}) == "Q: 1 +1 / t0 / 0.75"
    assert render([PromptPart(path=["x", "answer"], source="x")], {"x": c}) == "42"
    with pytest.raises(OpError, match=r"template field \{feedback\} has no value here"):
        render([PromptPart(path=["feedback"])], {})
    assert (fmt_number(3.0), fmt_number(1 / 3), fmt_number(True)) == ("3", "0.333333", "true")


def test_filter_predicate() -> None:
    expr = ast.BoolOp(op="and", left=ast.Compare(op=">=", left=ast.Name(id="score"), right=ast.Number(value=0.5, text="0.5", is_int=False)),
                      right=ast.Compare(op="<", left=ast.Name(id="length"), right=ast.Name(id="cap")))
    assert eval_predicate(expr, {"score": 0.6, "length": 3.0, "cap": 4}) is True
    assert eval_predicate(expr, {"score": 0.4, "length": 3.0, "cap": 4}) is False
    with pytest.raises(OpError, match="filter predicate: unknown name 'cap'"):
        eval_predicate(expr, {"score": 0.6, "length": 3.0})


def test_a_replayed_candidate_keeps_its_lineage_and_flops():
    """`--resume` replays finished nodes from the trace: `backup` reads uid/ancestors and `ttcl eval --pool` reads
    each candidate's FLOPs (a resumed eval read verifier rules about 15% cheaper; QA pass)."""
    from ttcl.runtime.values import Candidate, Candidates, from_json, to_json

    c = Candidate("q\n", "1+2=3\n", "3", score=0.5, step_scores=(0.5,), tokens=6, finish="eos",
                  uid="main/grown#3", ancestors=("main/first#0", "main/grown#1"), flops=1234.5)
    bare = Candidate("q\n", "x", None, tokens=1)
    back = from_json(json.loads(json.dumps(to_json(Candidates((c, bare))))))
    assert back == Candidates((c, bare))
    assert "uid" not in to_json(Candidates((bare,)))[0]  # nothing written for a candidate without lineage
