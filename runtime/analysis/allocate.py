"""Compute-optimal allocation as an analysis (Snell et al. 2024, section 3.2).

Given one series' per-item accuracy and FLOPs for many configurations
(signal, k), and a difficulty bin per item, the policy picks one
configuration per bin so that accuracy is best while the mean FLOPs per
item (plus what estimating the bin cost) fit the budget: compute moves from
bins where it does not pay to bins where it does. It is chosen on the selection half
of the items and scored on the other half, so the choice never sees the
items it is judged on. Oracle bins come from a dataset field and cost
nothing; predicted bins come from a probe (the first few pool samples'
agreement, or their mean verifier score) whose FLOPs every item pays on top,
or, when the probe's samples are kept (`keeping_table`), whose samples every
configuration continues from: only k >= M, costed with the decodes and
passes the probe already made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ttcl.runtime.analysis.compare import flops_to_reach
from ttcl.runtime.analysis.curves import ItemTable
from ttcl.runtime.analysis.intervals import (
    SMALL,
    boot_indices,
    interval,
    interval_method,
    percentile_interval,
)
from ttcl.runtime.analysis.pool import Pool, estimate_keeping, flops_keeping, pass_flops

ORACLE_SIGNALS = ("pass", "strict")  # need the gold answer: never a deployable choice


def split_halves(n: int, seed: int) -> np.ndarray:
    """A seeded half of the items for selection (True); the rest are for reporting."""
    sel = np.zeros(n, dtype=bool)
    sel[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return sel


def probe_bins(pools: Sequence[Pool], probe: int, select: np.ndarray, n_bins: int = 4,
               verifier: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted difficulty from the first `probe` candidates, cut at selection-half quantiles: their
    answer agreement, or with `verifier` their mean score under it (Snell et al.'s "model-predicted
    difficulty"). Returns (bin per item, 0 = easiest; the probe's FLOPs per item: its decodes, and
    with `verifier` its passes over them)."""
    if verifier is None:
        signal = np.array([_agreement(p.answers[:probe]) for p in pools])
    else:
        signal = np.array([_mean_score(p.scores.get(verifier, [])[:probe]) for p in pools])
    # the configuration an item then runs pays the prompt's prefill already (and a second sample on the same
    # prompt reuses it), so the probe adds its decodes and passes only
    cost = np.array([sum(p.gen_flops[:probe])
                     + pass_flops(p, verifier, min(probe, p.n), min(probe, p.n))
                     for p in pools])
    edges = np.unique(np.quantile(signal[select], np.linspace(0, 1, n_bins + 1)[1:-1])) if select.any() else np.array([])
    return (len(edges) - np.searchsorted(edges, signal, side="right")).astype(int), cost


def keeping_table(table: ItemTable, probe: int, verifier: str | None = None) -> ItemTable:
    """`table`'s configurations for a policy that keeps the probe's first `probe` samples: every k >= probe
    of its k values (and `probe` itself), each draw holding those samples, its FLOPs counting the probe's
    decodes and, with `verifier`, the probe's passes (from the first seed's pools, as the bins are)."""
    ks = sorted({probe, *(k for k in table.ks if k >= probe)})
    out = ItemTable(f"{table.label} (keeping the probe's {probe})", table.fields, 1, ks, pools=table.pools)
    for signal in table.signals:
        for k in ks:
            out.acc[(signal, k)] = np.array([estimate_keeping(p, signal, k, probe, seed=i) for i, p in enumerate(table.pools)])
            out.flops[(signal, k)] = np.array([flops_keeping(p, signal, k, probe, verifier) for p in table.pools])
    return out


def _agreement(answers: Sequence[str | None]) -> float:
    got = [a for a in answers if a is not None]
    return max(got.count(a) for a in set(got)) / len(answers) if got else 0.0


def _mean_score(scores: Sequence[float]) -> float:
    """A score that is missing (NaN: the candidate had no answer to score) counts as 0."""
    return float(np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0).mean()) if len(scores) else 0.0


def configs_of(table: ItemTable) -> list[tuple[str, int]]:
    return [key for key in table.acc if key[0] not in ORACLE_SIGNALS]


def policies(table: ItemTable, bins: np.ndarray, mask: np.ndarray, extra: np.ndarray) -> list[tuple[float, float, dict[Any, tuple[str, int]]]]:
    """The policies on the accuracy-against-mean-FLOPs frontier of `mask`'s items: (FLOPs, accuracy, choice).

    A policy picks one configuration per bin; its cost is the item-weighted mean. The frontier's
    corners are the Lagrangian choices (per bin, maximise accuracy - lam * FLOPs) over lam >= 0.
    """
    configs = configs_of(table)
    stats = []
    for b in np.unique(bins):
        m = mask & (bins == b)
        if not m.any():
            m = bins == b
        w = float((mask & (bins == b)).sum()) / max(1, int(mask.sum()))
        stats.append((b, w, {c: (float(table.acc[c][m].mean()), float(table.flops[c][m].mean() + extra[m].mean()))
                             for c in configs}))
    scale = max(cost for _, _, st in stats for _, cost in st.values()) or 1.0
    out: dict[tuple[Any, ...], tuple[float, float, dict[Any, tuple[str, int]]]] = {}
    for lam in [0.0, *np.geomspace(1e-4, 1e4, 400) / scale]:
        choice = {b: max(st, key=lambda c: (st[c][0] - lam * st[c][1], -st[c][1])) for b, _, st in stats}
        key = tuple(choice[b] for b, _, _ in stats)
        cost = sum(w * st[choice[b]][1] for b, w, st in stats)
        acc = sum(w * st[choice[b]][0] for b, w, st in stats)
        out[key] = (cost, acc, choice)
    return sorted(out.values(), key=lambda p: p[0])


def choose(table: ItemTable, bins: np.ndarray, mask: np.ndarray, budget: float, extra: np.ndarray) -> dict[Any, tuple[str, int]]:
    """The frontier policy with the best accuracy on `mask`'s items whose mean FLOPs fit `budget`
    (the cheapest policy when none fits)."""
    front = policies(table, bins, mask, extra)
    fits = [p for p in front if p[0] <= budget * (1 + 1e-9)]
    return max(fits, key=lambda p: (p[1], -p[0]))[2] if fits else front[0][2]


def _apply(table: ItemTable, bins: np.ndarray, choice: dict[Any, tuple[str, int]], extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acc = np.array([table.acc[choice[b]][i] for i, b in enumerate(bins)])
    fl = np.array([table.flops[choice[b]][i] + extra[i] for i, b in enumerate(bins)])
    return acc, fl


def _against_uniform(table: ItemTable, select: np.ndarray, curve: list[dict[str, Any]],
                     applied: list[tuple[np.ndarray, np.ndarray]], reps: int) -> list[dict[str, Any]]:
    """Each budget's policy against the best *uniform* configuration (one (rule, k) for every item, chosen
    on the selection half the same way): the FLOPs the uniform frontier needs on the report half to reach
    the policy's accuracy, over the policy's FLOPs (Snell et al.'s comparison with best-of-N at each
    budget), with a paired bootstrap interval; inf where no uniform configuration with k <= N reaches it."""
    one = np.zeros(len(select), dtype=int)
    zero = np.zeros(len(select))
    front = policies(table, one, select, zero)
    uniform = [_apply(table, one, choice, zero) for _, _, choice in front]
    idx = np.flatnonzero(~select)
    if not idx.size:
        return []
    samples = boot_indices(idx.size, reps, 2)
    counts = np.zeros((samples.shape[0], idx.size))  # how often each report item is drawn, per resample
    np.add.at(counts, (np.arange(samples.shape[0])[:, None], samples), 1.0)
    counts /= idx.size  # a resample's mean of x is then counts @ x, without a [configs, reps, items] array
    u_acc = np.array([a[idx] for a, _ in uniform])
    u_fl = np.array([f[idx] for _, f in uniform])
    # accuracies rounded past float noise, so that a row equal to a uniform configuration reaches it in every resample
    u_boot_acc, u_boot_fl = np.round(counts @ u_acc.T, 12), counts @ u_fl.T  # [reps, configs]
    for row, (acc, fl) in zip(curve, applied, strict=True):
        pa, pf = acc[idx], fl[idx]
        need = flops_to_reach(u_fl.mean(axis=1), u_acc.mean(axis=1), float(pa.mean()))
        boot_pa, boot_pf = np.round(counts @ pa, 12), counts @ pf
        boots = np.array([flops_to_reach(u_boot_fl[r], u_boot_acc[r], float(boot_pa[r])) / boot_pf[r]
                          for r in range(samples.shape[0])])
        lo, hi = percentile_interval(boots)
        row.update(uniform_flops=need, vs_uniform=need / float(pf.mean()), vs_uniform_lo=float(lo), vs_uniform_hi=float(hi),
                   uniform_max_flops=float(u_fl.mean(axis=1).max()))
    out = []
    for (_, _, choice), a, f in zip(front, u_acc, u_fl, strict=True):
        lo, hi = interval(a)
        out.append({"flops": float(f.mean()), "accuracy": float(a.mean()), "lo": lo, "hi": hi, "interval": interval_method(a),
                    "choice": "{}@{}".format(*choice[0])})
    return out


def _few_items_note(n: int) -> str | None:
    """What the saving intervals are worth on a small report half (accuracies there are Wilson's, but a ratio of
    FLOPs has only the percentile bootstrap, which under-covers on few items: docs/eval.md, "Intervals")."""
    if n >= SMALL:
        return None
    if n < 2:
        return (f"the report half has {n} item: the savings have no interval (n/a), and every number in this "
                "table is one item's; use more items")
    return (f"the report half has {n} items, fewer than {SMALL}: the saving intervals are percentile bootstraps "
            "over them and under-cover (the accuracy intervals are Wilson's); read the savings as rough")


def allocate(table: ItemTable, bins: np.ndarray, select: np.ndarray, *, baseline: str,
             extra: np.ndarray | None = None, points: int = 24, reps: int = 1000,
             reference: ItemTable | None = None) -> dict[str, Any]:
    """The compute-optimal curve on the report half, and the FLOPs it needs to match `baseline` at its largest k.
    The policy picks among `table`'s configurations; the baseline and the uniform frontier are `reference`'s
    (default: `table`), so a policy over derived configurations (`keeping_table`) is judged against plain ones."""
    extra = np.zeros(len(bins)) if extra is None else extra
    ref = table if reference is None else reference
    test = ~select
    front = policies(table, bins, select, extra)
    grid = np.geomspace(front[0][0], front[-1][0], points)
    curve: list[dict[str, Any]] = []
    applied: list[tuple[np.ndarray, np.ndarray]] = []
    for budget in grid:
        choice = choose(table, bins, select, float(budget), extra)
        acc, fl = _apply(table, bins, choice, extra)
        applied.append((acc, fl))
        lo, hi = interval(acc[test])  # by docs/eval.md's "Intervals", as every other accuracy
        curve.append({"budget": float(budget), "accuracy": float(acc[test].mean()), "lo": lo, "hi": hi,
                      "interval": interval_method(acc[test]),
                      "flops": float(fl[test].mean()),
                      "choice": {str(b): f"{s}@{k}" for b, (s, k) in sorted(choice.items(), key=lambda kv: str(kv[0]))}})
    kmax = max(k for s, k in ref.acc if s == baseline)
    b_acc, b_fl = ref.acc[(baseline, kmax)], ref.flops[(baseline, kmax)]
    base_curve = [(float(ref.flops[(baseline, k)][test].mean()), float(ref.acc[(baseline, k)][test].mean()))
                  for k in ref.ks]

    def ratio(ix: np.ndarray) -> tuple[float, float, float]:
        target, fb = float(b_acc[ix].mean()), float(b_fl[ix].mean())
        fp = flops_to_reach([float(f[ix].mean()) for _, f in applied], [float(a[ix].mean()) for a, _ in applied], target)
        return target, fb, fp

    idx = np.flatnonzero(test)
    target, fb, fp = ratio(idx)
    boots = np.array([(lambda t: t[1] / t[2] if t[2] > 0 else math.inf)(ratio(idx[ix]))
                      for ix in boot_indices(idx.size, reps, 1)]) if idx.size else np.array([math.nan])
    # a resample in which the policy never reaches the baseline's accuracy has no saving (its FLOPs to match
    # are infinite, the ratio 0): when the interval's lower end falls on one, that end is undefined (NaN, null
    # in --json), and `saving_unreached` says in what share of the resamples it happened
    unreached = float(np.mean(boots == 0.0)) if idx.size else 0.0
    lo, hi = percentile_interval(boots)
    if lo == 0.0 and unreached > 0:
        lo = math.nan
    if target == 0:
        lo = hi = math.nan
    uniform = _against_uniform(ref, select, curve, applied, reps)
    if idx.size < 2:  # one item has no spread to resample: a bootstrap interval of its ratio has no width
        lo = hi = math.nan
        for row in curve:
            row.update(vs_uniform_lo=math.nan, vs_uniform_hi=math.nan)
    return {"note": _few_items_note(int(idx.size)),"curve": curve, "uniform": uniform, "baseline": {"signal": baseline, "k": kmax, "accuracy": target, "flops": fb,
                                         "curve": [{"flops": f, "accuracy": a} for f, a in base_curve]},
            "policy_flops_to_match": fp,
            # never reached (fp infinite): no saving, null in --json like policy_flops_to_match (it printed 0.0)
            # a baseline that gets nothing right is "reached" by any curve at its cheapest point: no saving to read
            "saving": math.nan if math.isinf(fp) or target == 0 else fb / fp if fp > 0 else math.inf,
            "saving_lo": float(lo), "saving_hi": float(hi), "saving_unreached": unreached, "select_items": int(select.sum()), "report_items": int(test.sum())}
