"""Cells and small tables of `ttcl eval`'s printed report: accuracies with intervals, FLOPs, exchange
ratios, allocation savings, and the overlay table (split from eval_report.py, which builds the report)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def _f(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2e}"


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _acc(r: dict[str, Any]) -> str:
    a = r.get("accuracy")
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return "n/a"
    return f"{a:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def _print_overlay(report: dict[str, Any], console: Console) -> None:
    """One row per overlaid run and bin: its accuracy, and each pool signal read at its FLOPs, with the
    paired difference run - pool over the bin's items."""
    o = Table(title="overlaid runs against the pool at equal FLOPs: the pool signal's accuracy read at the run's "
                    "FLOPs, and run - pool paired over the same items [95% CI] (- = outside the pool's FLOPs range, by the % shown; within 5% outside it, the end point is read: `end -0.4%`)")
    o.add_column("run", overflow="fold", min_width=10)
    if report["by"]:
        o.add_column(report["by"], justify="right")
    o.add_column("accuracy [95% CI] @ FLOPs", justify="right", overflow="fold")
    reads = [q for q in report["overlay"] if q["signal"] is not None]
    sigs = list(dict.fromkeys((q["series"], q["signal"]) for q in reads))
    for series, signal in sigs:  # folded, not cut to "…", in a narrow console or a pipe (QA pass)
        o.add_column(f"{series} {signal}", justify="right", overflow="fold")
    groups: list[tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]] = []
    for q in report["overlay"]:  # each point is followed by its readings
        if q["signal"] is None:
            groups.append((q, {}))
        else:
            groups[-1][1][(q["series"], q["signal"])] = q
    for p, got in groups:
        o.add_row(p["label"], *([str(p["bin"])] if report["by"] else []), f"{_acc(p)} @ {_f(p['flops'])}",
                  *(_read(got[s]) for s in sigs))
    console.print(o)


def _read(q: dict[str, Any]) -> str:
    pct = q.get("outside", 0) * 100  # how far outside the pool's FLOPs range (+160%, not +1.6e+02%: QA pass)
    off = (f"{pct:+.0f}%" if abs(pct) >= 10 else f"{pct:+.2g}%") if pct else ""
    if math.isnan(q["pool_accuracy"]):
        return f"- ({off} off)" if off else "-"
    off = f" (end {off})" if off else ""  # within ENDS of an end point: read there
    d = q.get("paired")
    if d is None or math.isnan(d["diff"]):
        return f"{q['pool_accuracy']:.3f}{off}"
    return f"{q['pool_accuracy']:.3f}{off}\n{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def _saving_note(saving: float) -> str:
    """Below 1x says so; within float noise of 1x (the policy is k = N where it matches) is no saving."""
    if abs(saving - 1.0) <= 1e-9:
        return " (no saving)"
    return " (below 1x: it costs more than the baseline)" if saving < 1 else ""


def _saving_ci(a: dict[str, Any]) -> str:
    """The saving's interval; a lower end that falls on resamples where the policy never reaches the baseline
    is n/a (it used to print 0.00x), with the share of such resamples."""
    if math.isnan(a["saving_hi"]):  # one report item: no interval
        return "n/a"
    hi = f"{a['saving_hi']:.2f}" if math.isfinite(a["saving_hi"]) else "inf"
    if math.isfinite(a["saving_lo"]):
        return f"{a['saving_lo']:.2f}, {hi}"
    share = a.get("saving_unreached", 0.0)
    return f"n/a, {hi}; in {share:.0%} of the resamples the policy does not reach the baseline's accuracy"


def _saving(r: dict[str, Any]) -> str:
    if not math.isfinite(r["vs_uniform"]):  # beyond every uniform configuration: more than its largest over ours
        return f"> {r['uniform_max_flops'] / r['flops']:.2f}x"
    if math.isnan(r["vs_uniform_hi"]):  # one report item: no interval
        return f"{r['vs_uniform']:.2f}x [CI n/a]"
    hi = "inf" if not math.isfinite(r["vs_uniform_hi"]) else f"{r['vs_uniform_hi']:.2f}"
    return f"{r['vs_uniform']:.2f}x [{r['vs_uniform_lo']:.2f}, {hi}]"


def _ratio(r: dict[str, Any]) -> str:
    if r.get("reference_zero"):
        return "n/a: ref. 0"
    if not math.isfinite(r["ratio"]):
        return "-"
    hi = "inf" if not math.isfinite(r["ratio_hi"]) else f"{r['ratio_hi']:.2g}"
    return f"{r['ratio']:.2g} [{r['ratio_lo']:.2g}, {hi}]"
