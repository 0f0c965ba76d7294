"""Pooled budgets that allocate: `budget pooled { ...; split = even | need }` and `allot(need)`.

The shares' arithmetic, the accountant enforcing them, the compile-time rules for `allot`, and, on the
bundled model, that the allocation does not depend on the dataset's order or on batching.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from shipped import available

from ttcl.compiler.costmodel import STATIC_UNITS, Cost
from ttcl.compiler.diagnostics import DiagnosticError
from ttcl.compiler.pipeline import compile_program
from ttcl.runtime.accountant import Accountant, Limits
from ttcl.runtime.pool_split import PoolShares, fractions


def test_even_caps_add_up_to_the_pool() -> None:
    shares = PoolShares(Limits(calls=10, flops=3e9), "even")
    shares.begin([4, 1, 2])
    assert {i: shares.cap(i).as_dict() for i in (1, 2, 4)} == {i: {"calls": 10 / 3, "flops": 1e9} for i in (1, 2, 4)}
    assert shares.cap(9).as_dict() == {"calls": 0.0, "flops": 0.0}  # an unannounced item has no share


def test_allot_shares_the_rest_by_need_and_returns_what_finished_items_left() -> None:
    shares = PoolShares(Limits(gen_tokens=1000), "need")
    shares.begin(range(4))  # 250 each
    spent = {0: Cost(gen_tokens=100), 1: Cost(gen_tokens=50), 2: Cost(gen_tokens=250), 3: Cost(gen_tokens=0)}
    frac = shares.allot({0: 3.0, 1: 1.0, 3: 0.0}, spent.__getitem__)  # item 2 finished before `allot`
    assert frac == {0: 0.75, 1: 0.25, 3: 0.0}
    rest = 1000 - 400
    assert shares.balance == {"gen_tokens": rest}
    caps = {i: shares.cap(i).get("gen_tokens") for i in range(4)}
    assert caps == {0: 100 + 0.75 * rest, 1: 50 + 0.25 * rest, 2: 250, 3: 0}
    assert sum(caps.values()) == pytest.approx(1000)


def test_fractions_ignore_bad_needs() -> None:
    assert fractions({1: float("nan"), 2: -4.0, 3: 2.0}) == {1: 0.0, 2: 0.0, 3: 1.0}
    assert fractions({1: 0.0, 2: 0.0}) == {1: 0.5, 2: 0.5}


def test_accountant_enforces_each_items_share() -> None:
    acc = Accountant(pooled=Limits(calls=10), on_exhaust="stop")
    acc.shares = PoolShares(acc.pooled, "even")
    acc.shares.begin([0, 1])
    assert acc.remaining(0) == {"calls": 5.0}
    a = acc.request(0, "n", Cost(calls=4))
    assert a.granted
    acc.charge(a, Cost(calls=4))
    assert not acc.request(0, "m", Cost(calls=2)).granted  # item 0's share is spent, though the pool has 6 left
    assert acc.remaining(0) == {"calls": 1.0} and acc.remaining(1) == {"calls": 5.0}
    assert acc.pool_left() == {"calls": 10.0}  # the balance as of the last allotment (the start)
    b = acc.request(1, "n", Cost(calls=5))
    assert b.granted


PROGRAM = """ttcl 1
model policy = "ttcl:arith-s"

budget pooled {
    gen_tokens <= GEN
    flops <= 1e9
    on_exhaust = shrink
    split = SPLIT
}

strategy main(question: text[<=40]) -> answer {
    probe = sample(policy, "{question}\\n", n = 3, max_tokens = 112, temperature = 0.8)
    share = ALLOT
    if budget.left.gen_tokens >= 112 {
        more = sample(policy, "{question}\\n", n = 16, max_tokens = 112, temperature = 0.8)
        return vote(probe + more)
    }
    return vote(probe)
}
"""


def _program(tmp: Path, split: str, gen: int = 3000, allot: str = "allot(1 - agreement(probe))") -> Path:
    path = tmp / f"pool_{split}.ttc"
    text = PROGRAM.replace("GEN", str(gen)).replace("SPLIT", split)
    path.write_text(text.replace("ALLOT", allot) if split == "need" else text.replace("    share = ALLOT\n", ""))
    return path


def _fails(tmp: Path, source: str) -> str:
    path = tmp / "bad.ttc"
    path.write_text(source)
    with pytest.raises(DiagnosticError) as e:
        compile_program(path)
    return e.value.render()


def test_allot_rules(tmp_path: Path) -> None:
    need = _program(tmp_path, "need").read_text()
    assert "declares no `budget pooled { ...; split = need }`" in _fails(tmp_path, need.replace("split = need", "split = even"))
    assert "the program has none" in _fails(tmp_path, need.replace("    share = allot(1 - agreement(probe))\n", ""))
    looped = need.replace("    share = allot(1 - agreement(probe))\n", "    repeat 2 {\n        share = allot(1)\n    }\n")
    assert "`allot` runs 2 times per item" in _fails(tmp_path, looped)
    assert "`allot` is inside a `repeat`" in _fails(tmp_path, looped.replace("repeat 2", "repeat 1"))  # QA pass
    assert "`split` shares a pooled budget among items" in _fails(
        tmp_path, need.replace("budget pooled {", "budget per item {\n    split = even\n}\nbudget pooled {", 1))
    assert "unknown pool split `greedy`" in _fails(tmp_path, need.replace("split = need", "split = greedy"))
    assert "`budget` has no field `pol`" in _fails(tmp_path, need.replace("budget.left.gen_tokens", "budget.pol.gen_tokens"))


def test_budget_pool_reads_the_balance(tmp_path: Path) -> None:
    prog = _program(tmp_path, "need", allot="allot(1)\n    left = budget.pool.gen_tokens")
    dag = compile_program(prog).dag
    pool = next(n for n in dag if n.op == "budget_pool")
    left = next(n for n in dag if n.op == "budget_left")
    assert [p.node for p in pool.inputs] == ["main/share"]  # read after `allot`, the latest effect before it
    assert [p.node for p in left.inputs] == ["main/share"]


needs_model = pytest.mark.skipif(not available("ttcl:arith-s"), reason="the bundled ttcl:arith-s is not installed")


def _run(prog: Path, questions: list[tuple[str, str]], batch: int | None) -> dict:
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    items = [Item(index=i, question=q, gold=g) for i, (q, g) in enumerate(questions)]
    return Runner(compile_program(prog), RunOptions(device="cpu", seed=3, max_batch_items=batch)).run(items).model_dump()


def _by_question(summary: dict) -> dict[str, tuple]:
    return {r["question"]: (r["answer"], r["status"], tuple(r["cost"][u.value] for u in STATIC_UNITS))
            for r in summary["results"]}


@needs_model
@pytest.mark.parametrize("split", ["need", "even"])
def test_allocation_ignores_order_and_batching(tmp_path: Path, split: str) -> None:
    from ttcl.runtime.tasks.arith import make_problems

    questions = [(p.question, str(p.answer)) for p in make_problems(9, [1, 2, 3, 4, 5, 6], 21)]
    prog = _program(tmp_path, split)
    ref = _run(prog, questions, None)
    shuffled = list(questions)
    random.Random(5).shuffle(shuffled)
    for order, batch in ((list(reversed(questions)), 2), (shuffled, 4), (questions, 1)):
        got = _run(prog, order, batch)
        assert _by_question(got) == _by_question(ref), (split, batch)
    pool = ref["budget_pooled"]
    for unit, limit in pool.items():
        assert ref["actual_total"][unit] <= limit * (1 + 1e-9)
    spend = [r["cost"]["gen_tokens"] for r in ref["results"]]
    even = pool["gen_tokens"] / len(questions)
    assert all(s <= even * (1 + 1e-9) for s in spend) if split == "even" else max(spend) > even  # need: some got more


def test_fmt_keeps_the_split(tmp_path: Path) -> None:
    from ttcl.compiler.fmt import format_source

    src = _program(tmp_path, "need").read_text().replace("    split = need\n", "").replace("    on_exhaust = shrink\n", "")
    src = src.replace("budget pooled {", "budget pooled {  # shared\n    split = need   # by need\n    on_exhaust = shrink", 1)
    once = format_source(src, "p.ttc")
    assert "    split = need   # by need\n" in once and "# shared" in once  # comments keep their column
    assert format_source(once, "p.ttc") == once


@needs_model
def test_resume_of_a_need_split_with_finished_items_is_refused(tmp_path: Path) -> None:
    from ttcl.errors import TtclRuntimeError
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    compiled = compile_program(_program(tmp_path, "need"))
    items = [Item(index=i, question=q) for i, q in enumerate(["5 +3", "7 *2", "9 -4"])]
    trace = tmp_path / "t.jsonl"
    Runner(compiled, RunOptions(device="cpu", trace=trace)).run(items)
    lines = trace.read_text().splitlines()
    first_item_end = next(i for i, line in enumerate(lines) if '"type": "item"' in line or '"type":"item"' in line)
    trace.write_text("\n".join(lines[: first_item_end + 1]) + "\n")  # as if killed after the first item
    before = trace.read_bytes()
    for retry in (False, True):
        with pytest.raises(TtclRuntimeError, match="split = need"):
            Runner(compiled, RunOptions(device="cpu", trace=trace, resume=True, retry_failed=retry)).run(items)
        assert trace.read_bytes() == before  # refused before the trace is opened for writing


@needs_model
def test_ctrl_c_on_a_need_split_does_not_offer_a_resume_it_would_refuse(tmp_path: Path) -> None:
    """Found by a QA pass: Ctrl-C printed `resume with: ... --resume`, and that command then exited 2."""
    from ttcl.commands.run_interrupted import interrupted_message
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    items = [Item(index=i, question=q) for i, q in enumerate(["5 +3", "7 *2", "9 -4"])]
    for split, resumable in (("need", False), ("even", True)):
        compiled = compile_program(_program(tmp_path, split))
        trace = tmp_path / f"{split}.jsonl"
        Runner(compiled, RunOptions(device="cpu", trace=trace)).run(items)
        lines = trace.read_text().splitlines()
        first_item_end = next(i for i, line in enumerate(lines) if '"type": "item"' in line or '"type":"item"' in line)
        trace.write_text("\n".join(lines[: first_item_end + 1]) + "\n")  # as if interrupted after the first item
        message = interrupted_message(trace, len(items))
        assert message.startswith(f"interrupted: 1 of 3 items finished and saved to {trace}")
        assert ("resume with: ttcl" in message) is resumable, message
        assert ("cannot be resumed" in message) is not resumable, message


@needs_model
def test_a_wide_resume_of_a_need_split_is_refused_before_the_cluster_starts(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """It was refused too, but after a Ray cluster had started (about 6 s); now the trace's header says it first."""
    import json

    from ttcl.cli import main
    from ttcl.runtime.dataset import load_dataset
    from ttcl.runtime.runner import Runner, RunOptions

    prog = _program(tmp_path, "need")
    questions = ["5 +3", "7 *2", "9 -4"]
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": q, "answer": "#### 0"}) + "\n" for q in questions))
    trace = tmp_path / "t.jsonl"
    Runner(compile_program(prog), RunOptions(device="cpu", trace=trace, dataset=ds)).run(load_dataset(ds))
    lines = trace.read_text().splitlines()
    first_item_end = next(i for i, line in enumerate(lines) if '"type": "item"' in line or '"type":"item"' in line)
    trace.write_text("\n".join(lines[: first_item_end + 1]) + "\n")
    code = main(["run", str(prog), "--dataset", str(ds), "--trace", str(trace), "--resume", "--ray", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "ray:" not in err, err
    assert err.strip() == (f"error: --resume: `split = need` shares each shard's quota among its items at once, and "
                           f"{trace} already holds 1 finished items; rerun with --overwrite")


@needs_model
def test_ctrl_c_on_a_wide_run_says_its_unfinished_items_run_again(tmp_path: Path) -> None:
    """Under --ray the message promised "0 finished steps of 0 unfinished items (--resume replays them)": a wide
    run keeps whole items, so they run again from the start (QA pass)."""
    from ttcl.commands.run_interrupted import interrupted_message
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    items = [Item(index=i, question=q) for i, q in enumerate(["5 +3", "7 *2", "9 -4"])]
    trace = tmp_path / "wide.jsonl"
    Runner(compile_program(_program(tmp_path, "even")), RunOptions(device="cpu", trace=trace)).run(items)
    header = json.loads(trace.read_text().splitlines()[0])
    trace.write_text(json.dumps({**header, "shards": 2, "workers": 2}) + "\n")  # as a wide run starts its trace
    message = interrupted_message(trace, len(items))
    assert message.startswith(f"interrupted: 0 of 3 items finished and saved to {trace}; the 3 unfinished items run "
                              "again from the start on --resume (a wide run keeps whole items)"), message
    assert "replays" not in message and "resume with: ttcl" in message


def test_the_pool_binds_under_a_split_even_when_the_shares_would_not() -> None:
    """A safety net: the shares add up to the pool, so it binds only where they did not (a resume that dealt
    its new items their share of a pool already dealt out was one such case: 90 calls of 80, QA pass)."""
    acc = Accountant(pooled=Limits(calls=10), on_exhaust="stop")
    acc.shares = PoolShares(acc.pooled, "even")
    acc.shares.begin([0, 1])
    acc.shares.caps[1] = Limits(calls=8)  # shares that no longer add up to the pool (5 + 8 > 10)
    a = acc.request(0, "n", Cost(calls=5))
    acc.charge(a, Cost(calls=5))
    refused = acc.request(1, "n", Cost(calls=6))
    assert not refused.granted and "pooled calls" in refused.reason, refused.reason
    assert acc.request(1, "n", Cost(calls=5)).granted


@pytest.mark.skipif(not available("ttcl:arith-s"), reason="needs the shipped arith-s")
@pytest.mark.parametrize("split", ["even", "need"])
def test_a_resume_with_other_items_than_its_trace_is_refused_under_a_split(split: str, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`--limit 5`, then `--resume` over all the items: under `split = even` the new items got pool / 40 each on
    top of the 5 items' pool / 5, and the run spent 90 calls of an 80-call pool (QA pass)."""
    from ttcl.cli import main

    prog = _program(tmp_path, split)
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{k} +{k + 1}", "answer": f"#### {2 * k + 1}"}) + "\n"
                          for k in range(8)))
    trace = tmp_path / "t.jsonl"
    run = ["run", str(prog), "--dataset", str(ds), "--trace", str(trace), "--device", "cpu"]
    assert main([*run, "--limit", "3"]) == 0
    before = trace.read_text()
    capsys.readouterr()
    assert main([*run, "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --resume: `split = {split}` gives each of the run's N items pool / N, and this trace was written "
        "for 3 items, now 8; resume with the same items (the same --limit), or rerun with --overwrite")
    assert trace.read_text() == before  # refused before the trace was touched
    assert main([*run, "--limit", "3", "--resume"]) == 0  # the same items resume (nothing left to run)


def test_a_refusal_says_when_the_pool_is_only_reserved_by_items_in_flight() -> None:
    """First come: items in flight hold their worst case; a refusal beside a pool mostly unspent read as a bug
    (QA pass: "budget exhausted: pooled gen_tokens" beside 458 / 2,000). It now says what holds the rest."""
    acc = Accountant(pooled=Limits(calls=10), on_exhaust="stop")
    held = acc.request(0, "n", Cost(calls=8))
    assert held.granted
    refused = acc.request(1, "n", Cost(calls=4))
    assert not refused.granted and "(the rest is reserved for the worst case of items in flight)" in refused.reason
    acc.charge(held, Cost(calls=8))
    spent = acc.request(1, "n", Cost(calls=4))
    assert not spent.granted and "pooled calls" in spent.reason and "reserved" not in spent.reason


@pytest.mark.skipif(not available("ttcl:arith-s"), reason="needs the shipped arith-s")
def test_a_kills_charge_comes_out_of_the_killed_items_share(tmp_path: Path) -> None:
    """Under `split = even`, the worst case of a step a kill cut short is charged to the pool on resume. It came
    out of nobody's share, so the killed item ran again on a full share and the last items got nothing (QA pass:
    27 items never started were stopped at cost 0 after three kills). It now comes out of the killed item's."""
    from ttcl.cli import main
    from ttcl.runtime.trace import read_trace

    prog = tmp_path / "even.ttc"
    prog.write_text('ttcl 1\nmodel policy = "ttcl:arith-s"\nbudget pooled {\n    calls <= 32\n    on_exhaust = stop\n'
                    '    split = even\n}\nstrategy main(question: text[<=40]) -> answer {\n'
                    '    return vote(sample(policy, "{question}\\n", n = 4, max_tokens = 40, temperature = 0.8))\n}\n')
    ds = tmp_path / "d.jsonl"
    ds.write_text("".join(json.dumps({"question": f"{k} +{k + 2}", "answer": f"#### {2 * k + 2}"}) + "\n"
                          for k in range(8)))
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    run = ["run", str(prog), "--dataset", str(ds), "--batch-items", "2", "--device", "cpu", "--trace"]
    assert main([*run, str(whole)]) == 0
    lines = whole.read_text().splitlines(keepends=True)
    grants = [k for k, ln in enumerate(lines) if json.loads(ln)["type"] == "grant"]
    cut.write_text("".join(lines[: grants[2] + 1]))  # the second batch's first item granted 4 calls, then a kill
    killed = json.loads(lines[grants[2]])["item"]
    assert main([*run, str(cut), "--resume"]) == 0
    before, after = read_trace(whole).items, read_trace(cut).items
    for i in range(8):
        if i != killed:  # every other item as in the run without the kill; the last ones were stopped before
            assert (after[i].answer, after[i].status, after[i].cost["calls"]) == (
                before[i].answer, before[i].status, before[i].cost["calls"]), i
    assert after[killed].status == "stopped" and after[killed].cost["calls"] == 0  # its share went to the kill


@needs_model
def test_ctrl_c_says_what_the_pool_stays_charged_for_work_cut_short(tmp_path: Path) -> None:
    """After a second Ctrl-C the message read as after one, though the steps it cut short stay charged to the pool
    at their worst case (QA pass)."""
    from ttcl.commands.run_interrupted import interrupted_message
    from ttcl.runtime.dataset import Item
    from ttcl.runtime.runner import Runner, RunOptions

    items = [Item(index=i, question=q) for i, q in enumerate(["5 +3", "7 *2", "9 -4"])]
    trace = tmp_path / "t.jsonl"
    Runner(compile_program(_program(tmp_path, "even")), RunOptions(device="cpu", trace=trace, max_batch_items=1)).run(items)
    lines = trace.read_text().splitlines()
    grants = [k for k, line in enumerate(lines) if json.loads(line)["type"] == "grant"]
    trace.write_text("\n".join(lines[: grants[-1] + 1]) + "\n")  # the last item's last step granted, never spent
    message = interrupted_message(trace, len(items))
    assert "\n  the pool stays charged " in message and " for work cut short (its worst case)\n  resume with" in message
    trace.write_text("\n".join(lines[: grants[-1]]) + "\n")
    assert "stays charged" not in interrupted_message(trace, len(items))
