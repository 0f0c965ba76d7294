"""FLOPs-matched comparison: series on one accuracy-against-FLOPs plane, exchange rates, total compute.

A curve is a series' (FLOPs, accuracy) points, one per k, joined piecewise
linearly in log FLOPs. `acc_at` reads a curve at equal FLOPs (no
extrapolation); `flops_to_reach` finds the smallest budget at which it first
reaches a target accuracy. The exchange of series A against reference B is
that budget over B's own FLOPs, with a paired bootstrap over items.

Total compute follows Snell et al. 2024 (section 7): a model is pretrained
once and then serves queries, and R is the ratio of inference tokens to
pretraining tokens. With Q queries (Q = R * D_pretrain(B) / tokens per query
of B), B's compute per query is P_B / Q + F_B, and A matches it while
spending at most F_A = (P_B - P_A) / Q + F_B per query at inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ttcl.runtime.analysis.intervals import boot_indices, percentile_interval

SNELL_R = (0.16, 0.79, 22.0)


def _curve(flops: Sequence[float], acc: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    f, a = np.asarray(flops, dtype=float), np.asarray(acc, dtype=float)
    order = np.argsort(f, kind="stable")
    return f[order], a[order]


# An overlaid run this close (relative) outside a pool curve's FLOPs range reads the curve's end point: best-of-N
# at n = 1 or N costs what the pool's k = 1 or N does but for sampling noise in lengths (0.4% apart in QA s36 #6)
ENDS = 0.05


def outside(flops: Sequence[float], budget: float) -> float:
    """How far `budget` lies outside the FLOPs range of `flops`, relative to the nearer end: below it < 0, above
    it > 0, inside it 0."""
    f = np.sort(np.asarray(flops, dtype=float))
    if f.size == 0 or f[0] <= budget <= f[-1]:
        return 0.0
    return float(budget / f[0] - 1 if budget < f[0] else budget / f[-1] - 1)


def acc_at(flops: Sequence[float], acc: Sequence[float], budget: float, *, ends: float = 1e-9) -> float:
    """Accuracy of the curve at `budget` FLOPs (log-linear between points); NaN outside its range, where within
    `ends` (relative) of an end point is the end point's."""
    f, a = _curve(flops, acc)
    if f.size == 0 or budget < f[0] * (1 - ends) or budget > f[-1] * (1 + ends):
        return math.nan
    if f.size == 1:
        return float(a[0])
    return float(np.interp(math.log(budget), np.log(f), a))


def flops_to_reach(flops: Sequence[float], acc: Sequence[float], target: float) -> float:
    """Smallest FLOPs at which the curve reaches `target`; inf when it never does in its range."""
    f, a = _curve(flops, acc)
    if f.size == 0:
        return math.inf
    if a[0] >= target:
        return float(f[0])
    for i in range(1, f.size):
        if a[i] >= target:
            t = (target - a[i - 1]) / (a[i] - a[i - 1])
            return float(math.exp(math.log(f[i - 1]) + t * (math.log(f[i]) - math.log(f[i - 1]))))
    return math.inf


def exchange(a_acc: Sequence[np.ndarray], a_flops: Sequence[np.ndarray], b_acc: np.ndarray, b_flops: np.ndarray,
             *, reps: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Series A (per-k item arrays) against reference B (item arrays) on the same items.

    Returns B's accuracy and FLOPs, the FLOPs at which A first reaches B's accuracy, their ratio,
    and a paired bootstrap 95% interval of the ratio (inf where a resample never reaches it).
    Where B gets nothing right, any curve "reaches" it at its cheapest point, so the ratio is
    undefined: NaN, with `reference_zero` set; resamples in which B gets nothing right are left
    out of the interval for the same reason.
    """
    n = b_acc.size

    def ratio(ix: np.ndarray | None) -> tuple[float, float, float, float]:
        sel = slice(None) if ix is None else ix
        target, fb = float(b_acc[sel].mean()), float(b_flops[sel].mean())
        if target <= 0:
            return target, fb, math.nan, math.nan
        fa = flops_to_reach([float(x[sel].mean()) for x in a_flops], [float(x[sel].mean()) for x in a_acc], target)
        return target, fb, fa, fa / fb if fb > 0 else math.inf

    target, fb, fa, r = ratio(None)
    if not n:
        boots = np.array([math.inf])
    elif target > 0:
        boots = np.array([ratio(ix)[3] for ix in boot_indices(n, reps, seed)])
        boots = boots[~np.isnan(boots)]
    else:
        boots = np.array([])  # no ratio to resample
    lo, hi = percentile_interval(boots)
    reached = float(np.mean(np.isfinite(boots))) if boots.size else math.nan
    return {"target_accuracy": target, "reference_flops": fb, "flops_to_reach": fa, "ratio": r,
            "ratio_lo": float(lo), "ratio_hi": float(hi), "reached_share": reached, "items": int(n),
            "reference_zero": bool(n and target <= 0)}


def total_compute(a_curve: tuple[Sequence[float], Sequence[float]], a_pretrain: float,
                  b_point: tuple[float, float], b_pretrain: float, b_pretrain_tokens: float,
                  b_tokens_per_query: float, ratios: Sequence[float] = SNELL_R) -> list[dict[str, float]]:
    """Snell's accounting at each R: the inference FLOPs per query A may spend to match B's total compute,
    A's accuracy there (NaN below A's cheapest point; A's last point, flagged `a_beyond_curve`, when the
    budget lies past its largest k) and B's accuracy."""
    fb, ab = b_point
    out = []
    for r in ratios:
        queries = r * b_pretrain_tokens / b_tokens_per_query
        budget = (b_pretrain - a_pretrain) / queries + fb
        flops, acc = a_curve
        a_acc = acc_at(flops, acc, budget) if budget > 0 else math.nan
        beyond = bool(budget > 0 and flops and budget > max(flops))
        if beyond:  # the budget lies past A's largest k: its last measured point fits it (a lower bound)
            a_acc = float(np.asarray(acc)[int(np.argmax(flops))])
        out.append({"R": r, "queries": queries, "a_budget_flops": budget, "multiplier": budget / min(flops),
                    "a_accuracy": a_acc, "a_beyond_curve": beyond, "b_accuracy": ab,
                    "b_total_per_query": b_pretrain / queries + fb})
    return out


def pool_at(table: Any, signal: str, mask: np.ndarray, flops: float, *, ends: float = 1e-9) -> np.ndarray | None:
    """The signal's per-item estimate at `flops` (bin mean), by the curve's own log-linear rule (`acc_at`):
    each k's weight is the curve read through a one-hot accuracy, so the items' mean is the curve's reading.
    None outside the curve's FLOPs range (`ends` as in `acc_at`)."""
    ks = [k for k in table.ks if (signal, k) in table.acc]
    if not ks or not mask.any():
        return None
    f = [float(table.flops[(signal, k)][mask].mean()) for k in ks]
    weights = [acc_at(f, [float(j == i) for j in range(len(ks))], flops, ends=ends) for i in range(len(ks))]
    if any(math.isnan(w) for w in weights):
        return None
    return sum(w * table.acc[(signal, k)][mask] for w, k in zip(weights, ks, strict=True))
