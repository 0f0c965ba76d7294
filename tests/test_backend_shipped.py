"""The backend on the shipped policy `ttcl:arith-s`: real prompts, real answers.

Falls back to arith-m / arith-l, and skips until the zoo ships one (tests/test_backend.py covers the
mechanics on a random model meanwhile).
"""

from __future__ import annotations

import pytest
from shipped import available

from ttcl.runtime.backends import ExtendRequest, GenRequest, SamplingParams

# the default policy; a larger sibling while the zoo is still training it
POLICY = next((r for r in ("ttcl:arith-s", "ttcl:arith-m", "ttcl:arith-l") if available(r)), None)
pytestmark = pytest.mark.skipif(POLICY is None, reason="no arith policy is shipped yet")


@pytest.fixture(scope="module")
def policy():
    from ttcl.runtime.backends.transformers import TransformersBackend

    return TransformersBackend(POLICY, device="cpu")


@pytest.fixture(scope="module")
def problems():
    from ttcl.runtime.tasks.arith import make_problems

    return make_problems(12, [2, 3, 4], seed=123)


def test_greedy_batched_equals_one_by_one_and_solves(policy, problems):
    from ttcl.runtime.tasks import get_checker

    greedy = SamplingParams(temperature=0.0, max_tokens=80)
    policy.clear_cache()
    batched = policy.generate([GenRequest(p.prompt, 1, greedy) for p in problems])
    for p, r in zip(problems, batched, strict=True):
        policy.clear_cache()
        alone = policy.generate([GenRequest(p.prompt, 1, greedy)])[0]
        assert r.samples[0].token_ids == alone.samples[0].token_ids
        assert r.samples[0].finish_reason == "eos"
    check = get_checker("arith")
    solved = sum(
        check.outcome(p.question, r.samples[0].text) for p, r in zip(problems, batched, strict=True)
    )
    assert solved >= len(problems) // 2  # a trained policy, decoded correctly


def test_step_by_step_extend_rebuilds_the_greedy_solution(policy, problems):
    p = problems[5]
    greedy = SamplingParams(temperature=0.0, max_tokens=80)
    policy.clear_cache()
    whole = policy.generate([GenRequest(p.prompt, 1, greedy)])[0].samples[0]
    step = SamplingParams(temperature=0.0, max_tokens=40, stop=("\n",))
    policy.clear_cache()
    first = policy.generate([GenRequest(p.prompt, 1, step)])[0]  # stop strings: KV kept
    partial, charged = first.samples[0].text, [first.usage.prompt_tokens]
    reason = first.samples[0].finish_reason
    while reason == "stop":
        r = policy.extend([ExtendRequest(p.prompt, partial, 1, step)])[0]
        partial += r.samples[0].text
        charged.append(r.usage.prompt_tokens)
        reason = r.samples[0].finish_reason
    assert partial == whole.text
    assert charged[0] == policy.count_tokens(p.prompt)
    assert set(charged[1:]) == {1}  # every extension reuses the cached prefix but the last token


def test_sampling_is_reproducible_and_diverse(policy, problems):
    hot = SamplingParams(temperature=1.0, max_tokens=80)
    reqs = [GenRequest(p.prompt, 8, hot, seed=i) for i, p in enumerate(problems[:4])]
    a = policy.generate(reqs)
    policy.clear_cache()
    b = policy.generate(reqs[::-1])[::-1]
    assert [[s.text for s in r.samples] for r in a] == [[s.text for s in r.samples] for r in b]
    assert any(len({s.text for s in r.samples}) > 1 for r in a)
