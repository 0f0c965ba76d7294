"""Verifiers: batch interface, step-score reading, aggregation and usage accounting.

Mechanics run on tiny random models (what is read where, what is charged);
behaviour on the shipped arith verifiers runs when they are present.
"""

from __future__ import annotations

import math

import pytest
import torch

from ttcl.compiler.costmodel import forward_flops
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.random_model import save_random_classifier, save_random_gpt2
from ttcl.runtime.backends.transformers import TransformersBackend
from ttcl.runtime.verifiers import (
    CheckerVerifier,
    ItemFailures,
    JudgeVerifier,
    ProcessRewardVerifier,
    RewardModelVerifier,
    aggregate,
)

ITEMS = [("1+2=?", "1+2=3\n#### 3"), ("5*6=?", "5*6=31\n\n #### 31 \n"), ("7-1=?", "#### 6")]


@pytest.fixture(scope="module")
def orm_dir(tmp_path_factory):
    meta = {"input_template": "Q: {question}\nA: {completion}", "score": "sigmoid(logits[0])"}
    return save_random_classifier(tmp_path_factory.mktemp("orm"), token_level=False, meta=meta)


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    meta = {"input_template": "{question}\n{steps}", "step_end_token": "\n"}
    return save_random_classifier(tmp_path_factory.mktemp("prm"), token_level=True, meta=meta)


def test_reward_model_scores_and_usage(orm_dir):
    v = RewardModelVerifier(str(orm_dir), device="cpu")
    scores, usage = v.score(ITEMS)
    assert len(scores) == 3 and all(0 < s < 1 for s in scores)
    texts = [f"Q: {q}\nA: {c}" for q, c in ITEMS]
    lens = [len(t) for t in texts]  # char tokenizer
    assert (usage.calls, usage.prompt_tokens, usage.gen_tokens) == (3, sum(lens), 0)
    assert usage.flops == sum(forward_flops(v.spec, 0, n) for n in lens)
    # batching and padding do not change a score
    alone = [v.score([it])[0][0] for it in ITEMS]
    assert alone == pytest.approx(scores, abs=1e-5)
    # the score is sigmoid of the head's logit at the last token
    ids = torch.tensor([v.m.tokenizer(texts[0])["input_ids"]])
    with torch.no_grad():
        logit = v.m.model(input_ids=ids).logits[0, 0]
    assert scores[0] == pytest.approx(float(torch.sigmoid(logit)), abs=1e-5)


def test_prm_step_scores_and_aggregates(prm_dir):
    v = ProcessRewardVerifier(str(prm_dir), agg="min", device="cpu")
    steps = v.step_scores(ITEMS)
    assert [len(s) for s in steps] == [2, 2, 1]  # blank lines dropped, lines stripped
    # step i is read at the i-th "\n" after the question
    text = "5*6=?\n5*6=31\n#### 31\n"
    ids = torch.tensor([v.m.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        z = torch.sigmoid(v.m.model(input_ids=ids).logits[0, :, 0])
    assert steps[1] == pytest.approx([float(z[12]), float(z[20])], abs=1e-5)
    mins, usage = v.score(ITEMS)
    assert mins == pytest.approx([min(s) for s in steps])
    assert usage.calls == 3
    last = ProcessRewardVerifier(str(prm_dir), agg="last", device="cpu").score(ITEMS)[0]
    assert last == pytest.approx([s[-1] for s in steps])
    assert aggregate([0.5, 0.4], "prod") == pytest.approx(0.2)
    assert aggregate([], "min") == 0.0
    with pytest.raises(TtclRuntimeError, match="unknown step aggregate"):
        ProcessRewardVerifier(str(prm_dir), agg="mean")


def test_judge_is_normalised_yes_probability(tmp_path):
    backend = TransformersBackend(save_random_gpt2(tmp_path / "lm"), device="cpu")
    judge = JudgeVerifier(backend, "Question: {question}\nAnswer: {completion}\nCorrect? ")
    assert judge.yes == sorted({backend.encode("y")[0], backend.encode("Y")[0]})
    scores, usage = judge.score(ITEMS)
    assert all(0 < s < 1 for s in scores)
    prompt = f"Question: {ITEMS[0][0]}\nAnswer: {ITEMS[0][1]}\nCorrect? "
    with torch.no_grad():
        logits = backend.model(torch.tensor([backend.encode(prompt)])).logits[0, -1]
    p = torch.softmax(logits, -1)
    py, pn = p[judge.yes].sum(), p[judge.no].sum()
    assert scores[0] == pytest.approx(float(py / (py + pn)), abs=1e-5)
    assert usage.calls == 3
    # the prefix cache serves what was computed before: all of it, or the shared head
    again, usage2 = judge.score(ITEMS)
    assert again == pytest.approx(scores, abs=1e-5)
    assert (usage2.calls, usage2.prompt_tokens, usage2.flops) == (3, 0, 0.0)
    q, c = ITEMS[0]
    usage3 = judge.score([(q, c + "!")])[1]
    assert usage3.prompt_tokens == len("!\nCorrect? ")
    # out of memory on the batch: halves are scored separately, same scores
    backend.clear_cache()
    backend.simulate_oom_rows = 1
    split, usage4 = judge.score(ITEMS)
    assert split == pytest.approx(scores, abs=1e-5) and backend.oom_splits == 2
    assert (
        usage4.calls == 3 and usage4.prompt_tokens <= usage.prompt_tokens
    )  # later halves reuse prefixes


class _Flaky:
    def outcome(self, question: str, completion: str) -> float:
        if "boom" in completion:
            raise ValueError("boom")
        return 1.0 if completion.endswith("3") else 0.0

    def steps(self, question: str, completion: str) -> list[float]:
        return [1.0, 0.0]


def test_checker_verifier_isolates_failures():
    v = CheckerVerifier(_Flaky())
    assert v.score([("q", "#### 3"), ("q", "#### 4")]) == ([1.0, 0.0], v.score([])[1])
    with pytest.raises(ItemFailures) as info:
        v.score([("q", "#### 3"), ("q", "boom"), ("q", "x")])
    assert info.value.scores[0] == 1.0 and math.isnan(info.value.scores[1])
    assert list(info.value.failures) == [1]
    assert v.step_scores([("q", "a\nb")]) == [[1.0, 0.0]]
    usage = v.score([("q", "#### 3")])[1]
    assert (usage.calls, usage.flops) == (0, 0.0)


def test_over_long_item_fails_alone(orm_dir, prm_dir):
    items = [ITEMS[0], ("1+1=?", "9" * 300), ITEMS[2]]
    for v in (
        RewardModelVerifier(str(orm_dir), device="cpu"),
        ProcessRewardVerifier(str(prm_dir), device="cpu"),
    ):
        with pytest.raises(
            ItemFailures, match="item 1 has .* tokens, more than the model's context of 256"
        ) as info:
            v.score(items)
        good = v.score([ITEMS[0], ITEMS[2]])
        assert math.isnan(info.value.scores[1])
        assert [info.value.scores[0], info.value.scores[2]] == pytest.approx(good[0], abs=1e-5)
        assert (
            info.value.usage.calls == 2 and info.value.usage.prompt_tokens == good[1].prompt_tokens
        )


def test_missing_verifier_model_is_a_clear_error(tmp_path):
    with pytest.raises(TtclRuntimeError, match="nope.* nor a local directory|no such directory"):
        RewardModelVerifier(str(tmp_path / "nope"))


JUDGED = """ttcl 1
model policy = "ttcl:arith-s"
verifier j = judge(policy, "Q={question} A={c.text} ok?")

strategy main(question: text[<=20]) -> answer {
    c = sample(policy, "{question}\\n", n = 1, max_tokens = 5)
    d = sample(policy, "{question}\\n", n = 1, max_tokens = 40, temperature = 0)
    return best(verify(j, d))
}
"""


def test_a_judge_rubric_reads_the_item_and_the_candidate_whatever_the_caller_names(tmp_path, monkeypatch):
    """With the caller's input named `question` (as every program names it) the rubric's `{question}` was empty at
    run time, and a caller's local `c` emptied `{c.text}` (QA pass): the rubric now sees no strategy variable."""
    import ttcl
    from ttcl.errors import TtclError
    from ttcl.runtime import verifiers as V

    seen: list[str] = []
    real = V.JudgeVerifier.score

    def score(self, items):  # the real judge, recording what it reads
        seen.extend(c for _, c in items)
        return real(self, items)

    monkeypatch.setattr(V.JudgeVerifier, "score", score)
    prog = tmp_path / "j.ttc"
    prog.write_text(JUDGED)
    ttcl.run(str(prog), inputs="35 *2 -10", device="cpu")
    assert len(seen) == 1 and seen[0].startswith("Q=35 *2 -10 A=") and seen[0].endswith(" ok?"), seen
    assert len(seen[0]) > len("Q=35 *2 -10 A= ok?")  # the candidate's text is in it
    prog.write_text(JUDGED.replace("{question} A=", "{question} {d} A="))
    with pytest.raises(TtclError, match="unknown template field `{d}`"):  # nor any other variable of a strategy
        ttcl.run(str(prog), inputs="35 *2 -10", device="cpu")


REVISE_IN_HELPER = """ttcl 1
model policy = "ttcl:arith-s"
model reviser = "ttcl:arith-revise"
budget per item { calls <= 8 }
strategy fix(q: text[<=40], d: candidates) -> answer {
    return vote(revise(reviser, d, prompt = "{question}\\nattempt: {c.text}\\nrevision:\\n", max_tokens = 40,
                       temperature = 0.0))
}
strategy main(question: text[<=40]) -> answer {
    drafts = sample(policy, "{question}\\n", n = 2, max_tokens = 40, temperature = 0.0)
    return fix(question, drafts)
}
"""


def test_a_revise_prompt_reads_the_items_question_in_a_helper(tmp_path):
    """`{question}` in a revise prompt inside a helper whose input is not named `question` was "unknown template
    field" (QA pass), though the built-ins table lists it and the runtime fills it with the item's question, as a
    judge's rubric reads it. It now reads the same text as the same prompt written in the entry strategy."""
    import ttcl
    from ttcl.errors import TtclError

    helper = tmp_path / "helper.ttc"
    helper.write_text(REVISE_IN_HELPER)
    inline = tmp_path / "inline.ttc"
    inline.write_text(REVISE_IN_HELPER.replace("    return fix(question, drafts)", "    return fix(question, drafts)")
                      .replace("strategy fix(q: text[<=40], d: candidates)", "strategy fix(question: text[<=40], d: candidates)"))
    a = ttcl.run(str(helper), inputs="35 *2 -10", device="cpu")
    b = ttcl.run(str(inline), inputs="35 *2 -10", device="cpu")
    assert a.summary.results[0]["status"] == "ok" and a.answers == b.answers
    assert a.summary.results[0]["cost"]["prompt_tokens"] == b.summary.results[0]["cost"]["prompt_tokens"]
    assert a.summary.bound_total == b.summary.bound_total
    helper.write_text(REVISE_IN_HELPER.replace("{question}\\nattempt", "{qestion}\\nattempt"))
    with pytest.raises(TtclError, match="unknown template field `{qestion}`") as raised:
        ttcl.run(str(helper), inputs="35 *2 -10", device="cpu")
    assert "did you mean `question`?" in str(raised.value)
