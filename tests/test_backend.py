"""The transformers backend on a tiny random GPT-2: padding, seeds, accounting, stops, OOM splits.

A random model is enough here: these tests check mechanics (what is computed
and charged), never what the model says. Model-quality checks use the shipped
models (tests/test_verifiers.py).
"""

from __future__ import annotations

import pytest
import torch

from ttcl.compiler.costmodel import forward_flops
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends import ExtendRequest, GenRequest, SamplingParams
from ttcl.runtime.backends.random_model import save_random_gpt2
from ttcl.runtime.backends.transformers import TransformersBackend

PROMPTS = ["12+3=", "4*5-6=", "7", "(8+9)*2-11=?", "hello world, 12345"]
GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
HOT = SamplingParams(temperature=1.0, max_tokens=16)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_random_gpt2(tmp_path_factory.mktemp("tiny") / "gpt2", n_positions=128)


@pytest.fixture(scope="module")
def shared_backend(tiny_dir):
    return TransformersBackend(tiny_dir, device="cpu")


@pytest.fixture
def backend(shared_backend):
    shared_backend.clear_cache()
    return shared_backend


def ids(results):
    return [[s.token_ids for s in r.samples] for r in results]


def test_greedy_batched_equals_one_by_one(backend):
    batched = backend.generate([GenRequest(p, 1, GREEDY, seed=0) for p in PROMPTS])
    for p, got in zip(PROMPTS, batched, strict=True):
        backend.clear_cache()
        alone = backend.generate([GenRequest(p, 1, GREEDY, seed=0)])[0]
        assert got.samples[0].token_ids == alone.samples[0].token_ids
    assert len({tuple(r.samples[0].token_ids) for r in batched}) > 1  # the model is not constant


def test_same_seed_same_samples_regardless_of_batch(backend):
    reqs = [GenRequest(p, 3, HOT, seed=10 + k) for k, p in enumerate(PROMPTS)]
    together = ids(backend.generate(reqs))
    backend.clear_cache()
    reversed_ = ids(backend.generate(reqs[::-1]))[::-1]
    backend.clear_cache()
    alone = [ids(backend.generate([r]))[0] for r in reqs]
    assert together == reversed_ == alone
    # sample j depends on (seed, j) only: the first 3 of n=5 are the n=3 samples
    wider = ids(backend.generate([GenRequest(PROMPTS[0], 5, HOT, seed=10)]))[0]
    assert wider[:3] == together[0]
    assert len({tuple(t) for t in wider}) > 1
    other_seed = ids(backend.generate([GenRequest(PROMPTS[0], 3, HOT, seed=99)]))[0]
    assert other_seed != together[0]


def test_mixed_sampling_params_in_one_batch(backend):
    reqs = [
        GenRequest(PROMPTS[0], 2, GREEDY, seed=1),
        GenRequest(PROMPTS[1], 2, SamplingParams(temperature=0.7, top_p=0.9, max_tokens=5), seed=2),
        GenRequest(PROMPTS[2], 2, SamplingParams(temperature=1.3, max_tokens=9), seed=3),
    ]
    together = ids(backend.generate(reqs))
    assert together == [ids(backend.generate([r]))[0] for r in reqs]
    assert together[0][0] == together[0][1]  # greedy: both samples identical
    assert all(len(t) <= 5 for t in together[1])


def test_shared_prefix_charged_once(backend):
    p = PROMPTS[3]
    res = backend.generate([GenRequest(p, 8, HOT, seed=0)])[0]
    assert res.usage.calls == 8
    assert res.usage.prompt_tokens == backend.count_tokens(p)
    assert res.usage.gen_tokens == sum(len(s.token_ids) for s in res.samples)
    # the same prompt from two requests in one call: prefilled once, charged to the first
    backend.clear_cache()
    a, b = backend.generate([GenRequest(p, 4, HOT, seed=0), GenRequest(p, 4, HOT, seed=1)])
    assert (a.usage.prompt_tokens, b.usage.prompt_tokens) == (backend.count_tokens(p), 0)
    # a later call finds the prompt and its next-token logits in the prefix cache: no prefill
    again = backend.generate([GenRequest(p, 2, HOT, seed=0)])[0]
    assert (again.usage.prompt_tokens, again.usage.flops) == (
        0,
        sum(forward_flops(backend.spec, len(p), len(p) + len(s.token_ids)) for s in again.samples),
    )
    assert ids([again])[0] == ids([a])[0][:2]
    # a prompt that extends a cached one computes only its new tokens
    longer = backend.generate([GenRequest(p + "12", 1, HOT, seed=0)])[0]
    assert longer.usage.prompt_tokens == 2


def test_flops_are_forward_flops_sums(backend):
    spec = backend.spec
    res = backend.generate([GenRequest(p, 3, HOT, seed=5) for p in PROMPTS[:3]])
    for p, r in zip(PROMPTS[:3], res, strict=True):
        L = backend.count_tokens(p)
        want = forward_flops(spec, 0, L) + sum(
            forward_flops(spec, L, L + len(s.token_ids)) for s in r.samples
        )
        assert r.usage.flops == want
        assert r.usage.seconds > 0


def test_max_tokens_and_stop_strings(backend):
    free = backend.generate([GenRequest(PROMPTS[1], 4, SamplingParams(max_tokens=20), seed=3)])[0]
    assert all(len(s.token_ids) <= 20 for s in free.samples)
    assert any(s.finish_reason == "length" and len(s.token_ids) == 20 for s in free.samples)
    stop = free.samples[0].text[4]  # a character this stream is known to produce
    params = SamplingParams(max_tokens=20, stop=(stop, "@@"))
    cut = backend.generate([GenRequest(PROMPTS[1], 4, params, seed=3)])[0]
    for f, c in zip(free.samples, cut.samples, strict=True):
        if stop in f.text:  # same stream, cut right after the first stop (kept)
            assert c.finish_reason == "stop"
            assert c.text == f.text[: f.text.index(stop) + 1]
            assert c.token_ids == f.token_ids[: len(c.token_ids)]
        else:
            assert c.text == f.text and c.finish_reason == f.finish_reason
    assert (
        cut.usage.gen_tokens == sum(len(s.token_ids) for s in cut.samples) < free.usage.gen_tokens
    )


def test_extend_reuses_cached_prefix(backend):
    params = SamplingParams(temperature=0.0, max_tokens=6)
    first = backend.generate([GenRequest(PROMPTS[0], 1, params, seed=0, keep_kv=True)])[0]
    partial = first.samples[0].text
    ext = backend.extend([ExtendRequest(PROMPTS[0], partial, 2, params, seed=0)])[0]
    assert ext.usage.prompt_tokens == 1  # only the last sampled token was never fed
    backend.clear_cache()
    fresh = backend.generate([GenRequest(PROMPTS[0] + partial, 2, params, seed=0)])[0]
    assert fresh.usage.prompt_tokens == backend.count_tokens(PROMPTS[0] + partial)
    assert ids([ext]) == ids([fresh])
    L = backend.count_tokens(PROMPTS[0] + partial)
    assert ext.usage.flops == forward_flops(backend.spec, L - 1, L) + sum(
        forward_flops(backend.spec, L, L + len(s.token_ids)) for s in ext.samples
    )


def test_extend_shares_prefix_with_other_prompts(backend):
    params = SamplingParams(temperature=0.0, max_tokens=4)
    backend.generate([GenRequest("common preamble: 1+1=", 1, params, seed=0)])
    res = backend.extend([ExtendRequest("common preamble: 2+2=", "4", 1, params, seed=0)])[0]
    assert res.usage.prompt_tokens == len("2+2=4")
    backend.clear_cache()
    fresh = backend.generate([GenRequest("common preamble: 2+2=4", 1, params, seed=0)])[0]
    assert ids([res]) == ids([fresh])


def test_an_item_is_charged_as_if_alone_whatever_others_cached(backend):
    """Requests of different owners (a run's items): one finds the other's prompt in the cache, and
    is charged its whole prefill anyway; the backend counts what it did not compute."""
    p = PROMPTS[3]
    first = backend.generate([GenRequest(p, 2, HOT, seed=0, owner=1)])[0]
    other = backend.generate([GenRequest(p + "12", 2, HOT, seed=0, owner=2)])[0]
    own = backend.generate([GenRequest(p + "12", 2, HOT, seed=1, owner=1)])[0]
    n = backend.count_tokens(p)
    assert first.usage.prompt_tokens == n and other.usage.prompt_tokens == n + 2
    assert own.usage.prompt_tokens == 2  # its own earlier prompt is what it would find alone
    # owner 2's first n tokens were served from owner 1's work, and owner 1's last 2 from owner 2's
    assert backend.shared_prompt_tokens == n + 2


def test_contexts_that_begin_alike_prefill_their_common_part_once(tiny_dir, backend):
    preamble = "You are a careful calculator; answer with one number only. "
    reqs = [GenRequest(preamble + q, 2, HOT, seed=k, owner=k) for k, q in enumerate(["1+1=", "2+3=", "7*6="])]
    enc = [backend._encode(r.prompt) for r in reqs]
    common = next(i for i in range(min(map(len, enc))) if len({e[i] for e in enc}) > 1)
    assert common >= 16
    warm = backend.generate(reqs)
    cold_backend = TransformersBackend(tiny_dir, device="cpu", warm_shared=False)
    cold = cold_backend.generate(reqs)
    assert ids(warm) == ids(cold)
    # each item is charged its whole prompt either way; the common part was computed once, not three times
    assert [(w.usage.prompt_tokens, w.usage.gen_tokens, w.usage.flops) for w in warm] == [
        (c.usage.prompt_tokens, c.usage.gen_tokens, c.usage.flops) for c in cold]
    assert [r.usage.prompt_tokens for r in warm] == [len(e) for e in enc]
    assert backend.shared_prompt_tokens == 2 * common and cold_backend.shared_prompt_tokens == 0


def test_a_warmed_common_part_is_charged_to_a_request_that_begins_with_it(backend):
    """One item's three requests, two sharing a long beginning: the warmed part was booked on the item's
    first request, whose prompt does not begin with it, so that node went past its static bound (QA pass)."""
    preamble = "You are a careful calculator; answer with one number only. "
    reqs = [GenRequest("1+1=", 1, HOT, seed=0, owner=7), GenRequest(preamble + "2+3=", 1, HOT, seed=1, owner=7),
            GenRequest(preamble + "7*6=", 1, HOT, seed=2, owner=7)]
    got = backend.generate(reqs)
    enc = [backend._encode(r.prompt) for r in reqs]
    assert got[0].usage.prompt_tokens == len(enc[0])  # its own prompt, nothing more
    assert got[0].usage.flops == forward_flops(backend.spec, 0, len(enc[0])) + forward_flops(
        backend.spec, len(enc[0]), len(enc[0]) + got[0].usage.gen_tokens)
    # the two that share the preamble pay it once between them, and each pays no more than its whole prompt
    common = next(i for i, (a, b) in enumerate(zip(enc[1], enc[2], strict=False)) if a != b)
    assert common >= 16
    assert got[1].usage.prompt_tokens + got[2].usage.prompt_tokens == len(enc[1]) + len(enc[2]) - common
    for r, e in zip(got[1:], enc[1:], strict=True):
        assert r.usage.prompt_tokens <= len(e)


def test_oom_split_gives_identical_results(tiny_dir, backend):
    reqs = [GenRequest(p, 3, HOT, seed=k) for k, p in enumerate(PROMPTS[:3])]
    whole = backend.generate(reqs)
    splitting = TransformersBackend(tiny_dir, device="cpu", simulate_oom_rows=2)
    split = splitting.generate(reqs)
    assert splitting.oom_splits > 0
    assert splitting.max_batch_rows is not None and splitting.max_batch_rows <= 4
    assert ids(split) == ids(whole)
    for w, s in zip(whole, split, strict=True):
        assert (s.usage.calls, s.usage.gen_tokens) == (w.usage.calls, w.usage.gen_tokens)
    # a prompt split across halves is prefilled once: the second half finds it (and its
    # next-token logits) in the prefix cache, so usage stays within the unsplit bound
    assert [s.usage.prompt_tokens for s in split] == [w.usage.prompt_tokens for w in whole]
    assert [s.usage.flops for s in split] == [w.usage.flops for w in whole]


def test_single_row_oom_is_a_clear_error(tiny_dir):
    b = TransformersBackend(tiny_dir, device="cpu", simulate_oom_rows=0)
    with pytest.raises(TtclRuntimeError, match="out of memory"):
        b.generate([GenRequest("1+1=", 1, GREEDY)])


def test_prompt_limits(backend):
    with pytest.raises(TtclRuntimeError, match="prompt has 5 tokens, more than the declared 4"):
        backend.generate([GenRequest("12+3=", 1, GREEDY, max_prompt_tokens=4)])
    with pytest.raises(TtclRuntimeError, match="context of 128"):
        backend.generate([GenRequest("1" * 200, 1, GREEDY)])
    # generation stops at the context end, reported as "length"
    res = backend.generate([GenRequest("1" * 120, 1, SamplingParams(max_tokens=50), seed=0)])[0]
    assert len(res.samples[0].token_ids) <= 8


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(TtclRuntimeError, match="missing.* nor a local directory|no such directory"):
        TransformersBackend(tmp_path / "missing")
    with pytest.raises(TtclRuntimeError, match="has no config.json"):
        TransformersBackend(tmp_path)
    with pytest.raises(TtclRuntimeError, match="ttcl:no-such-model"):
        TransformersBackend("ttcl:no-such-model")
    with pytest.raises(TtclRuntimeError, match="n must be >= 1"):
        GenRequest("x", 0)
    with pytest.raises(TtclRuntimeError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_spec_counts_non_embedding_params(backend):
    cfg = backend.model.config
    total = sum(p.numel() for p in backend.model.parameters())
    embed = cfg.vocab_size * cfg.n_embd + cfg.n_positions * cfg.n_embd
    assert backend.spec.non_embedding_params == total - embed
    assert (backend.spec.n_layer, backend.spec.d_model, backend.spec.n_ctx) == (2, 64, 128)
    from ttcl.compiler.models import spec_from_dir

    assert spec_from_dir(backend.path) == backend.spec  # the static bound counts the same N


def test_sampler_follows_the_distribution():
    from ttcl.runtime.backends import sampling as S

    n = 20000
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(n, 1)
    keys = S.key_tensor([S.stream_key(3, j) for j in range(n)], torch.device("cpu"))
    ones = torch.ones(n)
    freq = torch.bincount(S.sample(logits, ones, ones, S.uniforms(keys, 0)), minlength=3) / n
    assert freq.tolist() == pytest.approx([0.5, 0.3, 0.2], abs=0.015)
    cut = S.sample(logits, ones, torch.full((n,), 0.7), S.uniforms(keys, 1))
    assert (torch.bincount(cut, minlength=3) / n).tolist() == pytest.approx(
        [0.625, 0.375, 0], abs=0.015
    )
    greedy = S.sample(logits, torch.zeros(n), ones, S.uniforms(keys, 2))
    assert set(greedy.tolist()) == {0}
    # a wide vocabulary: the top-k shortcut draws exactly what a full sort draws
    wide = torch.randn(64, 5000) * 4
    keys = keys[:64]
    fast = S.sample(wide, ones[:64], torch.full((64,), 0.9), S.uniforms(keys, 3))
    k, S._NUCLEUS_K = S._NUCLEUS_K, 10**9
    try:
        full = S.sample(wide, ones[:64], torch.full((64,), 0.9), S.uniforms(keys, 3))
    finally:
        S._NUCLEUS_K = k
    assert torch.equal(fast, full)


def test_sampling_params_refuse_a_temperature_that_is_not_a_finite_number() -> None:
    """NaN slipped past `temperature < 0` (a comparison with NaN is false) and sampled as if greedy."""
    from ttcl.errors import TtclRuntimeError
    from ttcl.runtime.backends.base import SamplingParams

    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(TtclRuntimeError, match="temperature must be a finite number >= 0"):
            SamplingParams(temperature=bad)
    assert SamplingParams(temperature=0.0).temperature == 0.0
