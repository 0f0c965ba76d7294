"""The shipped reward models read the way their cards say, and tell right from wrong.

Skipped until the zoo ships `ttcl:arith-orm` / `ttcl:arith-prm`.
"""

from __future__ import annotations

import pytest
import torch
from ttcl.compiler.costmodel import forward_flops


def _available(ref: str) -> bool:
    try:
        from ttcl.zoo.registry import resolve_model

        resolve_model(ref)
    except Exception:
        return False
    return True


ORM, PRM = "ttcl:arith-orm", "ttcl:arith-prm"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pairs():
    """(question, right solution, solution with one wrong step) for 24 problems."""
    from ttcl.runtime.tasks.arith import make_problems

    out = []
    for p in make_problems(24, [2, 3, 4], seed=77):
        lines = p.solution.split("\n")
        k = len(lines) // 2  # corrupt a middle step and everything after it follows from it
        head, _, value = lines[k].rpartition("=")
        bad = lines[:k] + [f"{head}={int(value) + 1}"] + lines[k + 1 :]
        out.append((p.question, p.solution, "\n".join(bad)))
    return out


@pytest.mark.skipif(not _available(ORM), reason=f"{ORM} is not shipped yet")
def test_orm_prefers_right_solutions(pairs):
    from ttcl.runtime.verifiers import RewardModelVerifier

    v = RewardModelVerifier(ORM, device="cpu")
    items = [(q, good) for q, good, _ in pairs] + [(q, bad) for q, _, bad in pairs]
    scores, usage = v.score(items)
    good, bad = scores[: len(pairs)], scores[len(pairs) :]
    wins = sum(g > b for g, b in zip(good, bad, strict=True))
    assert wins >= 0.75 * len(pairs)
    lens = [v.item_tokens(q, c) for q, c in items]
    assert usage.calls == len(items) and usage.prompt_tokens == sum(lens)
    assert usage.flops == sum(forward_flops(v.spec, 0, n) for n in lens)


@pytest.mark.skipif(not _available(PRM), reason=f"{PRM} is not shipped yet")
def test_prm_step_scores_drop_at_the_wrong_step(pairs):
    from ttcl.runtime.verifiers import ProcessRewardVerifier

    v = ProcessRewardVerifier(PRM, agg="min", device="cpu")
    good = v.step_scores([(q, g) for q, g, _ in pairs])
    bad = v.step_scores([(q, b) for q, _, b in pairs])
    for (_, g, _), s in zip(pairs, good, strict=True):
        assert len(s) == len(g.split("\n"))
    before = after = 0.0
    for (_, g, _), sg, sb in zip(pairs, good, bad, strict=True):
        k = len(g.split("\n")) // 2
        before += sb[k - 1] if k else sg[0]
        after += sb[k]
    assert after < before  # the score falls at the first wrong step
    mins = v.score([(q, b) for q, _, b in pairs])[0]
    assert mins == pytest.approx([min(s) for s in bad])
    assert sum(min(s) for s in good) > sum(mins)
