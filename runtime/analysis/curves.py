"""Accuracy-against-FLOPs curves with 95% intervals, per difficulty bin, from per-item estimates.

`ItemTable` holds, for one series (a model and a program), each item's
expected accuracy and FLOPs under every (signal, k), averaged over seeds.
Breakdowns group items by a dataset field (`--by steps`) plus "all".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttcl.runtime.analysis.collect import PooledItem
from ttcl.runtime.analysis.intervals import interval, interval_method
from ttcl.runtime.analysis.pool import Pool, estimate, flops_at_k, signals_of

ALL = "all"


@dataclass
class ItemTable:
    """Per-item accuracy and FLOPs for each (signal, k) of one series; items in dataset order."""

    label: str
    fields: list[dict[str, Any]]
    seeds: int
    ks: list[int]
    acc: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    flops: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    pools: list[Pool] = field(default_factory=list)  # the first seed's pools (probe bins read them)
    index: list[int] = field(default_factory=list)  # each row's dataset item (ungraded items are left out)

    @property
    def signals(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.acc))


def item_table(label: str, runs: Sequence[Sequence[PooledItem]], ks: Sequence[int] | None = None) -> ItemTable:
    """Estimates for every signal the pools support at each k (every k <= N by default), seeds averaged."""
    if not runs or not runs[0]:
        raise ValueError(f"{label}: no items")
    first = runs[0]
    n = min(p.pool.n for run in runs for p in run)
    use = [k for k in (ks or range(1, n + 1)) if 1 <= k <= n]
    t = ItemTable(label, [p.fields for p in first], len(runs), use, pools=[p.pool for p in first],
                  index=[p.index for p in first])
    for signal in signals_of(first[0].pool):
        for k in use:
            acc = np.array([[estimate(p.pool, signal, k, seed=p.index) for p in run] for run in runs])
            fl = np.array([[flops_at_k(p.pool, signal, k) for p in run] for run in runs])
            t.acc[(signal, k)], t.flops[(signal, k)] = acc.mean(axis=0), fl.mean(axis=0)
    return t


def _key(value: Any) -> tuple[str, Any]:
    """What a bin is keyed by: the JSON value with its type, so "3" and 3 are two bins and true is not 1
    (Python's True == 1); 3 and 3.0 are one number, as in JSON."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("other", json.dumps(value, sort_keys=True, default=str))


def bin_labels(fields: Sequence[dict[str, Any]], by: str) -> dict[tuple[str, Any], Any]:
    """Each bin's key -> its label, sorted (numbers numerically, missing values last). A label is the value
    itself (a boolean as "true"/"false"), and no two labels, nor a label and the overall row's "all", read the
    same: a string that would is shown as its JSON text (`"3"` beside 3, `"all"` beside the overall row)."""
    raw: dict[tuple[str, Any], Any] = {}
    for f in fields:
        raw.setdefault(_key(f.get(by)), f.get(by))
    keys = list(raw)
    try:
        keys.sort(key=lambda k: (k[0] == "null", float(raw[k]) if k[0] != "null" else 0.0))
    except (TypeError, ValueError):
        keys.sort(key=lambda k: (k[0] == "null", str(raw[k])))
    labels: dict[tuple[str, Any], Any] = {}
    for k in keys:
        if k[0] != "string":
            labels[k] = ("true" if raw[k] else "false") if k[0] == "bool" else raw[k]
    taken = {ALL, *(str(v) for v in labels.values())}
    for k in keys:
        if k[0] == "string":
            label = raw[k]
            if labels and _reads_as_json(label):  # "3.0" beside numbers: not the number 3.0
                label = json.dumps(label)
            while label in taken:
                label = json.dumps(label)
            taken.add(label)
            labels[k] = label
    return {k: labels[k] for k in keys}


def _reads_as_json(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), str | list | dict)
    except ValueError:
        return False


def bin_values(fields: Sequence[dict[str, Any]], by: str | None) -> list[Any]:
    """The labels of field `by`'s values (`bin_labels`), then "all", which no value's label can be."""
    if by is None:
        return [ALL]
    return [*bin_labels(fields, by).values(), ALL]


def item_bins(fields: Sequence[dict[str, Any]], by: str) -> list[Any]:
    """Each item's bin label."""
    labels = bin_labels(fields, by)
    return [labels[_key(f.get(by))] for f in fields]


def in_bin(fields: Sequence[dict[str, Any]], by: str | None, value: Any) -> np.ndarray:
    """Which items are in the bin labelled `value` (every item for "all")."""
    if by is None or (isinstance(value, str) and value == ALL):
        return np.ones(len(fields), dtype=bool)
    return np.array([_key(b) == _key(value) for b in item_bins(fields, by)], dtype=bool)


def bin_label(by: str | None, value: Any) -> str:
    """A column of a `--by` table: `steps=3`, `all`, and `no steps` for the items that lack the field (was `steps=None`)."""
    return ALL if isinstance(value, str) and value == ALL else f"no {by}" if value is None else f"{by}={value}"


def summarize(acc: np.ndarray, flops: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Mean accuracy with its 95% interval (`intervals.interval_method` says which) and mean FLOPs."""
    if acc.size == 0:
        return {"items": 0, "accuracy": math.nan, "lo": math.nan, "hi": math.nan, "flops": math.nan}
    lo, hi = interval(acc, seed=seed)
    return {"items": int(acc.size), "accuracy": float(acc.mean()), "lo": lo, "hi": hi,
            "flops": float(flops.mean()), "interval": interval_method(acc)}


def curve_rows(table: ItemTable, by: str | None) -> list[dict[str, Any]]:
    """One row per (bin, signal, k): accuracy, interval, FLOPs per item."""
    rows = []
    for value in bin_values(table.fields, by):
        mask = in_bin(table.fields, by, value)
        for (signal, k), acc in table.acc.items():
            s = summarize(acc[mask], table.flops[(signal, k)][mask])
            rows.append({"series": table.label, "bin": value, "signal": signal, "k": k, **s})
    return rows
