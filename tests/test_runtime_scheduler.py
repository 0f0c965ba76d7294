"""The scheduler and runner on a real (tiny, random) transformers model.

These tests are about mechanics: batching across items, guards and skipped
arms, accounting, budgets, determinism, failure isolation. A randomly
initialised GPT-2 (char tokenizer) is a real model for that purpose and
loads in milliseconds; tests about answers use the bundled `ttcl:arith-s`
(test_run_cli.py).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ttcl.compiler.costmodel import STATIC_UNITS
from ttcl.compiler.pipeline import compile_program
from ttcl.runtime.dataset import Item
from ttcl.runtime.runner import Runner, RunOptions

BON = """\
ttcl 1
model policy = "ttcl:arith-s"
verifier exact = check("{checker}")
param n: int = 4 in 1..64
budget per item {{ {budget} }}
strategy main(question: text[<=32]) -> answer {{
    drafts = sample(policy, "{{question}}\\n", n = n, max_tokens = 12, temperature = 1.0)
    scored = verify(exact, drafts)
    if agreement(scored) < 0.5 {{
        more = sample(policy, "{{question}}=", n = 2, max_tokens = 6)
        return vote(scored + more)
    }} else {{
        return best(scored)
    }}
}}
"""


@pytest.fixture(scope="session")
def rand_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ttcl.runtime.backends.random_model import save_random_gpt2

    return save_random_gpt2(tmp_path_factory.mktemp("models") / "rand", n_positions=128)


FLAKY = '''
class Flaky:
    """A checker that raises on questions containing 7: how a buggy plugin behaves."""

    name = "flaky"

    def extract(self, completion):
        return None

    def outcome(self, question, completion):
        if "7" in question:
            raise ZeroDivisionError("flaky checker exploded")
        return 0.5

    def steps(self, question, completion):
        return [self.outcome(question, completion)]

    def split_steps(self, completion):
        return [completion]


checker = Flaky()
'''


@pytest.fixture(scope="session")
def flaky_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checker registered the real way: an installed distribution's `ttcl.verifiers` entry point."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "ttcl_flaky_checker.py").write_text(FLAKY)
    dist = root / "ttcl_flaky_checker-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ttcl-flaky-checker\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ttcl.verifiers]\nflaky = ttcl_flaky_checker:checker\n")
    sys.path.insert(0, str(root))
    from ttcl.compiler import checks_calls

    checks_calls.registered_checkers.cache_clear()  # the checks cache the registered names per process
    return root


def program(tmp_path: Path, *, checker: str = "arith", budget: str = "calls <= 64", name: str = "p.ttc") -> Path:
    p = tmp_path / name
    p.write_text(BON.format(checker=checker, budget=budget))
    return p


def items(n: int) -> list[Item]:
    return [Item(index=i, question=f"{i + 3} +{i}", gold=str(2 * i + 3)) for i in range(n)]


def run(path: Path, model: Path, its: list[Item], sets: dict[str, str] | None = None, **opts: object):
    compiled = compile_program(path, overrides=sets or {}, model_overrides={"policy": str(model)})
    runner = Runner(compiled, RunOptions(device="cpu", **opts))  # type: ignore[arg-type]
    return runner, runner.run(its)


def without_seconds(x: object) -> object:
    """Wall time is the one unit a rerun cannot repeat."""
    if isinstance(x, dict):
        return {k: without_seconds(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [without_seconds(v) for v in x]
    return x


def test_one_batch_per_step_across_items(tmp_path: Path, rand_model: Path) -> None:
    runner, summary = run(program(tmp_path), rand_model, items(6))
    assert summary.items == 6 and summary.failed == 0
    # drafts for all 6 items: one generate call; the checker: one score call; then the taken arms' samples
    assert summary.batches == 3
    rows = {r.node: r for r in summary.rows}
    assert rows["main/drafts"].ran == 6
    assert rows["main/more"].ran + rows["main/more"].skipped == 6


def test_untaken_arm_is_skipped_and_not_charged(tmp_path: Path, rand_model: Path) -> None:
    compiled = compile_program(program(tmp_path), model_overrides={"policy": str(rand_model)})
    runner = Runner(compiled, RunOptions(device="cpu"))
    summary = runner.run(items(4))
    for res in summary.results:
        # the random model never writes `#### N`: agreement is 0, so the `if` arm runs and `best` is skipped
        assert res["answer"] is None
        assert res["failures"] == {"main/result": "no answer could be extracted from the output"}
    rows = {r.node: r for r in summary.rows}
    assert rows["main/more"].ran == 4
    assert summary.actual_max["calls"] == 6  # 4 drafts + 2 more; the checker costs nothing


def test_same_seed_same_answers_and_ledger(tmp_path: Path, rand_model: Path) -> None:
    p = program(tmp_path)
    _, a = run(p, rand_model, items(4), seed=3, trace=tmp_path / "a.jsonl")
    _, b = run(p, rand_model, items(4), seed=3, trace=tmp_path / "b.jsonl")
    _, c = run(p, rand_model, items(4), seed=4, trace=tmp_path / "c.jsonl")
    assert without_seconds(a.results) == without_seconds(b.results)
    assert without_seconds([r.model_dump() for r in a.rows]) == without_seconds([r.model_dump() for r in b.rows])
    from ttcl.runtime.trace import read_trace

    ta, tb, tc = (read_trace(tmp_path / f"{x}.jsonl") for x in "abc")
    texts = lambda t: [[o["text"] for o in n.outputs] for i in sorted(t.nodes) for n in t.nodes[i] if n.node_id == "main/drafts"]  # noqa: E731
    assert texts(ta) == texts(tb)
    assert texts(ta) != texts(tc)


def test_batching_does_not_change_samples(tmp_path: Path, rand_model: Path) -> None:
    """Samples depend on (seed, item, node, j) only: one item at a time gives what one batch gives."""
    p = program(tmp_path)
    run(p, rand_model, items(4), trace=tmp_path / "all.jsonl")
    run(p, rand_model, items(4), trace=tmp_path / "one.jsonl", max_batch_items=1)
    from ttcl.runtime.trace import read_trace

    a, b = read_trace(tmp_path / "all.jsonl"), read_trace(tmp_path / "one.jsonl")
    for i in range(4):
        assert [n.outputs for n in a.nodes[i]] == [n.outputs for n in b.nodes[i]]
        assert without_seconds([n.cost for n in a.nodes[i]]) == without_seconds([n.cost for n in b.nodes[i]])


def test_checker_that_raises_fails_only_its_items(tmp_path: Path, rand_model: Path, flaky_plugin: Path) -> None:
    p = program(tmp_path, checker="flaky")
    its = [Item(index=i, question=q) for i, q in enumerate(["1 +2", "7 +1", "4 *2", "17 -3"])]
    _, summary = run(p, rand_model, its)
    status = [(r["status"], r["error"]) for r in summary.results]
    assert status == [
        ("ok", None),
        ("failed", "main/scored: checker 'flaky' raised ZeroDivisionError: flaky checker exploded"),
        ("ok", None),
        ("failed", "main/scored: checker 'flaky' raised ZeroDivisionError: flaky checker exploded"),
    ]
    assert summary.failed == 2
    ok = summary.results[0]
    assert ok["cost"]["calls"] == 6  # no answers, agreement 0: the `if` arm ran too
    # the failed items still charged what they really spent (their drafts), nothing more
    assert summary.results[1]["cost"]["calls"] == 4


def test_stop_policy_returns_best_so_far(tmp_path: Path, rand_model: Path) -> None:
    p = program(tmp_path, budget="calls <= 5; on_exhaust = stop")
    _, summary = run(p, rand_model, items(3))
    for r in summary.results:
        assert r["status"] == "stopped"
        assert r["failures"] == {"main/more": "budget exhausted: per-item calls"}
        assert r["cost"]["calls"] == 4
    assert {x.node: x.refused for x in summary.rows}["main/more"] == 3


def test_shrink_policy_cuts_n_to_fit(tmp_path: Path, rand_model: Path) -> None:
    p = program(tmp_path, budget="calls <= 5; on_exhaust = shrink")
    _, summary = run(p, rand_model, items(2))
    for r in summary.results:
        assert r["status"] == "ok"
        assert r["cost"]["calls"] == 5  # 4 drafts + `more` shrunk from n=2 to n=1
    assert {x.node: x.shrunk for x in summary.rows}["main/more"] == 2


def test_pooled_budget_caps_the_whole_run(tmp_path: Path, rand_model: Path) -> None:
    p = program(tmp_path, budget="calls <= 64 }\nbudget pooled { calls <= 14; on_exhaust = stop")
    _, summary = run(p, rand_model, items(3))
    assert summary.actual_total["calls"] <= 14
    assert summary.stopped >= 1


def test_actual_never_exceeds_bound_or_budget(tmp_path: Path, rand_model: Path) -> None:
    p = program(tmp_path, budget="gen_tokens <= 70; on_exhaust = shrink")
    _, summary = run(p, rand_model, items(3))
    for r in summary.results:
        for unit in STATIC_UNITS:
            assert r["cost"][unit.value] <= summary.bound_total[unit.value] + 1e-6
        assert r["cost"]["gen_tokens"] <= 70
    for row in summary.rows:
        for unit in STATIC_UNITS:
            assert row.actual_max[unit.value] <= row.bound[unit.value] + 1e-6


def test_program_source_is_dedented() -> None:
    assert textwrap.dedent(BON).startswith("ttcl 1")


def test_only_a_trace_pays_for_turning_values_into_json(tmp_path: Path, rand_model: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A QA hunt: the accountant's hook overrides after_node, so every run turned every node's inputs and outputs
    into JSON (one dict per candidate) whether or not a trace was written: 11.3 s and 1.69 GB on 1.57 M candidates,
    1.9 s and 0.45 GB without. Hooks now say whether they read them (`wants_io`)."""
    from ttcl.runtime import scheduler
    from ttcl.runtime.values import to_json

    calls = []

    def counted(value: object) -> object:
        calls.append(1)
        return to_json(value)

    monkeypatch.setattr(scheduler, "to_json", counted)
    _, plain = run(program(tmp_path), rand_model, items(2))
    assert len(plain.results) == 2 and plain.failed == 0 and calls == []
    _, traced = run(program(tmp_path), rand_model, items(2), trace=tmp_path / "t.jsonl")
    assert calls and [r["answer"] for r in traced.results] == [r["answer"] for r in plain.results]


RUNTIME_ARGS = """ttcl 1
model policy = "ttcl:arith-s"
param literal: bool = true
strategy main(question: text[<=20]) -> answer {
    d = sample(policy, "{question}\\n", n = 1, max_tokens = 8, temperature = 0)
    zero = count(d) - count(d)
    if literal {
        r = revise(policy, d, prompt = "zq", max_tokens = 30, temperature = 0)
        return vote(r)
    }
    r2 = revise(policy, d, prompt = "zq", max_tokens = 30, temperature = zero)
    return vote(r2)
}
"""


def test_run_time_sampling_arguments_are_read_not_defaulted(tmp_path: Path) -> None:
    """A run-time temperature of `revise` was ignored (it sampled at 0.7), and a run-time `top_p` of 0 ran as 1.0
    where other out-of-range values fail the item (QA pass)."""
    import ttcl
    from ttcl.runtime.trace import read_trace

    prog = tmp_path / "p.ttc"
    prog.write_text(RUNTIME_ARGS)

    def revised(literal: bool, seed: int) -> str:
        trace = tmp_path / f"{literal}{seed}.jsonl"
        ttcl.run(str(prog), inputs="19 +9 *2 -4 +11", device="cpu", seed=seed, set={"literal": literal}, trace=trace)
        nodes = read_trace(trace).nodes[0]
        return next(n.outputs for n in nodes if n.node_id in ("main/r", "main/r2") and n.outputs)[0]["text"]

    assert {revised(False, s) for s in (0, 1, 2)} == {revised(True, 0)}  # greedy, as the literal 0 is
    prog.write_text(RUNTIME_ARGS.replace('revise(policy, d, prompt = "zq", max_tokens = 30, temperature = zero)',
                                         'sample(policy, "zq", n = 2, max_tokens = 20, top_p = zero)'))
    out = ttcl.run(str(prog), inputs="1 +2", device="cpu", set={"literal": False})
    assert out.summary.results[0]["status"] == "failed"
    assert out.summary.results[0]["error"] == "main/r2: top_p must be in (0, 1], got 0.0"


def test_budget_left_is_read_between_the_calls_written_around_it(tmp_path: Path) -> None:
    """`b` read 5, not 7: the reservation of the later, independent `e` was already counted (QA pass)."""
    import ttcl

    prog = tmp_path / "left.ttc"
    prog.write_text("""ttcl 1
model policy = "ttcl:arith-s"
budget per item { calls <= 10 }
strategy main(question: text[<=20]) -> text {
    a = budget.left.calls
    d = sample(policy, "{question}\\n", n = 3, max_tokens = 10)
    b = budget.left.calls
    e = sample(policy, "{question}\\n", n = 2, max_tokens = 10)
    c = budget.left.calls
    return "{a} {b} {c}"
}
""")
    assert ttcl.run(str(prog), inputs="1 +2", device="cpu").answers == ["10 7 5"]


def test_a_revised_candidate_is_bounded_with_the_prompt_it_keeps(tmp_path: Path) -> None:
    """A revision keeps its draft's prompt; the check bounded it by the revise prompt, so `extend` after `revise`
    was under-bounded (items stopped, blamed on their input) or over-bounded (a program refused) (QA pass)."""
    import ttcl
    from ttcl.compiler.pipeline import compile_program

    prog = tmp_path / "p.ttc"
    prog.write_text("""ttcl 1
model policy = "ttcl:arith-s"
strategy main(question: text[<=20]) -> answer {
    drafts = sample(policy, "{question}\\n..................................................\\n{question}\\n", n = 2, max_tokens = 16)
    fixed = revise(policy, drafts, prompt = "{c.text}\\n", max_tokens = 16)
    more = extend(policy, fixed, max_tokens = 8)
    return vote(more)
}
""")
    out = ttcl.run(str(prog), inputs=["35 *2 -10", "63 -19 +17 +10", "1 +2 +3 +4 +5 +6 +7"], device="cpu")
    assert [r["status"] for r in out.summary.results] == ["ok"] * 3, out.summary.results
    bound = {r.node: r.bound for r in compile_program(prog).report.rows}
    # each extend reads its draft's prompt (2 x <= 20 tokens, 53 of text, 1 special) and its revision (16)
    assert bound["main/more"]["prompt_tokens"] == 2 * (2 * 20 + 53 + 1 + 16)
