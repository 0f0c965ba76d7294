"""The countdown family (testbed v2): shipped models load offline, generate and are checked by the
exact checker; the family spans 16x with growing training FLOPs; the PRM scores through the
runtime; training data is right and stops once the target is made. No test retrains a model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ttcl.runtime.tasks.countdown import checker, make_problems  # noqa: E402
from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR  # noqa: E402

POLICIES = ("countdown-s", "countdown-m", "countdown-l")
SHIPPED = tuple(n for n in (*POLICIES, "countdown-prm", "countdown-revise", "countdown-revise-inline-chk") if (MODELS_DIR / n / "ttcl_meta.json").is_file())


def _meta(name: str) -> dict:
    return json.loads((MODELS_DIR / name / "ttcl_meta.json").read_text())


@pytest.mark.parametrize("name", [n for n in SHIPPED if n in POLICIES])
def test_shipped_countdown_policy_loads_generates_and_is_checked(name: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate

    path = MODELS_DIR / name
    meta = _meta(name)
    assert meta["task"] == "countdown" and meta["d_model"] // meta["n_head"] >= 32  # vLLM CPU kernels
    assert meta["training_flops"] == 6 * meta["params_non_embedding"] * meta["training_tokens"]
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    problems = make_problems(8, 2, seed=5)
    outs = generate(model, tok, [p.prompt for p in problems], n=8, temperature=1.0, seed=0,
                    max_new_tokens=T.BEDS["countdown"].max_new_tokens(2))
    # every completion is checked; well-formed derivation lines, and some question solved by some sample
    assert all(o.strip() for row in outs for o in row)
    assert sum(checker.outcome(p.question, o) for p, row in zip(problems, outs, strict=True) for o in row) >= 1, outs
    for p, row in zip(problems, outs, strict=True):
        for o in row:
            s = checker.steps(p.question, o)
            assert len(s) == len(checker.split_steps(o)) and set(s) <= {0.0, 1.0}
    assert "| steps |" in (path / "README.md").read_text()


def test_shipped_family_spans_sixteen_times_with_growing_training_flops() -> None:
    if len([n for n in POLICIES if n in SHIPPED]) < 3:
        pytest.skip("the countdown family is not fully shipped")
    metas = [_meta(n) for n in POLICIES]
    assert metas[2]["params_total"] >= 16 * metas[0]["params_total"]
    assert metas[0]["training_flops"] < metas[1]["training_flops"] < metas[2]["training_flops"]


@pytest.mark.skipif("countdown-prm" not in SHIPPED, reason="countdown-prm not shipped")
def test_shipped_prm_scores_through_the_runtime() -> None:
    """It loads and scores steps through the runtime's PRM verifier, at countdown-s's cost per token.
    How well it ranks is measured on its card, not claimed here."""
    from ttcl.runtime.verifiers import ProcessRewardVerifier

    v = ProcessRewardVerifier("ttcl:countdown-prm", agg="last", device="cpu", dtype="float32")
    assert v.spec.non_embedding_params <= _meta("countdown-s")["params_non_embedding"] + 64 + 1
    q = "3 7 5 2 -> 22"
    right = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2"
    wrong = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+5=22 [22]\n#### (7-3)*5+5"
    scores, usage = v.score([(q, right), (q, wrong)])
    assert all(0.0 < x < 1.0 for x in scores)
    steps = v.step_scores([(q, right), (q, "7-3=4 [5 2 4]")])
    assert len(steps[0]) == 4 and len(steps[1]) == 1
    assert usage.calls == 2


def test_countdown_training_data_is_right_varied_and_stops_at_the_target() -> None:
    from ttcl.zoo.data import DataSpec, draw_examples

    examples = draw_examples(DataSpec(task="countdown", steps=(2, 3, 4, 5)), random.Random(3), 300)
    assert all(checker.strict(e.prompt.strip(), e.completion) for e in examples)
    # a derivation stops at the first line that makes the target
    for e in examples:
        target = int(e.prompt.split("->")[1])
        values = [int(line.split("=")[1].split()[0]) for line in e.completion.splitlines()[:-1]]
        assert values[-1] == target and target not in values[:-1]
    # many different first moves: the data shows many chains, not one canonical order
    assert len({e.completion.splitlines()[0].split("=")[0] for e in examples}) > 100


def test_voted_answers_are_checked_not_compared_to_one_gold_expression() -> None:
    """Countdown has several right expressions per question: maj/weighted count any right one."""
    p = make_problems(1, 3, seed=11)[0]
    right = p.solution()
    other = p.solution(random.Random(5))
    item = T.Item(p, greedy=right, samples=[right, other, "#### 1+1", "garbage"])
    item.scores = [0.1, 0.9, 0.5, 0.2]
    assert item.right()[:2] == [True, True] and item.right()[2:] == [False, False]
    assert T.method_right(item, "pass", 4) == 1.0
    assert T.method_right(item, "best", 4) == 1.0  # the best-scored sample is a right one
    item.scores = [0.1, 0.2, 0.9, 0.3]
    assert T.method_right(item, "best", 4) == 0.0
    assert T.greedy_right(item) == 1.0


def test_countdown_revise_data_keeps_right_attempts_and_fixes_wrong_ones() -> None:
    from ttcl.zoo.data import REVISE_TEMPLATE, DataSpec, draw_examples

    p = make_problems(1, 3, seed=21)[0]
    right = p.solution()
    wrong = right.replace("####", "7+7=14 [1]\n####", 1)  # a bad line before the answer
    assert checker.strict(p.question, right) and not checker.strict(p.question, wrong)
    spec = DataSpec(task="countdown", kind="revise", revise_frac=1.0, steps=(3,))
    for attempt in (right, wrong):
        examples = draw_examples(spec, random.Random(0), 20, attempts=[(p.question, attempt)])
        for e in examples:
            assert e.prompt == REVISE_TEMPLATE.format(question=p.question, attempt=attempt)
            assert checker.strict(p.question, e.completion)  # every target is a right, complete solution
            if attempt == right:
                assert e.completion == right  # what is right is kept
    with pytest.raises(ValueError):
        draw_examples(spec, random.Random(0), 2)  # revise data needs the policy's own attempts


def test_countdown_inline_revise_data_restates_a_right_answer_and_fixes_a_wrong_one() -> None:
    from ttcl.zoo.data import REVISE_INLINE_TEMPLATE, DataSpec, draw_examples

    p = make_problems(1, 3, seed=21)[0]
    right = p.solution()
    wrong = right.replace("####", "7+7=14 [1]\n####", 1)
    spec = DataSpec(task="countdown", kind="revise", revise_frac=1.0, steps=(3,), revise_style="inline")
    for attempt in (right, wrong):
        for e in draw_examples(spec, random.Random(0), 10, attempts=[(p.question, attempt)]):
            assert e.prompt == REVISE_INLINE_TEMPLATE.format(question=p.question, attempt=attempt)
            assert e.prompt.startswith(p.prompt + attempt)
            if attempt == right:
                assert e.completion == right.splitlines()[-1] and e.completion.startswith("#### ")
            else:
                assert checker.strict(p.question, e.completion)


def test_countdown_history_revise_data_shows_earlier_wrong_attempts_then_the_last() -> None:
    """Sequential-revision data: 1-3 attempts at one question in context, the earlier ones strictly
    wrong attempts at that question, the last as sampled; answered as an inline revision of the last."""
    from ttcl.zoo.data import (
        HISTORY_CTX,
        HISTORY_JOIN,
        HISTORY_MAX,
        REVISE_INLINE_TEMPLATE,
        DataSpec,
        draw_examples,
    )

    p, other = make_problems(2, 3, seed=21)
    right = p.solution()
    wrongs = [right.replace("####", f"{k}+{k}={2 * k} [1]\n####", 1) for k in (3, 4, 5)]
    pool = [(p.question, right), *((p.question, w) for w in wrongs), (other.question, other.solution())]
    spec = DataSpec(task="countdown", kind="revise", revise_frac=1.0, steps=(3,), revise_style="history")
    seen = set()
    for e in draw_examples(spec, random.Random(0), 200, attempts=pool):
        assert e.prompt.endswith("\nfix:\n") and len(e.prompt) + len(e.completion) < HISTORY_CTX
        q = e.prompt.split("\n", 1)[0]
        shown = e.prompt[len(q) + 1 : -len("\nfix:\n")].split(HISTORY_JOIN)
        assert e.prompt == REVISE_INLINE_TEMPLATE.format(question=q, attempt=HISTORY_JOIN.join(shown))
        assert 1 <= len(shown) <= HISTORY_MAX
        seen.add(len(shown))
        if q == other.question:  # its only attempt: nothing earlier to show
            assert shown == [other.solution()]
            continue
        assert all(a in wrongs for a in shown[:-1]) and len(set(shown[:-1])) == len(shown) - 1
        if shown[-1] == right:
            assert e.completion == right.splitlines()[-1]
        else:
            assert checker.strict(p.question, e.completion)
    assert seen == {1, 2, 3}


@pytest.mark.skipif("countdown-revise" not in SHIPPED, reason="countdown-revise not shipped")
def test_shipped_reviser_loads_and_revises_into_checkable_solutions() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.data import REVISE_TEMPLATE
    from ttcl.zoo.sampling import generate

    meta = _meta("countdown-revise")
    assert meta["revise_template"] == REVISE_TEMPLATE and meta["init_from"] == "countdown-s"
    path = MODELS_DIR / "countdown-revise"
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    problems = make_problems(8, 2, seed=6)
    right = [p.solution() for p in problems]
    outs = generate(model, tok, [REVISE_TEMPLATE.format(question=p.question, attempt=r) for p, r in
                                 zip(problems, right, strict=True)], n=1, max_new_tokens=60)
    # it writes solutions in the task's format, which the checker reads line by line; how often a
    # revision keeps or fixes an answer is measured by bench/testbed_revision.py, not claimed here
    for p, o in zip(problems, outs, strict=True):
        lines = checker.split_steps(o[0])
        assert lines and lines[-1].startswith("####") and len(checker.steps(p.question, o[0])) == len(lines), o


@pytest.mark.skipif("countdown-revise-inline-chk" not in SHIPPED, reason="countdown-revise-inline-chk not shipped")
def test_shipped_in_context_reviser_drafts_and_keeps_or_rewrites_in_its_own_context() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.data import REVISE_INLINE_TEMPLATE
    from ttcl.zoo.sampling import generate

    name = "countdown-revise-inline-chk"
    meta = _meta(name)
    assert meta["revise_template"] == REVISE_INLINE_TEMPLATE and meta["init_from"] == "countdown-check"
    assert meta["recipe"]["attempts_from"] == "countdown-s" and meta["recipe"]["data"]["revise_style"] == "inline"
    path = MODELS_DIR / name
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    problems = make_problems(8, 2, seed=7)
    # as a policy it drafts in the task's format, which the checker reads line by line
    drafts = [o[0] for o in generate(model, tok, [p.prompt for p in problems], n=1, max_new_tokens=60)]
    for p, d in zip(problems, drafts, strict=True):
        lines = checker.split_steps(d)
        assert lines and lines[-1].startswith("####") and len(checker.steps(p.question, d)) == len(lines), d
    # after its draft and `fix:` it either restates an answer line (keeps the draft) or writes a whole
    # solution; the revision prompt extends the draft's own context, so a prefix cache serves it
    prompts = [REVISE_INLINE_TEMPLATE.format(question=p.question, attempt=d.strip()) for p, d in
               zip(problems, drafts, strict=True)]
    assert all(q.startswith(p.prompt + d.strip()) for q, p, d in zip(prompts, problems, drafts, strict=True))
    for p, o in zip(problems, generate(model, tok, prompts, n=1, max_new_tokens=60), strict=True):
        lines = checker.split_steps(o[0])
        assert lines and lines[-1].startswith("####"), o
        assert len(lines) == 1 or len(checker.steps(p.question, o[0])) == len(lines), o


def test_the_token_budget_holds_every_gold_solution() -> None:
    """Evaluation and verifier sampling stop at `max_new_tokens`: it must never cut a right solution."""
    bed = T.BEDS["countdown"]
    for steps in bed.steps:
        longest = max(len(p.solution()) + 1 for p in make_problems(500, steps, seed=99))  # + <eos>
        assert longest <= bed.max_new_tokens(steps), (steps, longest)
        assert 24 + bed.max_new_tokens(steps) <= 160  # the longest prompt plus the budget fit the models' context


@pytest.mark.skipif("countdown-revise-inline-chk" not in SHIPPED, reason="countdown-revise-inline-chk not shipped")
def test_sequential_bench_bookkeeping(tmp_path: Path) -> None:
    """bench/testbed_sequential.py on a few items: both arms share the draft, stop at the first accepted
    attempt (so accuracy never falls and FLOPs never shrink round to round), and the per-item record
    agrees with the table's rates."""
    import subprocess
    import sys

    out = tmp_path / "seq.json"
    bench = Path(__file__).resolve().parents[1] / "bench" / "testbed_sequential.py"
    proc = subprocess.run([sys.executable, str(bench), "--reviser", "ttcl:countdown-revise-inline-chk", "--seed", "555",
                           "--per-level", "6", "--rounds", "2", "--context", "history", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(out.read_text())
    items = rep["items"]
    seq, par = items["sequential"], items["parallel"]
    assert len(seq) == len(par) == 3 and seq[0] == par[0]  # rounds 0..2; round 0 is the shared draft
    for arm in (seq, par):
        for r in (1, 2):
            assert all(b >= a for a, b in zip(arm[r - 1], arm[r], strict=True))
    for b in rep["bins"]:
        idx = [i for i, s in enumerate(items["steps"]) if s == b["steps"]]
        assert b["n"] == len(idx) == 6
        for row in b["rounds"]:
            r = row["round"]
            assert row["sequential"] == pytest.approx(sum(seq[r][i] for i in idx) / 6)
            assert row["parallel"] == pytest.approx(sum(par[r][i] for i in idx) / 6)
            assert row["diff"][0] == pytest.approx(row["sequential"] - row["parallel"])
            if r:
                prev = b["rounds"][r - 1]
                assert row["flops_sequential"] >= prev["flops_sequential"] and row["flops_parallel"] >= prev["flops_parallel"]
                assert row["sequential_live"] == sum(1 - seq[r - 1][i] for i in idx)
                assert 0 <= row["repeats"] <= row["sequential_live"]
                assert row["parallel_live"] == sum(1 - par[r - 1][i] for i in idx)
                assert 0 <= row["same_start_sequential"] <= row["sequential_live"]
                assert 0 <= row["same_start_parallel"] <= row["parallel_live"]
    assert "| steps | n | round | sequential | parallel |" in proc.stdout


@pytest.mark.skipif(not {"countdown-s", "countdown-m"} <= set(SHIPPED), reason="needs countdown-s and countdown-m")
def test_gate_c_charges_the_prompts_prefill_once_however_many_samples(tmp_path: Path) -> None:
    """bench/testbed_gates.py's small side at n samples: one prefill, n decodes, n verifier passes (it charged n/k
    of the prefill; the audit of the benches found it)."""
    import subprocess
    import sys

    out = tmp_path / "gates.json"
    bench = Path(__file__).resolve().parents[1] / "bench" / "testbed_gates.py"
    proc = subprocess.run([sys.executable, str(bench), "--task", "countdown", "--policy", "ttcl:countdown-s",
                           "--verifier", "ttcl:countdown-prm", "--large", "ttcl:countdown-m", "--per-level", "3",
                           "--k", "4", "--seed", "555", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = _meta("countdown-s")
    rep = json.loads(out.read_text())
    for row in rep["bins"]:
        by_n = {int(n): v["small_flops"] for n, v in row["gate_c"]["by_n"].items()}
        per_sample = by_n[2] - by_n[1]
        assert by_n[4] - by_n[2] == pytest.approx(2 * per_sample)
        prefill = by_n[1] - per_sample
        prompts = [p.prompt for p in T.BEDS["countdown"].problems(3, seed=555) if p.steps == row["steps"]]
        assert prefill == pytest.approx(sum(T.policy_flops(meta, q, []) for q in prompts) / len(prompts)) and prefill > 0
