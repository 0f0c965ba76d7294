"""95% intervals: Wilson for 0/1 outcomes and for small bins, percentile bootstrap over items otherwise
(`interval_method`), and the paired bootstrap for the difference of two series scored on the same items."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054
BOOT = 2000  # bootstrap replicates


def wilson(correct: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for `correct` successes in `n` trials (Wilson 1927)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval holds p exactly; at 0 or n successes mid - half (mid + half) can miss it by a rounding step
    return (min(p, max(0.0, mid - half)), max(p, min(1.0, mid + half)))


def rng_for(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def boot_indices(n: int, reps: int = BOOT, seed: int = 0) -> np.ndarray:
    """`reps` resamples of n item indices with replacement (shared so paired statistics stay paired)."""
    return rng_for(seed).integers(0, n, size=(reps, n)) if n else np.zeros((reps, 0), dtype=int)


def bootstrap_mean(values: Sequence[float] | np.ndarray, reps: int = BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of the mean over items."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (math.nan, math.nan)
    means = v[boot_indices(v.size, reps, seed)].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_stat(n: int, stat: Callable[[np.ndarray], float], reps: int = BOOT, seed: int = 0) -> np.ndarray:
    """`stat(indices)` on `reps` item resamples; the caller takes percentiles (NaN/inf allowed)."""
    return np.array([stat(ix) for ix in boot_indices(n, reps, seed)], dtype=float)


SMALL = 30  # fewer items than this: a percentile bootstrap under-covers, so the interval is Wilson's on the mean


def interval_method(values: Sequence[float] | np.ndarray) -> str:
    """Which interval `interval` gives these per-item values: "wilson" for 0/1 outcomes (one seed's, or a
    deterministic run's over several seeds); "wilson-mean" for expected accuracies on fewer than SMALL items or
    all alike (a percentile bootstrap under-covers there, and has no width when every item is alike); else
    "bootstrap". Wilson on (sum, n) for values in [0, 1] is conservative: an item's variance p(1-p) is at least
    the spread of the items' expectations about their mean."""
    v = np.asarray(values, dtype=float)
    if bool(np.all((v == 0) | (v == 1))):
        return "wilson"
    if v.size < SMALL or bool(np.all(v == v.flat[0])):
        return "wilson-mean"
    return "bootstrap"


def interval(values: Sequence[float] | np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of per-item accuracies in [0, 1], by `interval_method`."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (math.nan, math.nan)
    if interval_method(v) == "bootstrap":
        return bootstrap_mean(v, seed=seed)
    return wilson(float(v.sum()), int(v.size))


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles by rank (infinite values, e.g. "never reached", sort last)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return (math.nan, math.nan)
    lo, hi = round(0.025 * (v.size - 1)), round(0.975 * (v.size - 1))
    return (float(v[lo]), float(v[hi]))


def paired_diff(a: Sequence[float], b: Sequence[float], reps: int = BOOT, seed: int = 0) -> dict[str, float]:
    """Mean of a - b over the same items, with a paired percentile bootstrap interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired difference needs the same items: {x.size} vs {y.size}")
    d = x - y
    lo, hi = bootstrap_mean(d, reps, seed)
    return {"diff": float(d.mean()) if d.size else math.nan, "lo": lo, "hi": hi, "items": int(d.size)}
