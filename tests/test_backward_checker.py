"""A backward checker (`likelihood(...)` on a model whose ttcl_meta.json says "direction": "backward"):
the probability of the question after what the policy wrote (runtime/verifier_gen.py,
BackwardLikelihoodVerifier; trained by ttcl/zoo/verifiers.py `blik` and data kind `backward`).
Tested with an untrained, seeded model of the recipe's shape: that the runtime reads exactly the
text and tokens the training scores, and that bad metas are clear errors. How well a trained one
ranks is measured by bench/testbed_gates.py --likelihood (ttcl/zoo/README.md), not claimed here."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.tasks import expr as E  # noqa: E402

Q = "(12+7)*3-(30-4); 5*8"
RIGHT = "12+7=19\n30-4=26\n19*3=57\n57-26=31\n5*8=40\n#### 31,40"
WRONG_OPERAND = "12+7=19\n30-4=26\n26*3=78\n78-19=59\n5*8=40\n#### 59,40"


def _checker(out: Path, **meta_over: object) -> Path:
    """An untrained model of expr-back's shape, saved as `ttcl zoo train` saves a backward checker."""
    from transformers import GPT2LMHeadModel

    from ttcl.zoo.family import LM_RECIPES
    from ttcl.zoo.train import gpt2_config, save_lm
    from ttcl.zoo.verifiers import VERIFIER_USAGE

    torch.manual_seed(0)
    r = LM_RECIPES["expr-back"]
    meta = {"name": "tiny-back", "kind": "backward", "task": "expr"}
    meta |= {k: v for k, v in VERIFIER_USAGE["blik"].items() if k != "score_meaning"} | meta_over
    save_lm(GPT2LMHeadModel(gpt2_config(r)).eval(), out, r.n_ctx, meta)
    return out


@pytest.fixture(scope="module")
def back(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checker(tmp_path_factory.mktemp("back") / "expr-back")


def test_the_backward_data_is_a_derivation_then_its_question() -> None:
    from ttcl.zoo.data import BACKWARD_TEMPLATE, draw_examples
    from ttcl.zoo.family import LM_RECIPES

    spec = LM_RECIPES["expr-back"].data
    for ex in draw_examples(spec, random.Random(0), 20):
        steps = ex.prompt.removesuffix(BACKWARD_TEMPLATE.format(steps=""))
        assert ex.prompt == BACKWARD_TEMPLATE.format(steps=steps)
        assert E.ExprChecker().strict(ex.completion, steps), (ex.completion, steps)
    with pytest.raises(ValueError, match="no kind"):
        draw_examples(replace(spec, kind="direct"), random.Random(0), 1)


def test_likelihood_picks_the_backward_reading_from_the_meta(back: Path, tmp_path: Path) -> None:
    from ttcl.runtime.verifier_gen import (
        BackwardLikelihoodVerifier,
        LikelihoodVerifier,
        likelihood_verifier,
    )

    assert type(likelihood_verifier(str(back), device="cpu", dtype="float32")) is BackwardLikelihoodVerifier
    fwd = _checker(tmp_path / "fwd", direction="forward", input_template="{question}\n{steps}")
    assert type(likelihood_verifier(str(fwd), device="cpu", dtype="float32")) is LikelihoodVerifier


def test_the_runtime_reads_the_text_and_tokens_the_training_scores(back: Path) -> None:
    """`_back_batch` (what `blik` training ranks) and the runtime's score are the same number for
    right, wrong and untidy completions: the question and <eos> after the lines and the separator."""
    from transformers import AutoModelForCausalLM

    from ttcl.runtime.verifier_gen import likelihood_verifier
    from ttcl.zoo.data import BACKWARD_TEMPLATE
    from ttcl.zoo.verifiers import _back_batch, _lik_scores

    v = likelihood_verifier(str(back), device="cpu", dtype="float32")
    assert v._text(Q, RIGHT) == BACKWARD_TEMPLATE.format(steps=RIGHT) + Q
    items = [(Q, RIGHT), (Q, WRONG_OPERAND), (Q, "  12+7=19\n\n30-4=26  \n"), (Q, "")]
    runtime, steps, usage = v.score_steps(items)
    assert steps == [[s] for s in runtime] and usage.calls == 4 and usage.flops > 0
    model = AutoModelForCausalLM.from_pretrained(str(back)).eval()
    ids, mask, scored = _back_batch([{"question": q, "completion": c} for q, c in items], model.config.n_positions)
    assert scored.sum(1).tolist() == [len(Q) + 1] * 4  # one character per token, and <eos>
    with torch.no_grad():
        trained = _lik_scores(model, ids, mask, scored)[0].tolist()
    assert [math.log(s) for s in runtime] == pytest.approx(trained, abs=1e-4)


def test_a_backward_meta_whose_template_puts_the_question_first_is_refused(tmp_path: Path) -> None:
    from ttcl.runtime.verifier_gen import likelihood_verifier

    bad = _checker(tmp_path / "bad", input_template="{question}\n{steps}")
    with pytest.raises(TtclRuntimeError, match=r"input_template must hold \{steps\} and then \{question\}"):
        likelihood_verifier(str(bad), device="cpu", dtype="float32")


def test_a_too_long_item_fails_alone(back: Path) -> None:
    from ttcl.runtime.verifier_gen import likelihood_verifier
    from ttcl.runtime.verifiers import ItemFailures

    v = likelihood_verifier(str(back), device="cpu", dtype="float32")
    with pytest.raises(ItemFailures) as e:
        v.score_steps([(Q, RIGHT), (Q, "1+1=2\n" * 40)])
    assert list(e.value.failures) == [1] and "more than the model's context" in str(e.value.failures[1])
    assert e.value.scores[0] > 0.0 and math.isnan(e.value.scores[1])


def test_a_program_scores_with_a_backward_checker_within_the_compiled_bound(back: Path, tmp_path: Path) -> None:
    import ttcl

    src = (f'ttcl 1\nmodel policy = "ttcl:expr-s"\nverifier b = likelihood("{back}")\n'
           "budget per item {\n    flops <= 1e10\n}\n"
           "strategy main(question: text[<=48]) -> answer {\n"
           '    pool = sample(policy, "{question}\\n", n = 3, max_tokens = 100, temperature = 0.7)\n'
           "    return vote(verify(b, pool), weight = score)\n}\n")
    prog = tmp_path / "back.ttc"
    prog.write_text(src)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(line + "\n" for line in E.iter_jsonl(E.make_problems(3, 3, seed=4))))
    out = ttcl.run(prog, dataset=data, judge="expr", device="cpu")
    s = out.summary
    assert s.items == 3 and s.failed == 0
    for row in s.rows:
        for unit, spent in row.actual_max.items():
            assert spent <= row.bound.get(unit, math.inf) + 1e-6, (row.node, unit)
    assert json.loads((back / "ttcl_meta.json").read_text())["direction"] == "backward"


def test_a_backward_checkers_card_says_how_likelihood_reads_it(back: Path) -> None:
    """`ttcl zoo train` writes a verifier card for it, not a PRM's or a policy's how-to."""
    from ttcl.zoo.expr_cards import write_card

    meta = json.loads((back / "ttcl_meta.json").read_text()) | {
        "params_total": 115968, "params_non_embedding": 100096, "n_layer": 2, "d_model": 64, "n_head": 2,
        "n_ctx": 160, "train_steps": 1, "batch_size": 64, "training_tokens": 1, "training_flops": 1,
        "wall_seconds": 1.0, "seed": 15}
    write_card(back, meta)
    card = (back / "README.md").read_text()
    assert '`likelihood("ttcl:tiny-back")`' in card and "then the question and `<eos>`" in card
    assert "sigmoid" not in card and "greedy" not in card
