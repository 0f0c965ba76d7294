"""The search built-ins at run time: `all_finished`, `filter(..., finished)`, `backup`, `balance`,
and the verifier-score cache (a candidate scored once per verifier and item, charged once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shipped import available

from ttcl.runtime.values import Candidate, Candidates, all_finished, backup, balance


def _c(uid: str, score: float | None = None, finish: str = "stop", ancestors: tuple[str, ...] = ()) -> Candidate:
    return Candidate("q\n", uid, score=score, finish=finish, uid=uid, ancestors=ancestors)


def test_all_finished() -> None:
    assert all_finished(Candidates())
    assert all_finished(Candidates((_c("a", finish="eos"), _c("b", finish="eos"))))
    assert not all_finished(Candidates((_c("a", finish="eos"), _c("b", finish="length"))))


def test_backup_takes_the_best_descendant_by_lineage() -> None:
    a, b, ended = _c("a", 0.1), _c("b", 0.9), _c("e", 0.3, finish="eos")
    rollouts = Candidates((
        _c("a1", 0.7, ancestors=("a",)), _c("a2", 0.2, ancestors=("x", "a")),
        _c("b1", None, ancestors=("b",)),  # unscored: ignored
        ended,  # carried over unchanged: it is its own descendant
        _c("zz", 1.0, ancestors=("q",)),  # nobody's
    ))
    out = backup(Candidates((a, b, ended)), rollouts)
    assert [c.score for c in out.items] == [0.7, 0.9, 0.3]
    assert [c.text for c in out.items] == ["a", "b", "e"]


@pytest.mark.parametrize("total", [0, 1, 5, 7, 16])
@pytest.mark.parametrize("temp", [0.0, 0.1, 1.0, 50.0])
def test_balance_hands_out_exactly_total_in_score_order(total: int, temp: float) -> None:
    cands = Candidates((_c("a", 0.2), _c("b", 0.9), _c("c", None), _c("d", 0.5)))
    out = balance(cands, total, temp)
    assert len(out) == total
    got = {u: sum(1 for c in out.items if c.uid == u) for u in "abcd"}
    order = [u for u in "abcd" if got[u]]
    assert [c.uid for c in out.items] == [u for u in order for _ in range(got[u])]  # copies keep positions
    assert got["b"] >= got["d"] >= got["a"] >= got["c"]  # more children for higher scores (unscored = 0)
    if temp == 0.0:
        assert got["b"] == total
    if temp == 50.0 and total == 16:
        assert set(got.values()) == {4}  # nearly flat softmax: an even split


def test_balance_of_nothing() -> None:
    assert len(balance(Candidates(), 8, 1.0)) == 0


CACHE_PROGRAM = """ttcl 1
model policy = "ttcl:arith-s"
verifier prm = prm("ttcl:arith-prm", agg = "last")

strategy main(question: text[<=40]) -> answer {
    same = sample(policy, "{question}\\n", n = 4, max_tokens = 11, stop = "\\n", temperature = 0.0)
    once = verify(prm, same)
    twice = verify(prm, once)
    return best(twice)
}
"""


@pytest.mark.skipif(not (available("ttcl:arith-s") and available("ttcl:arith-prm")), reason="bundled models not installed")
def test_verifier_scores_are_reused_and_charged_once(tmp_path: Path) -> None:
    """Four greedy samples are one text: the PRM scores it once; scoring again is free, with equal scores."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions
    from ttcl.runtime.trace import read_trace

    prog = tmp_path / "cache.ttc"
    prog.write_text(CACHE_PROGRAM)
    trace = tmp_path / "t.jsonl"
    summary = Runner(compile_program(prog), RunOptions(device="cpu", trace=trace)).run([Item(index=0, question="43 +13")])
    rows = {r.node: r for r in summary.rows}
    once, twice = rows["main/once"], rows["main/twice"]
    assert (once.reused, twice.reused) == (3, 4)
    assert once.actual_max["calls"] == 1 and once.actual_max["flops"] > 0
    assert twice.actual_max["calls"] == 0 and twice.actual_max["flops"] == 0
    assert summary.actual_total["calls"] == 4 + 1  # four samples, one PRM pass
    nodes = {n.node_id: n for n in read_trace(trace).nodes[0]}
    assert nodes["main/once"].reused == 3 and nodes["main/twice"].reused == 4
    first = [c["score"] for c in nodes["main/once"].outputs]
    assert len(set(first)) == 1 and [c["score"] for c in nodes["main/twice"].outputs] == first
    json.dumps(summary.model_dump())  # the summary (with reuse counts) stays JSON


@pytest.mark.skipif(not (available("ttcl:arith-s") and available("ttcl:arith-prm")), reason="bundled models not installed")
def test_lookahead_rolls_out_and_hands_scores_back(tmp_path: Path) -> None:
    """In lookahead.ttc each kept step's score is the PRM score of its greedy rollout, not of the step."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions
    from ttcl.runtime.trace import read_trace

    root = Path(__file__).resolve().parent.parent
    compiled = compile_program(root / "programs" / "lookahead.ttc",
                               overrides={"beams": "2", "width": "2", "lookahead": "1", "depth": "3"})
    trace = tmp_path / "t.jsonl"
    Runner(compiled, RunOptions(device="cpu", trace=trace)).run([Item(index=0, question="85 +2 +6")])
    first = [n for n in read_trace(trace).nodes[0] if n.status == "ok" and n.line == 41]
    by_op = {n.op: n.outputs for n in first if n.op in ("verify", "backup")}
    steps = next(n.outputs for n in read_trace(trace).nodes[0] if n.node_id == "main/first")
    ahead, backed = by_op["verify"], by_op["backup"]
    assert len(steps) == len(backed) == len(ahead) == 4
    for s, b in zip(steps, backed, strict=True):
        assert b["text"] == s["text"]  # the step itself is kept, not its rollout
        continued = [a for a in ahead if a["text"].startswith(s["text"])]
        assert continued and b["score"] == max(a["score"] for a in continued)
    assert any(a["text"] != s["text"] for a, s in zip(ahead, steps, strict=True))  # rollouts went further


FILTER_PROGRAM = """ttcl 1
model policy = "ttcl:arith-s"
verifier prm = prm("ttcl:arith-prm")
param thr: float = 0.05 in 0.0..1.0
strategy main(question: text[<=40]) -> answer {
    d = verify(prm, sample(policy, "{question}\\n", n = 6, max_tokens = 100, temperature = 1.0))
    m = mean_score(d)
    above = filter(d, score >= m)
    near = filter(d, score > best_score(d) - 0.1 and count(d) > 2 or score < thr)
    return vote(above + near)
}
"""


@pytest.mark.skipif(not (available("ttcl:arith-s") and available("ttcl:arith-prm")), reason="bundled models not installed")
def test_a_filter_predicate_reads_variables_and_calls(tmp_path: Path) -> None:
    """`filter(d, score >= m)` with `m` a variable, and a call in a predicate, passed `ttcl check` and failed every
    item at run time ("unknown name 'm'", "unsupported expression Call"): the runtime never read them (QA pass)."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions
    from ttcl.runtime.trace import read_trace

    prog = tmp_path / "filter.ttc"
    prog.write_text(FILTER_PROGRAM)
    trace = tmp_path / "t.jsonl"
    items = [Item(index=i, question=q) for i, q in enumerate(["3 +4 *2", "43 +13", "9 *3 -2"])]
    summary = Runner(compile_program(prog), RunOptions(device="cpu", trace=trace, seed=3)).run(items)
    assert [r["status"] for r in summary.results] == ["ok"] * 3, summary.results
    for nodes in read_trace(trace).nodes.values():
        out = {n.node_id: n.outputs for n in nodes}
        d, m = out["main/d"], out["main/m"]
        scores = [c["score"] for c in d]
        assert m == pytest.approx(sum(scores) / len(scores))
        assert [c["uid"] for c in out["main/above"]] == [c["uid"] for c in d if c["score"] >= m]
        near = [c["uid"] for c in d if c["score"] > max(scores) - 0.1 and len(d) > 2 or c["score"] < 0.05]
        assert [c["uid"] for c in out["main/near"]] == near
        assert 0 < len(out["main/above"]) < len(d) or len(set(scores)) == 1


LIB = """ttcl 1
model policy = "ttcl:arith-s"
param tag: text = "zzz"
strategy go(question: text[<=40]) -> answer {
    d = sample(policy, "{question}\\n", n = 2, max_tokens = 32)
    return vote(filter(d, tag != question and "1 +2" == question))
}
"""


@pytest.mark.skipif(not available("ttcl:arith-s"), reason="bundled models not installed")
@pytest.mark.parametrize(("root", "kept"), [
    ('import "lib.ttc" as tl\nstrategy main(question: text[<=40]) -> answer {\n    return tl.go(question)\n}\n', True),
    # the root's own `tag`, equal to the question: the library's predicate reads the library's "zzz"
    ('import "lib.ttc" as tl\nparam tag: text = "1 +2"\n'
     'strategy main(question: text[<=40]) -> answer {\n    return tl.go(question)\n}\n', True),
    # the call's keyword is the value the predicate reads
    ('import "lib.ttc" as tl\nstrategy main(question: text[<=40]) -> answer {\n    return tl.go(question, tag = "1 +2")\n}\n',
     False),
], ids=["library", "root-has-its-own", "call-keyword"])
def test_a_filter_predicate_reads_its_own_modules_text_params(tmp_path: Path, root: str, kept: bool) -> None:
    """A text param in a predicate was read at run time from the root program's params: unknown where only the
    library had it, the root's value where both had one, and blind to a call's keyword; a string literal failed
    every item ("unsupported expression String") where check had passed it (QA pass)."""
    from ttcl.compiler.pipeline import compile_program
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    (tmp_path / "lib.ttc").write_text(LIB)
    (tmp_path / "main.ttc").write_text("ttcl 1\n" + root)
    summary = Runner(compile_program(tmp_path / "main.ttc"), RunOptions(device="cpu", seed=1)).run(
        [Item(index=0, question="1 +2")])
    result = summary.results[0]
    assert result["status"] == "ok", result
    assert (result["answer"] is not None) == kept, result
