"""Widening a trained GPT-2 by duplication, so that a larger model starts as the smaller one.

A model of `factor` times the width computes exactly the function of the narrower one when every
residual, head and MLP unit is repeated `factor` times and every weight that reads those units is
divided by `factor` (function-preserving growth, as in Net2Net: Chen, Goodfellow and Shlens, 2016):

- the residual stream of width d becomes [x, x, ...]; LayerNorm over it gives [LN(x), LN(x), ...]
  (the mean and variance of a repeated vector are its own), so LayerNorm weights are repeated;
- a weight that maps the residual (or the MLP's hidden units) to new units repeats along its output
  axis and is repeated and divided by `factor` along its input axis: [x, x] @ [[W/f], [W/f]] = x @ W;
- attention keeps head_dim: d/head_dim heads become factor times as many, each new head a copy of an
  old one, so the attention pattern and its 1/sqrt(head_dim) scale are unchanged;
- the tied output embedding reads the final LayerNorm, whose weight and bias are divided by `factor`
  so that the repeated embedding [E, E] gives the same logits.

Copies receive the same gradients and would stay copies, so the trainer adds small seeded noise
(`LMRecipe.init_noise`) to break the symmetry. Works on GPT2LMHeadModel state dicts, with or without
the `transformer.` prefix. No torch import at module level (the compiler never reaches this).
"""

from __future__ import annotations

from typing import Any


def _rep(t: Any, axis: int, factor: int) -> Any:
    import torch

    return torch.cat([t] * factor, dim=axis)


def _rep_qkv(t: Any, d: int, factor: int) -> Any:
    """Repeat each of the Q, K and V blocks (width d each) of c_attn's last axis."""
    shape = t.shape[:-1]
    blocks = t.reshape(*shape, 3, d)
    return _rep(blocks, -1, factor).reshape(*shape, 3 * d * factor)


def widen_gpt2(src: dict[str, Any], factor: int) -> dict[str, Any]:
    """The state dict of a GPT-2 `factor` times as wide (and with `factor` times the heads) that
    computes the same logits as `src`. Keys keep their names; non-parameter buffers are dropped."""
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, not {factor!r}")
    wte = next(v for k, v in src.items() if k.endswith("wte.weight"))
    d = wte.shape[1]
    out: dict[str, Any] = {}
    for k, v in src.items():
        name = k.removeprefix("transformer.")
        if name.startswith("lm_head."):
            continue  # tied to wte; the model's loader re-ties it
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers, rebuilt by the model
        if name in ("wte.weight", "wpe.weight"):
            w = _rep(v, 1, factor)
        elif name.startswith("ln_f."):
            w = _rep(v, 0, factor) / factor
        elif ".ln_1." in name or ".ln_2." in name:
            w = _rep(v, 0, factor)
        elif name.endswith("attn.c_attn.weight"):  # Conv1D (d, 3d)
            w = _rep_qkv(_rep(v, 0, factor) / factor, d, factor)
        elif name.endswith("attn.c_attn.bias"):
            w = _rep_qkv(v, d, factor)
        elif name.endswith(("attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):  # Conv1D (in, out)
            w = _rep(_rep(v, 0, factor) / factor, 1, factor)
        elif name.endswith(("attn.c_proj.bias", "mlp.c_fc.bias", "mlp.c_proj.bias")):
            w = _rep(v, 0, factor)
        else:
            raise ValueError(f"widen_gpt2: no rule for parameter {k!r} of shape {tuple(v.shape)}")
        out[k] = w.contiguous()
    return out


def add_noise(state: dict[str, Any], std: float, generator: Any) -> None:
    """Add N(0, std) noise in place to every matrix (2-D or more), in sorted key order."""
    import torch

    for k in sorted(state):
        v = state[k]
        if v.dim() >= 2 and std > 0:
            v.add_(torch.randn(v.shape, generator=generator, dtype=v.dtype) * std)
