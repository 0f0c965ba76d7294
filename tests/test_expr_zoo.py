"""The expr family (testbed v2): shipped models load offline, generate and are checked; the
training data shows several chains; the ranking loss and revise data behave; testbed metrics
are right on hand-made items. No test retrains a shipped model."""

from __future__ import annotations

import json
import math
import random

import pytest

torch = pytest.importorskip("torch")

from ttcl.runtime.tasks.expr import checker, make_problems, parse_question  # noqa: E402
from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR  # noqa: E402

EXPR_POLICIES = ("expr-s", "expr-m", "expr-l", "expr-revise", "expr-s-narrow8-xlong")
EXPR_SHIPPED = tuple(n for n in (*EXPR_POLICIES, "expr-prm") if (MODELS_DIR / n / "ttcl_meta.json").is_file())


def _meta(name: str) -> dict:
    return json.loads((MODELS_DIR / name / "ttcl_meta.json").read_text())


@pytest.mark.parametrize("name", [n for n in EXPR_SHIPPED if n in EXPR_POLICIES])
def test_shipped_expr_policy_loads_generates_and_is_checked(name: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate

    path = MODELS_DIR / name
    meta = _meta(name)
    assert meta["task"] == "expr" and meta["d_model"] // meta["n_head"] >= 32  # vLLM CPU kernels
    assert meta["training_flops"] == 6 * meta["params_non_embedding"] * meta["training_tokens"]
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    problems = make_problems(8, 2, seed=5)
    outs = generate(model, tok, [p.prompt for p in problems], n=1, max_new_tokens=T.max_new_tokens(2))
    scores = [checker.outcome(p.question, o[0]) for p, o in zip(problems, outs, strict=True)]
    assert all(o[0].strip() for o in outs)
    if name != "expr-revise":  # two-operation questions are easy for every policy of the family
        assert sum(scores) >= 4, outs
    assert "| steps |" in (path / "README.md").read_text()


@pytest.mark.skipif(not {"expr-s", "expr-m"} <= set(EXPR_SHIPPED), reason="expr-s or expr-m not shipped")
def test_the_family_spans_sixteen_times_with_growing_training_flops() -> None:
    """expr-s and expr-m ship; the third size, expr-l-grown, is built on request (the package's weights
    are at the 25 MB cap): its recipe's parameter count and its reference build's training FLOPs
    (expr-m's included) complete the family."""
    from transformers import GPT2LMHeadModel

    from ttcl.zoo.family import LM_RECIPES
    from ttcl.zoo.registry import reference_builds
    from ttcl.zoo.train import gpt2_config

    small, mid = _meta("expr-s"), _meta("expr-m")
    ref = reference_builds()["expr-l-grown"]
    params = sum(p.numel() for p in GPT2LMHeadModel(gpt2_config(LM_RECIPES["expr-l-grown"])).parameters())
    assert params == ref["params_total"] >= 16 * small["params_total"]
    assert small["training_flops"] < mid["training_flops"] < ref["training_flops_with_init"]
    assert LM_RECIPES["expr-l-grown"].init_from == "expr-m"  # so its FLOPs include expr-m's


@pytest.mark.skipif(not {"expr-s", "expr-m"} <= set(EXPR_SHIPPED), reason="expr-s or expr-m not shipped")
def test_the_middle_policy_solves_what_the_small_one_cannot() -> None:
    """expr-m (3,600 steps) is far better than expr-s at 4 operations (card: 75% against 13% greedy);
    greedy on 24 questions of a seed that neither the cards nor the benches use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate

    problems = make_problems(24, 4, seed=4242)
    right = {}
    for name in ("expr-s", "expr-m"):
        path = str(MODELS_DIR / name)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        outs = generate(model, tok, [p.prompt for p in problems], n=1, max_new_tokens=T.max_new_tokens(4))
        right[name] = sum(checker.strict(p.question, o[0]) for p, o in zip(problems, outs, strict=True))
    assert right["expr-m"] >= 12 and right["expr-m"] >= right["expr-s"] + 6, right


@pytest.mark.skipif("expr-prm" not in EXPR_SHIPPED, reason="expr-prm not shipped")
def test_shipped_prm_scores_through_the_runtime() -> None:
    """It loads and scores steps through the runtime's PRM verifier. How well it ranks is measured
    on its card (within-question AUROC 0.64 on expr-s samples): it does not reliably put a right
    solution above a wrong one, so no test claims it does."""
    from ttcl.runtime.verifiers import ProcessRewardVerifier

    v = ProcessRewardVerifier("ttcl:expr-prm", agg="last", device="cpu", dtype="float32")
    # expr-s's transformer plus a d_model + 1 score head: its cost per token is expr-s's
    assert v.spec.non_embedding_params <= _meta("expr-s")["params_non_embedding"] + 64 + 1
    q = "12+7; 30-4"
    right, wrong = "12+7=19\n30-4=26\n#### 19,26", "12+7=19\n30-4=36\n#### 19,36"
    scores, usage = v.score([(q, right), (q, wrong)])
    assert all(0.0 < x < 1.0 for x in scores)
    steps = v.step_scores([(q, right), (q, "12+7=19")])
    assert len(steps[0]) == 3 and len(steps[1]) == 1
    assert usage.calls == 2


# ------------------------------------------------------------------ training data and losses


def test_expr_training_data_shows_several_chains_and_is_right() -> None:
    from ttcl.zoo.data import DataSpec, draw_examples

    spec = DataSpec(task="expr", steps=(4,))
    ex = draw_examples(spec, random.Random(0), 200)
    assert all(checker.strict(e.prompt.strip(), e.completion) for e in ex)
    q = ex[0].prompt.strip()
    p = parse_question(q)
    assert p is not None
    chains = {p.solution(random.Random(s)) for s in range(50)}
    assert len(chains) == p.n_chains() > 1


@pytest.mark.parametrize("style", ["state", "trace", "subst"])
def test_expr_data_in_the_other_chain_styles_fits_the_budget(style: str) -> None:
    """expr-s-state, expr-s-trace and expr-s-subst (not shipped) train on these: every example
    strictly right, in its style, and prompt plus completion inside the recipe's context; the token
    budget of the testbed covers the longest completion."""
    from ttcl.zoo.data import draw_examples
    from ttcl.zoo.family import LM_RECIPES

    r = LM_RECIPES[f"expr-s-{style}"]
    assert r.data.style == style and T.chain_style({"recipe": {"data": {"style": style}}}) == style
    ex = draw_examples(r.data, random.Random(2), 700)
    for e in ex:
        p = parse_question(e.prompt.strip())
        assert p is not None and checker.strict(p.question, e.completion)
        assert ("->" in e.completion) == (style == "trace") and ("=" in e.completion) == (style != "state")
        if style == "subst" and p.steps > len(p.parts):  # some operation reduces an earlier result
            assert any(line.count("=") == 2 for line in e.completion.split("\n"))
        assert len(e.prompt) + len(e.completion) + 1 <= r.n_ctx
        assert len(e.completion) + 1 <= T.BEDS["expr"].max_new_tokens(p.steps, style)


@pytest.mark.skipif("expr-s" not in EXPR_SHIPPED, reason="expr-s not shipped")
def test_generation_never_runs_past_the_context() -> None:
    """A budget larger than the room left (expr-s's context is 160 tokens) stops at the context's end
    instead of failing on a position the model does not have."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate

    path = MODELS_DIR / "expr-s"
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    prompt = "+".join(["1"] * 12) + "; 2*3\n"  # 29 tokens
    outs = generate(model, tok, [prompt], n=3, temperature=3.0, max_new_tokens=1000, seed=4)
    assert max(len(o) for o in outs[0]) == 160 - len(prompt), outs  # (at this seed) one ran to the end


def test_expr_revise_data_pairs_own_attempts_with_right_solutions() -> None:
    from ttcl.zoo.data import REVISE_TEMPLATE, DataSpec, draw_examples

    q = "12+7; 30-4"
    attempts = [(q, "12+7=19\n30-4=36\n#### 19,36")]
    ex = draw_examples(DataSpec(kind="revise", task="expr", steps=(3,), revise_frac=1.0), random.Random(1), 5, attempts)
    assert all(e.prompt == REVISE_TEMPLATE.format(question=q, attempt=attempts[0][1]) for e in ex)
    assert all(checker.strict(q, e.completion) for e in ex)
    with pytest.raises(ValueError, match="own attempts"):
        draw_examples(DataSpec(kind="revise", task="expr"), random.Random(1), 1, None)


def test_inline_revise_data_continues_the_draft_and_restates_a_right_answer() -> None:
    """In-context revision data: the attempt sits where the model wrote it (a prompt that extends
    the draft's own context); a strictly right attempt is answered by its answer line, any other
    by a whole right solution."""
    from ttcl.zoo.data import REVISE_INLINE_TEMPLATE, DataSpec, draw_examples

    q = "12+7; 30-4"
    right, wrong = "12+7=19\n30-4=26\n#### 19,26", "12+7=19\n30-4=36\n#### 19,36"
    spec = DataSpec(kind="revise", task="expr", steps=(2,), revise_frac=1.0, revise_style="inline")
    for attempt in (right, wrong):
        for e in draw_examples(spec, random.Random(2), 6, [(q, attempt)]):
            assert e.prompt == f"{q}\n{attempt}\nfix:\n" == REVISE_INLINE_TEMPLATE.format(question=q, attempt=attempt)
            assert e.prompt.startswith(parse_question(q).prompt + attempt)  # the draft's context, then the marker
            if attempt == right:
                assert e.completion == "#### 19,26"
            else:
                assert checker.strict(q, e.completion) and e.completion.count("\n") == 2


def test_pairwise_loss_prefers_right_over_wrong_within_a_question() -> None:
    from ttcl.zoo.verifiers import _pairwise_loss

    batch = [{"qid": "a", "question": "x", "outcome": 1.0}, {"qid": "a", "question": "x", "outcome": 0.0},
             {"qid": "b", "question": "y", "outcome": 0.0}]  # b has no pair: contributes nothing
    good = _pairwise_loss(torch.tensor([3.0, -3.0, 9.0]), batch)
    bad = _pairwise_loss(torch.tensor([-3.0, 3.0, -9.0]), batch)
    assert float(good) < 0.01 < 6.0 < float(bad)
    assert float(_pairwise_loss(torch.tensor([1.0]), batch[:1])) == 0.0


def test_likelihood_verifier_losses_read_the_lines_before_and_at_the_first_error() -> None:
    """expr-lik's training losses (ttcl/zoo/verifiers.py): the language-modelling loss covers the lines
    before a sample's first error, and -log(1 - P(line)) the first wrong line, never a later one."""
    from ttcl.runtime.tasks.expr import ExprChecker
    from ttcl.zoo.verifiers import _lik_batch_lines, _lik_losses

    q, check = "12+7; 30-4", ExprChecker()
    rows = [{"question": q, "completion": c, "step_labels": check.steps(q, c)} for c in (RIGHT_A, WRONG)]
    assert rows[0]["step_labels"] == [1.0, 1.0, 1.0] and rows[1]["step_labels"][:2] == [1.0, 0.0]
    ids, mask, scored, lines = _lik_batch_lines(rows)
    assert [len(x) for x in lines] == [3, 3] and lines[1][1] == range(lines[1][0].stop, lines[1][0].stop + 8)
    # one nat per token everywhere: the wrong line "30-4=36\n" (8 tokens) has P = e^-8
    lp = -torch.ones(ids.shape[0], ids.shape[1] - 1) * scored[:, 1:]
    nll, unlikely = _lik_losses(lp, lines, rows)
    assert float(nll) == pytest.approx(1.0)
    assert float(unlikely) == pytest.approx(-math.log(1 - math.exp(-8)), rel=1e-4)
    # making a line after the first error likelier changes neither loss; the first wrong line does
    later = lp.clone()
    later[1, lines[1][2].start - 1: lines[1][2].stop - 1] = -0.01
    assert [float(x) for x in _lik_losses(later, lines, rows)] == pytest.approx([float(nll), float(unlikely)])
    first = lp.clone()
    first[1, lines[1][1].start - 1: lines[1][1].stop - 1] = -0.01
    assert float(_lik_losses(first, lines, rows)[1]) > 2.0
    # every line right: no unlikelihood term
    assert float(_lik_losses(lp[:1], lines[:1], rows[:1])[1]) == 0.0


# ------------------------------------------------------------------ testbed metrics on hand-made items


def _item(samples: list[str], scores: list[float] | None = None, greedy: str = "") -> T.Item:
    p = parse_question("12+7; 30-4")
    assert p is not None
    return T.Item(p, greedy, samples, scores)


RIGHT_A = "12+7=19\n30-4=26\n#### 19,26"
RIGHT_B = "30-4=26\n12+7=19\n#### 19,26"
WRONG = "12+7=19\n30-4=36\n#### 19,36"


def test_testbed_methods_and_auroc() -> None:
    it = _item([WRONG, WRONG, RIGHT_A, RIGHT_B], scores=[0.1, 0.2, 0.9, 0.8], greedy=WRONG)
    assert T.greedy_right(it) == 0.0
    assert T.method_right(it, "maj", 4) == 0.0  # 2 vs 2: the first-seen answer (wrong) wins ties
    assert T.method_right(it, "weighted", 4) == 1.0
    assert T.method_right(it, "best", 4) == 1.0
    assert T.method_right(it, "pass", 4) == 1.0
    assert T.method_right(it, "pass", 2) == 0.5  # groups [W, W] and [A, B]
    assert T.distinct_correct_chains(it) == 2
    assert T.within_question_auroc([it]) == (1.0, 1)
    assert T.auroc([0.1, 0.9], [False, True]) == 1.0 and T.auroc([0.5, 0.5], [False, True]) == 0.5
    lo, hi = T.wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.21


def test_flops_grow_with_completion_length() -> None:
    meta = {"params_non_embedding": 1000, "n_layer": 2, "d_model": 8}
    one = T.policy_flops(meta, "12+7; 30-4\n", [RIGHT_A])
    two = T.policy_flops(meta, "12+7; 30-4\n", [RIGHT_A, RIGHT_A])
    assert 0 < one < two < 2 * one  # the prompt is prefilled once
    assert T.verifier_flops(meta, "12+7; 30-4", [RIGHT_A]) > 0


@pytest.mark.skipif("expr-s" not in EXPR_SHIPPED, reason="expr-s not shipped")
@pytest.mark.parametrize("style", ["ops", "state", "trace"])
def test_a_policy_card_shows_its_chain_style(style: str, tmp_path) -> None:
    from ttcl.zoo.expr_cards import write_card

    meta = _meta("expr-s")
    meta["recipe"]["data"]["style"] = style
    write_card(tmp_path, meta)
    card = (tmp_path / "README.md").read_text()
    assert ("12+7=19\\n30-4=26" in card) == (style == "ops")
    assert (f"chain style `{style}`" in card) == (style != "ops")
    assert "| steps | greedy |" in card


@pytest.mark.skipif("expr-m" not in EXPR_SHIPPED, reason="expr-m not shipped")
def test_expr_pool_program_answers_tuples_judged_by_the_checker(tmp_path, capsys) -> None:
    """Through the language: programs/expr_pool.ttc votes expr-m's samples; the answer is the tuple as
    written (`19,26`, not the number 1926, which the GSM8K comma rule used to make of it) and the exact
    checker judges it right."""
    from pathlib import Path

    from ttcl.cli import main
    from ttcl.runtime.tasks.expr import iter_jsonl

    ds = tmp_path / "e.jsonl"
    ds.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(4, 2, seed=31))))
    prog = Path(__file__).resolve().parents[1] / "programs" / "expr_pool.ttc"
    code = main(["run", str(prog), "--dataset", str(ds), "--set", "n=4", "--judge", "expr", "--device", "cpu",
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    results = out["results"]
    assert all("," in r["answer"] for r in results)
    assert sum(bool(r["correct"]) for r in results) >= 3, results


def test_seed_list_reads_one_or_several_seeds_and_names_bad_input() -> None:
    assert T.seed_list("777001") == [777001]
    assert T.seed_list("777001, 20261203") == [777001, 20261203]
    with pytest.raises(ValueError, match="'5,x'"):
        T.seed_list("5,x")
    with pytest.raises(ValueError, match="at least one"):
        T.seed_list(" , ")
    with pytest.raises(ValueError, match="at least one"):
        T.seed_list("")


@pytest.mark.parametrize("text", ["1,,2", "1,", ",1", "777001, 20261203,", "1, ,2"])
def test_seed_list_refuses_an_empty_element(text: str) -> None:
    with pytest.raises(ValueError, match="empty element") as e:
        T.seed_list(text)
    assert repr(text) in str(e.value)


@pytest.mark.parametrize("text", ["777001,777001", "1,2,1", "5, 5"])
def test_seed_list_refuses_a_repeated_seed(text: str) -> None:
    """A seed given twice would sample the same items twice and pool them as independent (QA pass)."""
    seed = text.split(",")[0].strip()
    with pytest.raises(ValueError, match=f"seed {seed} is given twice: a repeated seed would pool the same items"):
        T.seed_list(text)
