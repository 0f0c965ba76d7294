"""Widening a trained GPT-2 by duplication (ttcl/zoo/grow.py): the wider model starts computing the
narrower one's function, and a widening that cannot keep head_dim is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from ttcl.zoo.family import LM_RECIPES
from ttcl.zoo.grow import add_noise, widen_gpt2
from ttcl.zoo.train import LMRecipe, _load_init, gpt2_config


def _model(d: int, heads: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    r = LMRecipe("t", "policy", d, 2, heads, 48, 1, init_std=0.2)
    return GPT2LMHeadModel(gpt2_config(r)).eval()


@pytest.mark.parametrize("factor", [2, 3])
def test_widened_model_computes_the_same_logits(factor: int) -> None:
    small = _model(64, 2, seed=0)
    with torch.no_grad():  # a trained model's LayerNorms are not the identity: make them not so here
        for n, p in small.named_parameters():
            if ".ln_" in n or "ln_f" in n:
                p.add_(torch.randn_like(p) * 0.3)
    big = _model(64 * factor, 2 * factor, seed=1)
    state = widen_gpt2(small.state_dict(), factor)
    missing, unexpected = big.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" or k.endswith(".attn.bias") for k in missing)
    big.tie_weights()
    ids = torch.randint(0, small.config.vocab_size, (3, 40))
    with torch.no_grad():
        a, b = small(ids).logits, big(ids).logits
    assert a.abs().max() > 1.0  # the comparison is not between two near-zero outputs
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    # a random model of the wide shape computes something else: the check can fail
    with torch.no_grad():
        assert (_model(64 * factor, 2 * factor, seed=2)(ids).logits - a).abs().max() > 0.1


def test_noise_is_seeded_and_breaks_the_copies() -> None:
    state = widen_gpt2(_model(64, 2, seed=0).state_dict(), 2)
    w = "transformer.h.0.mlp.c_fc.weight"
    assert torch.equal(state[w][:, :256], state[w][:, 256:])  # the two copies of the hidden units
    one = {k: v.clone() for k, v in state.items()}
    two = {k: v.clone() for k, v in state.items()}
    add_noise(one, 1e-3, torch.Generator().manual_seed(5))
    add_noise(two, 1e-3, torch.Generator().manual_seed(5))
    assert all(torch.equal(one[k], two[k]) for k in state)
    assert not torch.equal(one[w][:, :256], one[w][:, 256:])
    assert (one[w] - state[w]).abs().max() < 1e-2
    assert torch.equal(one["transformer.h.0.ln_1.weight"], state["transformer.h.0.ln_1.weight"])  # vectors untouched


def test_load_init_widens_from_a_saved_model_and_refuses_a_bad_width(tmp_path: Path) -> None:
    small = _model(64, 2, seed=0)
    small.save_pretrained(str(tmp_path / "small"), safe_serialization=True)
    r = LMRecipe("wide", "policy", 128, 2, 4, 48, 1, seed=3, init_from="small")
    big = GPT2LMHeadModel(gpt2_config(r)).eval()
    _load_init(big, tmp_path / "small", r)
    ids = torch.randint(0, small.config.vocab_size, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(big(ids).logits, small(ids).logits, rtol=1e-4, atol=1e-4)
    bad = LMRecipe("wide", "policy", 128, 2, 2, 48, 1, init_from="small")  # head_dim 64, not 32
    with pytest.raises(ValueError, match="head_dim must stay"):
        _load_init(GPT2LMHeadModel(gpt2_config(bad)), tmp_path / "small", bad)
    deep = LMRecipe("wide", "policy", 128, 3, 4, 48, 1, init_from="small")
    with pytest.raises(ValueError, match="keeps the depth"):
        _load_init(GPT2LMHeadModel(gpt2_config(deep)), tmp_path / "small", deep)
    odd = LMRecipe("wide", "policy", 96, 2, 3, 48, 1, init_from="small")  # 1.5x: not a whole multiple
    with pytest.raises(ValueError, match="whole multiple"):
        _load_init(GPT2LMHeadModel(gpt2_config(odd)), tmp_path / "small", odd)


def test_the_grown_recipe_keeps_head_dim_and_grows_a_shipped_policy() -> None:
    r = LM_RECIPES["expr-l-grown"]
    src = LM_RECIPES[r.init_from]
    assert r.n_embd % src.n_embd == 0 and r.n_embd // r.n_head == src.n_embd // src.n_head >= 32
    assert r.n_layer == src.n_layer and r.init_noise > 0
    meta = json.loads((Path(__file__).resolve().parents[1] / "ttcl/zoo/models" / src.name / "ttcl_meta.json").read_text())
    assert meta["d_model"] == src.n_embd


def test_the_sizes_bench_compares_a_family_on_the_same_items(tmp_path: Path) -> None:
    """bench/testbed_sizes.py: each size's greedy accuracy per bin and the paired difference against
    the next smaller size are computed from the same per-item outcomes it writes out."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "testbed_sizes.py"
    out = tmp_path / "sizes.json"
    p = subprocess.run([sys.executable, str(script), "--task", "expr", "--policies", "ttcl:expr-s,ttcl:expr-m",
                        "--per-level", "10", "--seed", "555", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["bins"] == [2, 3, 4, 5, 6, 7, 8] and len(d["right"]["ttcl:expr-m"]) == 70
    s, m = d["right"]["ttcl:expr-s"], d["right"]["ttcl:expr-m"]
    for b in d["bins"]:
        idx = [i for i, st in enumerate(d["steps"]) if st == b]
        assert len(idx) == 10
        cell = d["table"]["ttcl:expr-m"][str(b)]
        assert cell["greedy"] == sum(m[i] for i in idx) / 10
        assert cell["minus_smaller"][0] == sum(m[i] - s[i] for i in idx) / 10
        assert cell["minus_smaller"][1] <= cell["minus_smaller"][0] <= cell["minus_smaller"][2]
        assert "minus_smaller" not in d["table"]["ttcl:expr-s"][str(b)]
    assert "| - ttcl:expr-s |" in p.stdout
    bad = subprocess.run([sys.executable, str(script), "--policies", f"ttcl:expr-s,{tmp_path / 'nothing'}"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nothing" in bad.stderr and "Traceback" not in bad.stderr
