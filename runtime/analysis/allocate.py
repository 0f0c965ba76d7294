"""Compute-optimal allocation as an analysis (Snell et al. 2024, section 3.2).

Given one series' per-item accuracy and FLOPs for many configurations
(signal, k), and a difficulty bin per item, the policy picks for each bin
the configuration with the best accuracy whose mean FLOPs (plus what
estimating the bin cost) fit the budget. It is chosen on the selection half
of the items and scored on the other half, so the choice never sees the
items it is judged on. Oracle bins come from a dataset field and cost
nothing; predicted bins come from a probe (the first few pool samples'
agreement) whose FLOPs every item pays on top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ttcl.runtime.analysis.compare import flops_to_reach
from ttcl.runtime.analysis.curves import ItemTable
from ttcl.runtime.analysis.intervals import boot_indices, bootstrap_mean
from ttcl.runtime.analysis.pool import Pool

ORACLE_SIGNALS = ("pass", "strict")  # need the gold answer: never a deployable choice


def split_halves(n: int, seed: int) -> np.ndarray:
    """A seeded half of the items for selection (True); the rest are for reporting."""
    sel = np.zeros(n, dtype=bool)
    sel[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return sel


def probe_bins(pools: Sequence[Pool], probe: int, select: np.ndarray, n_bins: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Predicted difficulty: agreement of the first `probe` candidates, cut at selection-half quantiles.
    Returns (bin per item, 0 = easiest, and the probe's FLOPs per item)."""
    agree = np.array([_agreement(p.answers[:probe]) for p in pools])
    cost = np.array([p.shared_flops + sum(p.gen_flops[:probe]) for p in pools])
    edges = np.unique(np.quantile(agree[select], np.linspace(0, 1, n_bins + 1)[1:-1])) if select.any() else np.array([])
    return (len(edges) - np.searchsorted(edges, agree, side="right")).astype(int), cost


def _agreement(answers: Sequence[str | None]) -> float:
    got = [a for a in answers if a is not None]
    return max(got.count(a) for a in set(got)) / len(answers) if got else 0.0


def configs_of(table: ItemTable) -> list[tuple[str, int]]:
    return [key for key in table.acc if key[0] not in ORACLE_SIGNALS]


def choose(table: ItemTable, bins: np.ndarray, mask: np.ndarray, budget: float, extra: np.ndarray) -> dict[Any, tuple[str, int]]:
    """Per bin, the best configuration on `mask`'s items whose mean FLOPs fit `budget` (the cheapest when none fits)."""
    out: dict[Any, tuple[str, int]] = {}
    for b in np.unique(bins):
        m = mask & (bins == b)
        if not m.any():
            m = bins == b
        costs = {c: float(table.flops[c][m].mean() + extra[m].mean()) for c in configs_of(table)}
        fits = [c for c in costs if costs[c] <= budget]
        if fits:
            out[b] = max(fits, key=lambda c: (float(table.acc[c][m].mean()), -costs[c]))
        else:
            out[b] = min(costs, key=lambda c: costs[c])
    return out


def _apply(table: ItemTable, bins: np.ndarray, choice: dict[Any, tuple[str, int]], extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acc = np.array([table.acc[choice[b]][i] for i, b in enumerate(bins)])
    fl = np.array([table.flops[choice[b]][i] + extra[i] for i, b in enumerate(bins)])
    return acc, fl


def allocate(table: ItemTable, bins: np.ndarray, select: np.ndarray, *, baseline: str,
             extra: np.ndarray | None = None, points: int = 24, reps: int = 1000) -> dict[str, Any]:
    """The compute-optimal curve on the report half, and the FLOPs it needs to match `baseline` at its largest k."""
    extra = np.zeros(len(bins)) if extra is None else extra
    test = ~select
    costs = [float(table.flops[c].mean() + extra.mean()) for c in configs_of(table)]
    grid = np.geomspace(min(costs), max(costs), points)
    curve: list[dict[str, Any]] = []
    applied: list[tuple[np.ndarray, np.ndarray]] = []
    for budget in grid:
        choice = choose(table, bins, select, float(budget), extra)
        acc, fl = _apply(table, bins, choice, extra)
        applied.append((acc, fl))
        lo, hi = bootstrap_mean(acc[test])
        curve.append({"budget": float(budget), "accuracy": float(acc[test].mean()), "lo": lo, "hi": hi,
                      "flops": float(fl[test].mean()),
                      "choice": {str(b): f"{s}@{k}" for b, (s, k) in sorted(choice.items(), key=lambda kv: str(kv[0]))}})
    kmax = max(k for s, k in table.acc if s == baseline)
    b_acc, b_fl = table.acc[(baseline, kmax)], table.flops[(baseline, kmax)]
    base_curve = [(float(table.flops[(baseline, k)][test].mean()), float(table.acc[(baseline, k)][test].mean()))
                  for k in table.ks]

    def ratio(ix: np.ndarray) -> tuple[float, float, float]:
        target, fb = float(b_acc[ix].mean()), float(b_fl[ix].mean())
        fp = flops_to_reach([float(f[ix].mean()) for _, f in applied], [float(a[ix].mean()) for a, _ in applied], target)
        return target, fb, fp

    idx = np.flatnonzero(test)
    target, fb, fp = ratio(idx)
    boots = np.array([(lambda t: t[1] / t[2] if t[2] > 0 else math.inf)(ratio(idx[ix]))
                      for ix in boot_indices(idx.size, reps, 1)]) if idx.size else np.array([math.nan])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {"curve": curve, "baseline": {"signal": baseline, "k": kmax, "accuracy": target, "flops": fb,
                                         "curve": [{"flops": f, "accuracy": a} for f, a in base_curve]},
            "policy_flops_to_match": fp, "saving": fb / fp if fp > 0 else math.inf,
            "saving_lo": float(lo), "saving_hi": float(hi), "select_items": int(select.sum()), "report_items": int(test.sum())}
