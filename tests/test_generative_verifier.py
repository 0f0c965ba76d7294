"""The generative step checker (`prm(...)` over a causal LM, runtime/verifier_gen.py) and the shipped
`countdown-check`: its training data is valid and goal-free, it scores through the runtime and the
language, its bound holds, malformed text and bad metadata fail cleanly. How well it ranks is
measured on its card and by bench/testbed_gates.py, not claimed here. No test retrains a model."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.tasks import countdown as C  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR  # noqa: E402

SHIPPED = (MODELS_DIR / "countdown-check" / "ttcl_meta.json").is_file()
needs_model = pytest.mark.skipif(not SHIPPED, reason="countdown-check not shipped")
Q = "3 7 5 2 -> 22"
RIGHT = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+2=22 [22]\n#### (7-3)*5+2"


def test_check_data_is_valid_goal_free_and_its_verdict_is_right() -> None:
    from ttcl.zoo.data import VERDICT_NO, VERDICT_PROMPT, VERDICT_YES, DataSpec, draw_examples

    examples = draw_examples(DataSpec(task="countdown", kind="check", steps=(2, 3, 4, 5)), random.Random(7), 400)
    verdicts = []
    for e in examples:
        question = e.prompt.strip()
        body, verdict_line = e.completion.rsplit("\n", 1)
        assert verdict_line in (VERDICT_PROMPT + VERDICT_YES, VERDICT_PROMPT + VERDICT_NO)
        lines = body.splitlines()
        assert lines[-1].startswith("#### ") and len(lines) >= 2
        # every combination is valid on the numbers left (validity only: the walk has no goal)
        assert C.checker.local_steps(question, body)[:-1] == [1.0] * (len(lines) - 1), e
        last = int(lines[-2].split("=")[1].split()[0])
        value, _ = C.evaluate(lines[-1].removeprefix("#### "), rules=True)
        assert value == last  # the expression is the walk's
        target = int(question.split("->")[1])
        assert (verdict_line[-1] == VERDICT_YES) == (target == last)
        if verdict_line[-1] == VERDICT_YES:  # then the walk makes the target first on its last line
            assert C.checker.strict(question, body)
        verdicts.append(verdict_line[-1])
    assert 0.35 < verdicts.count(VERDICT_YES) / len(verdicts) < 0.65
    # goal-free: many walks stop before using every number, and the first moves vary
    assert len({e.completion.splitlines()[0].split("=")[0] for e in examples}) > 100


@needs_model
def test_shipped_checker_is_no_larger_than_the_policy_and_says_it_is_generative() -> None:
    meta = json.loads((MODELS_DIR / "countdown-check" / "ttcl_meta.json").read_text())
    policy = json.loads((MODELS_DIR / "countdown-s" / "ttcl_meta.json").read_text())
    assert meta["kind"] == "check" and meta["verifier"] == "generative" and meta["init_from"] == "countdown-s"
    assert meta["params_total"] <= policy["params_total"]
    assert meta["d_model"] // meta["n_head"] >= 32
    assert "within-question AUROC" in (MODELS_DIR / "countdown-check" / "README.md").read_text()


@needs_model
def test_generative_scores_rank_a_fabricated_step_below_the_right_one() -> None:
    from ttcl.runtime.verifier_gen import GenerativeStepVerifier

    v = GenerativeStepVerifier("ttcl:countdown-check", device="cpu", dtype="float32")
    fabricated = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20+5=22 [22]\n#### (7-3)*5+5"  # claims the target
    dead_end = "7-3=4 [5 2 4]\n4*5=20 [2 20]\n20-2=18 [18]\n#### (7-3)*5-2"  # right lines, wrong end
    scores, steps, usage = v.score_steps([(Q, RIGHT), (Q, fabricated), (Q, dead_end)])
    assert scores[0] > 10 * scores[1] and scores[0] > 10 * scores[2], scores
    for s in steps:  # cumulative: P(everything so far is right), one score per line plus the verdict
        assert len(s) == 5 and all(0.0 <= b <= a <= 1.0 for a, b in zip(s, s[1:], strict=False))
    # the fabricated line itself is where the score falls
    assert steps[1][2] < 0.1 * steps[1][1]
    assert usage.calls == 3 and usage.flops > 0
    # every aggregate is the whole product: the cumulative scores are never multiplied again
    for agg in ("min", "prod"):
        again, _, _ = GenerativeStepVerifier("ttcl:countdown-check", agg=agg, device="cpu",
                                             dtype="float32").score_steps([(Q, RIGHT), (Q, fabricated)])
        assert again == pytest.approx([s[-1] for s in steps[:2]], rel=1e-6), agg


@needs_model
def test_partial_and_malformed_completions_score_without_raising() -> None:
    from ttcl.runtime.verifier_gen import GenerativeStepVerifier

    v = GenerativeStepVerifier("ttcl:countdown-check", device="cpu", dtype="float32")
    items = [(Q, "7-3=4 [5 2 4]"), (Q, ""), (Q, "garbage\n\n####"), (Q, "٣+٤=٧"), ("not a question", RIGHT)]
    scores, steps, _ = v.score_steps(items)
    assert len(steps[0]) == 1  # a partial derivation: no verdict, just its line
    assert steps[1] == [] and scores[1] == 0.0
    assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores)


@needs_model
def test_a_program_scores_with_it_within_the_compiled_bound(tmp_path: Path) -> None:
    """`prm("ttcl:countdown-check")` in a program: it runs, and every node's spend per item (the
    verifier's one extra verdict token included) stays within `ttcl check`'s bound."""
    import ttcl

    prog = tmp_path / "bon.ttc"
    prog.write_text(
        'ttcl 1\nmodel policy = "ttcl:countdown-s"\nverifier lm = prm("ttcl:countdown-check")\n'
        "budget per item {\n    flops <= 1e10\n}\n"
        "strategy main(question: text[<=30]) -> answer {\n"
        '    pool = sample(policy, "{question}\\n", n = 4, max_tokens = 117, temperature = 0.7)\n'
        "    return best(verify(lm, pool))\n}\n")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line + "\n" for line in C.iter_jsonl(C.make_problems(4, 3, seed=3))))
    out = ttcl.run(prog, dataset=data, judge="countdown", device="cpu")
    s = out.summary
    assert s.items == 4 and s.failed == 0 and len(out.answers) == 4
    verify_rows = [r for r in s.rows if r.op == "verify"]
    assert verify_rows and verify_rows[0].actual_max["flops"] > 0
    for row in s.rows:
        for unit, spent in row.actual_max.items():
            assert spent <= row.bound.get(unit, math.inf) + 1e-6, (row.node, unit)


def test_bad_generative_metadata_is_a_clear_error(tmp_path: Path) -> None:
    if not SHIPPED:
        pytest.skip("countdown-check not shipped")
    from ttcl.runtime.verifier_gen import GenerativeStepVerifier

    d = tmp_path / "m"
    shutil.copytree(MODELS_DIR / "countdown-check", d)
    meta = json.loads((d / "ttcl_meta.json").read_text())
    meta["verdict_yes"] = "yes"
    (d / "ttcl_meta.json").write_text(json.dumps(meta))
    with pytest.raises(TtclRuntimeError, match="verdict_yes"):
        GenerativeStepVerifier(str(d), device="cpu")


@needs_model
def test_the_bound_counts_the_verdict_prompt() -> None:
    """The checker reads `verdict_prompt` after the steps: one more token per pass than a PRM with the
    same tokenizer and template, which the static bound must count (else a tight run could exceed it)."""
    from ttcl.compiler.pipeline import compile_program

    def verify_row(ref: str):
        src = (f'ttcl 1\nmodel policy = "ttcl:countdown-s"\nverifier v = prm("{ref}")\n'
               "budget per item {\n    calls <= 64\n}\n"
               "strategy main(question: text[<=30]) -> answer {\n"
               '    pool = sample(policy, "{question}\\n", n = 8, max_tokens = 100)\n'
               "    return best(verify(v, pool))\n}\n")
        rows = compile_program(source=src, file="t.ttc").report.rows
        return next(r for r in rows if r.op == "verify")

    gen, prm = verify_row("ttcl:countdown-check"), verify_row("ttcl:countdown-prm")
    assert gen.bound["prompt_tokens"] == prm.bound["prompt_tokens"] + 8  # "?" once per candidate
