"""Sampling that does not depend on the batch.

Every row draws one uniform per step from a counter-based hash of
(seed, sample index, step), and turns it into a token by inverse-CDF over the
(tempered, nucleus-cut) distribution. No generator state is shared between
rows, so a sample is the same whether it runs alone, in a batch of 1000, or in
one half of a batch split after an out-of-memory error. One uniform per row
per step keeps this cheap for any vocabulary size.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def stream_key(seed: int, index: int) -> int:
    """A 64-bit key for sample `index` of a request seeded with `seed` (any Python ints)."""
    return _splitmix64(_splitmix64(seed & _M64) ^ (index & _M64))


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x * c) mod 2**32 without int64 overflow: split c into 16-bit halves.
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # "lowbias32" integer hash (C. Wellons), on int64 tensors holding uint32 values.
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def key_tensor(keys: list[int], device: torch.device) -> torch.Tensor:
    """[B, 2] int64: each 64-bit key as two uint32 halves."""
    return torch.tensor([[k >> 32, k & _M32] for k in keys], dtype=torch.int64, device=device)


def uniforms(keys: torch.Tensor, step: int) -> torch.Tensor:
    """[B, 2] int64 keys -> [B] float32 in (0, 1): the uniform for this step."""
    s = _mix32(torch.full_like(keys[:, 0], (step * 0x9E3779B9) & _M32) ^ keys[:, 0])
    x = _mix32(s ^ keys[:, 1])
    x = _mix32(x ^ ((step + 0x632BE5AB) & _M32))
    return (x.to(torch.float64).add_(0.5).div_(2.0**32)).to(torch.float32)


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # probs: [B, V] (need not sum to 1), u: [B] -> [B] indices
    cdf = probs.cumsum(dim=-1)  # [B, V]
    target = (u * cdf[:, -1]).unsqueeze(-1)  # [B, 1]
    idx = torch.searchsorted(cdf, target).squeeze(-1)  # [B]
    return idx.clamp_(max=probs.shape[-1] - 1)


_NUCLEUS_K = 256  # try the top-k first: a full sort of a 50k vocabulary is rarely needed


def _nucleus(probs: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    # Keep the smallest set of most likely tokens whose mass reaches top_p (the first always kept).
    k = min(_NUCLEUS_K, probs.shape[-1])
    if k < probs.shape[-1]:
        top, order = probs.topk(k, dim=-1)  # [B, k], sorted descending
        enough = top.sum(-1) >= top_p
        if bool(enough.all()):
            return _cut_and_draw(top, order, top_p, u)
    sorted_p, order = probs.sort(dim=-1, descending=True)  # [B, V]
    return _cut_and_draw(sorted_p, order, top_p, u)


def _cut_and_draw(sorted_p, order, top_p, u) -> torch.Tensor:
    before = sorted_p.cumsum(dim=-1) - sorted_p  # mass strictly above each token
    sorted_p = sorted_p.masked_fill(before >= top_p.unsqueeze(-1), 0.0)
    return order.gather(-1, _inverse_cdf(sorted_p, u).unsqueeze(-1)).squeeze(-1)


def sample(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """logits [B, V], temperature [B] (0 = greedy), top_p [B], u [B] -> next tokens [B] int64."""
    logits = logits.float()
    greedy = temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    t = torch.where(greedy, torch.ones_like(temperature), temperature)
    probs = torch.softmax(logits / t.unsqueeze(-1), dim=-1)  # [B, V]
    cut = (top_p < 1.0) & ~greedy
    if bool(cut.any()):
        tokens = _inverse_cdf(probs, u)
        rows = cut.nonzero().squeeze(-1)
        tokens[rows] = _nucleus(probs[rows], top_p[rows], u[rows])
    else:
        tokens = _inverse_cdf(probs, u)
    if bool(greedy.any()):
        tokens = torch.where(greedy, logits.argmax(dim=-1), tokens)
    return tokens
