"""The figure `ttcl eval --plot` writes: accuracy against FLOPs per item (log x), one panel per bin plus "all",
95% error bars, one line per (series, signal), greedy points of each model as markers; with `--allocate`, a
last panel with the compute-optimal policy against the best uniform configuration."""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ttcl.safeio import write_whole

SIGNAL_COLORS = {"pass": "black", "strict": "dimgray", "maj": "tab:blue"}
# One hue per verifier, the same in every figure (QA pass: a verifier's colour followed the order its signals
# came in, so one figure's orange was another's navy): its weighted@k (`NAME_w`) the dark shade, its best@k
# (`NAME_best`) the light one. No red: red is the greedy markers' alone (QA pass: a verifier's weighted@k was
# drawn red beside them); no blue or grey, maj's and pass/strict's.
PAIRS = [("tab:orange", "#ffbb78"), ("tab:green", "#98df8a"), ("tab:purple", "#c5b0d5"), ("tab:brown", "#c49c94"),
         ("tab:pink", "#f7b6d2"), ("tab:olive", "#dbdb8d"), ("tab:cyan", "#9edae5"), ("navy", "#8c8cd9")]
PALETTE = [dark for dark, _ in PAIRS] + [light for _, light in PAIRS]
STYLES = ["-", "--", ":", "-."]  # one per series (model): the legend's line samples are long enough to show it
MARKERS = ["X", "^", "*", "s", "D", "P", "v", "o"]
GROUP_COLORS = ["deeppink", "darkcyan", "goldenrod", "chocolate", "olive", "slategray"]


def _family(signal: str) -> tuple[str, int]:
    """`orm_w` -> ("orm", 0), `orm_best` -> ("orm", 1): the verifier a rule reads, and its shade."""
    for suffix, shade in (("_w", 0), ("_best", 1)):
        if signal.endswith(suffix):
            return signal[: -len(suffix)], shade
    return signal, 0


def signal_colors(signals: Sequence[str]) -> dict[str, str]:
    """Each signal's colour: fixed for pass, strict and maj; for a verifier's rules a pair chosen by the
    verifier's name (a stable hash, the next free pair on a clash within one figure, in name order)."""
    out: dict[str, str] = {}
    taken: dict[str, int] = {}
    for signal in sorted(set(signals)):
        if signal in SIGNAL_COLORS:
            out[signal] = SIGNAL_COLORS[signal]
            continue
        family, shade = _family(signal)
        if family not in taken:
            i = zlib.crc32(family.encode()) % len(PAIRS)
            free = [j for j in range(len(PAIRS)) if j not in taken.values()]
            if free and i not in free:
                i = min(free, key=lambda j: (j - i) % len(PAIRS))
            taken[family] = i
        out[signal] = PAIRS[taken[family]][shade]
    return out


def _bar(length: float) -> float:
    """An error bar's length, never negative: a bootstrap interval of a mean can miss the mean by a rounding
    step (all resamples equal), and matplotlib refuses a negative length."""
    return max(0.0, length) if length == length else length


def write_figure(path: Path, *, curves: Sequence[dict[str, Any]], points: Sequence[dict[str, Any]],
                 bins: Sequence[Any], by: str | None, title: str, allocation: dict[str, Any] | None = None) -> list[str]:
    """`curves`: rows with series, signal, bin, flops, accuracy, lo, hi (one line per series+signal), and
    optionally `degraded` (items on_exhaust shrank or stopped: the point is ringed and labelled with `config`);
    `points`: rows with label, bin, flops, accuracy, lo, hi (one marker per label; rows that also carry `group`
    and `config`, an overlaid sweep's, are one dotted line per group); `allocation`: `ttcl eval
    --allocate`'s result, drawn in a panel of its own (the compute-optimal policy against the best uniform
    configuration, both on the report half: Snell et al.'s comparison). Returns the panels' titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(bins) + (1 if allocation else 0)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.9), squeeze=False)
    series = list(dict.fromkeys(r["series"] for r in curves))
    labels = list(dict.fromkeys(p["label"] for p in points))
    groups = list(dict.fromkeys(p["group"] for p in points if p.get("group")))
    colors = signal_colors([r["signal"] or f"series {r['series']}" for r in curves])
    handles: dict[str, Any] = {}
    for ax, value in zip(axes.flat, bins, strict=False):
        for r_series in series:
            style = STYLES[series.index(r_series) % len(STYLES)]
            for signal in dict.fromkeys(r["signal"] for r in curves if r["series"] == r_series):
                pts = sorted((r for r in curves if r["series"] == r_series and r["signal"] == signal
                              and r["bin"] == value and r["items"]), key=lambda r: r["flops"])
                if not pts:
                    continue
                # the line's style is the series (model); a verifier's best@k has triangles, so that where it
                # equals its weighted@k both stay visible (QA pass: best@k was dashed, as the second model is)
                color = colors[signal or f"series {r_series}"]  # a sweep's curves: one colour per series
                marker = "v" if signal.endswith("_best") else "."
                handles.setdefault(f"{r_series} {signal}".strip(), _line(ax, pts, color, style, marker))
                if len({p.get("config") for p in pts}) > 1:  # a sweep: which configuration each point is
                    for p in pts:
                        if not p.get("degraded"):
                            ax.annotate(p["config"], (p["flops"], p["accuracy"]), textcoords="offset points",
                                        xytext=(4, 4), fontsize=6, color="dimgray")
                shrunk = [p for p in pts if p.get("degraded")]
                if shrunk:  # on_exhaust changed these configurations: drawn at their actual cost, ringed
                    hs = ax.scatter([p["flops"] for p in shrunk], [p["accuracy"] for p in shrunk], s=90,
                                    facecolors="none", edgecolors="crimson", linewidths=1.4, zorder=5)
                    for p in shrunk:
                        ax.annotate(p.get("config", ""), (p["flops"], p["accuracy"]), textcoords="offset points",
                                    xytext=(5, -10), fontsize=6, color="crimson")
                    handles.setdefault("degraded by on_exhaust (shrunk/stopped), at actual cost", hs)
        for p in points:
            if p["bin"] != value or not p.get("items") or p.get("group"):
                continue
            i = labels.index(p["label"])
            greedy = p["label"].endswith("greedy")
            h = ax.errorbar([p["flops"]], [p["accuracy"]], yerr=[[_bar(p["accuracy"] - p["lo"])], [_bar(p["hi"] - p["accuracy"])]],
                            color="red" if greedy else PALETTE[-1 - i % len(PALETTE)],
                            marker=MARKERS[i % len(MARKERS)], markersize=9 if greedy else 7, linestyle="none", capsize=2)
            handles.setdefault(p["label"], h)
        for g in groups:  # a sweep overlaid (--overlay): its configurations joined by a dotted line, one color each
            pts = sorted((p for p in points if p.get("group") == g and p["bin"] == value and p.get("items")),
                         key=lambda p: p["flops"])
            if pts:
                i = groups.index(g)
                h = ax.errorbar([p["flops"] for p in pts], [p["accuracy"] for p in pts],
                                yerr=[[_bar(p["accuracy"] - p["lo"]) for p in pts], [_bar(p["hi"] - p["accuracy"]) for p in pts]],
                                color=GROUP_COLORS[i % len(GROUP_COLORS)], marker=MARKERS[(i + 1) % len(MARKERS)], markersize=6,
                                linestyle=":", linewidth=1.6, capsize=2)
                handles.setdefault(f"{g} ({', '.join(dict.fromkeys(p['config'] for p in points if p.get('group') == g))})", h)
        _axes(ax, (f"no {by}" if value is None else f"{by} = {value}") if by else str(value))
    titles = [ax.get_title() for ax in list(axes.flat)[: len(bins)]]
    if allocation:
        ax = list(axes.flat)[len(bins)]
        for rows, label, color, style in ((allocation.get("uniform") or [], "best uniform (report half)", "dimgray", "--"),
                                          (allocation["curve"], f"compute-optimal, bins {allocation.get('bins_from', 'given').split(':')[0]} "
                                           "(report half)", "magenta", "-")):
            if rows:
                handles.setdefault(label, _line(ax, sorted(rows, key=lambda r: r["flops"]), color, style))
        g = allocation.get("greedy")
        if g and g.get("items"):  # the series' own greedy answer on the same half (QA pass: not drawn)
            h = ax.errorbar([g["flops"]], [g["accuracy"]], yerr=[[_bar(g["accuracy"] - g["lo"])], [_bar(g["hi"] - g["accuracy"])]],
                            color="red", marker="X", markersize=9, linestyle="none", capsize=2)
            handles.setdefault(f"{allocation.get('series', 'series')} greedy (report half)", h)
        named = f" of {allocation['series']}" if allocation.get("series") else ""
        _axes(ax, f"allocation{named} ({allocation['report_items']} report items)")
        titles.append(ax.get_title())
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    lines = title_lines(title, fig.get_figwidth())
    fig.suptitle("\n".join(lines), fontsize=11)
    # as many legend columns as the longest entry leaves room for (about 4.2 pt a character at size 7)
    widest = max((len(k) for k in handles), default=1) * 4.2 + 40
    ncol = max(1, min(6, len(handles), int(fig.get_figwidth() * 72 // widest)))
    # line samples long enough to show a series' dash (QA pass: too short, two models' entries looked alike)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=ncol, fontsize=7, frameon=True,
               handlelength=3.5)
    legend_rows = math.ceil(len(handles) / ncol)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, min(0.4, (0.19 * legend_rows + 0.25) / height), 1,
                           1 - (0.35 + 0.2 * (len(lines) - 1)) / height))
    # written beside it, then moved over it: a kill mid-write left a cut PNG over the last good one (QA pass); a
    # link stays a link, a device is written through (safeio.write_whole)
    out = Path(path)
    try:  # an OSError goes up as it is: the caller says which path and what
        write_whole(out, lambda name: fig.savefig(name, dpi=110, format=out.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return titles


def title_lines(title: str, width_in: float) -> list[str]:
    """The figure's title wrapped to its width (about 6.2 pt a character at size 11; QA pass: the one-panel
    figure cut a one-line title off at both sides, the program's name and the judge)."""
    return textwrap.wrap(title, max(30, int(width_in * 72 / 6.2))) or [""]


def _line(ax: Any, pts: Sequence[dict[str, Any]], color: str, style: str, marker: str = ".") -> Any:
    """One curve (points sorted by FLOPs) with its 95% error bars."""
    ys = [p["accuracy"] for p in pts]
    err = [[_bar(y - p["lo"]) for y, p in zip(ys, pts, strict=True)], [_bar(p["hi"] - y) for y, p in zip(ys, pts, strict=True)]]
    return ax.errorbar([p["flops"] for p in pts], ys, yerr=err, color=color, linestyle=style, marker=marker,
                       markersize=4 if marker == "." else 5, capsize=2, linewidth=1.3, elinewidth=0.8)


def _axes(ax: Any, title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=8))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=80))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = ax.get_xlim()
    if 0 < lo < hi and math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:
        # fewer than two powers of ten in view, so one label or none: label minor ticks too, each at least a
        # fifth of the panel's width from every other label, a power of ten's included (QA pass: labels
        # overprinted, and a panel under a decade, whose minor ticks matplotlib spaces linearly, read 1x10^8
        # three times)
        gap = 0.2 * math.log10(hi / lo)
        kept = [x for x in ax.xaxis.get_majorticklocs() if lo <= x <= hi]
        keep: list[float] = []
        for x in sorted(x for x in ax.xaxis.get_minorticklocs() if lo <= x <= hi):
            if all(abs(math.log10(x / k)) >= gap for k in kept):
                kept.append(x)
                keep.append(x)
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda x, _pos: _minor_label(x) if any(math.isclose(x, k, rel_tol=1e-9) for k in keep) else ""))
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("FLOPs per item (ttcl ledger)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=8)


def _minor_label(x: float) -> str:
    """A minor tick's label on a log axis, `2×10^7` or `1.2×10^8` (two significant digits)."""
    if x <= 0:
        return ""
    exp = math.floor(math.log10(x) + 1e-9)
    return rf"${x / 10**exp:.2g}\times10^{{{exp}}}$"
