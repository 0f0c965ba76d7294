"""What `ttcl eval` computes from its runs and prints: the sweep report and the one-pool report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ttcl.commands.compile import rebind_models, styled
from ttcl.commands.eval_cells import (
    _acc,
    _f,
    _items,
    _print_overlay,
    _ratio,
    _saving,
    _saving_ci,
    _saving_note,
)
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.analysis.curves import bin_label


def item_rows(summary: Any, seed: int) -> list[dict[str, Any]]:
    """Per-item rows of one run: dataset fields, answer, correctness, cost per unit."""
    return [{"item": r["item"], "seed": seed, "fields": r.get("fields", {}), "answer": r["answer"], "gold": r["gold"],
             "correct": r["correct"], "status": r["status"], "cost": r["cost"]} for r in summary.results]


# ------------------------------------------------------------------ sweep


def sweep_report(runs: Any, series: list[tuple[str, list[str]]], configs: list[list[tuple[str, str]]],
                 sets: list[str], models: list[str], seeds: list[int], by: str | None) -> dict[str, Any]:
    from ttcl.runtime.analysis.curves import bin_values, in_bin, summarize
    from ttcl.runtime.analysis.intervals import paired_diff

    rows: list[dict[str, Any]] = []
    per_item: dict[tuple[str, str], np.ndarray] = {}  # NaN where an item is ungraded (the judge failed on it)
    per_flops: dict[tuple[str, str], np.ndarray] = {}
    fields: list[dict[str, Any]] = []
    for label, binds in series:
        for config in configs:
            name = ", ".join(f"{k}={v}" for k, v in config) or "defaults"
            sums, items = [], []
            for s in seeds:
                summary, _ = runs.run(label, list(sets) + [f"{k}={v}" for k, v in config], rebind_models(models, binds), s, name)
                sums.append(summary)
                items += item_rows(summary, s)
            fields = [r.get("fields", {}) for r in sums[0].results]
            # an item is graded when the judge graded it under every seed; an ungraded one is never counted wrong
            ok = np.array([[r["correct"] is not None for r in su.results] for su in sums]).all(axis=0)
            acc = np.array([[1.0 if r["correct"] else 0.0 for r in su.results] for su in sums]).mean(axis=0)
            acc[~ok] = math.nan
            fl = np.array([[r["cost"]["flops"] for r in su.results] for su in sums]).mean(axis=0)
            per_item[(label, name)] = acc
            per_flops[(label, name)] = fl
            bins = []
            for value in bin_values(fields, by):
                m = in_bin(fields, by, value)
                # a point on the accuracy-FLOPs plane: both over the bin's graded items (FLOPs over all its
                # items where none is graded)
                b = summarize(acc[m & ok], fl[m & ok])
                bins.append({"bin": value, **b, "items": int(m.sum()), "graded": int((m & ok).sum()),
                             "flops": b["flops"] if (m & ok).any() else float(fl[m].mean()) if m.any() else math.nan})
            allrow = bins[-1]
            graded = int(ok.sum())
            rows.append({
                # the values as the program took them (`n: 4`, not "4": QA pass), from the run's own header
                "series": label, "config": {k: sums[0].header.get("params", {}).get(k, v) for k, v in config},
                "seeds": seeds, "graded": graded,
                "accuracy": allrow["accuracy"] if graded else None, "lo": allrow["lo"], "hi": allrow["hi"],
                "interval": allrow.get("interval"), "items": len(acc),
                "flops_per_item": float(fl.mean()),
                "tokens_per_item": float(np.mean([su.actual_mean["tokens"] for su in sums])),
                "calls_per_item": float(np.mean([su.actual_mean["calls"] for su in sums])),
                "wall_seconds": float(sum(su.wall_seconds for su in sums)),
                "failed": sum(su.failed for su in sums), "stopped": sum(su.stopped for su in sums),
                "degraded": sum(su.degraded for su in sums),
                # the pool charged for attempts a kill cut short: a rerun on kept traces has less (QA pass: unsaid)
                "pool_beyond_items": {u: sum(su.pool_beyond_items.get(u, 0.0) for su in sums)
                                      for u in sorted({u for su in sums for u in su.pool_beyond_items})},
                "models": sums[0].header["models"], "shrunk_nodes": sum(r.shrunk for su in sums for r in su.rows),
                "verdict": sums[0].verdict, "bins": bins, "item_rows": items,
            })

    def pair(a: tuple[str, str], b: tuple[str, str]) -> dict[str, Any]:
        """a - b over the same items graded in both, its FLOPs ratio (all items), and the same per bin of `by`."""
        both = ~np.isnan(per_item[a]) & ~np.isnan(per_item[b])

        def diff(m: np.ndarray) -> dict[str, Any]:
            return {**paired_diff(per_item[a][m & both], per_item[b][m & both]), "of_items": int(m.sum()),
                    "flops_ratio": _flops_ratio(per_flops[a][m], per_flops[b][m])}

        out: dict[str, Any] = diff(np.ones(len(both), dtype=bool))
        if by is not None:
            out["bins"] = [{"bin": v, **diff(in_bin(fields, by, v))} for v in bin_values(fields, by)[:-1]]
        return out

    diffs = []
    first = series[0][0]
    for label, _ in series[1:]:
        for config in configs:
            name = ", ".join(f"{k}={v}" for k, v in config) or "defaults"
            diffs.append({"a": label, "b": first, "config": name, **pair((label, name), (first, name))})
    for label, _ in series:  # within a series: every configuration against the first one
        names = [", ".join(f"{k}={v}" for k, v in config) or "defaults" for config in configs]
        for name in names[1:]:
            diffs.append({"a": f"{label} {name}", "b": f"{label} {names[0]}", "config": "same items",
                          **pair((label, name), (label, names[0]))})
    return {"mode": "sweep", "by": by, "bins": bin_values(fields, by), "rows": rows, "paired_differences": diffs}


def _flops_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """Mean FLOPs of a over mean FLOPs of b (nan when b spent nothing)."""
    den = float(b.mean()) if b.size else 0.0
    return float(a.mean()) / den if den > 0 else math.nan


def print_sweep(report: dict[str, Any], console: Console) -> None:
    rows = report["rows"]
    table = Table(title=f"{report['title']}: accuracy against compute (95% intervals)")
    for col in ("series", "config", "accuracy [95% CI]", "FLOPs/item", "tokens/item", "calls/item", "wall s", "note"):
        table.add_column(col, justify="left" if col in ("series", "config") else "right")
    for r in rows:
        table.add_row(r["series"], ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults",
                      _acc(r) if r["graded"] else "n/a: judge failed on every item", _f(r["flops_per_item"]),
                      f"{r['tokens_per_item']:.1f}",
                      f"{r['calls_per_item']:.1f}", f"{r['wall_seconds']:.2f}", _note(r))
    console.print(table)
    if report["by"]:
        t = Table(title=f"by {report['by']}: accuracy [95% CI] / FLOPs per item")
        t.add_column("series / config")
        for b in report["bins"]:
            t.add_column(bin_label(report["by"], b), justify="right")
        for r in rows:
            name = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults"
            t.add_row(f"{r['series']} {name}", *(f"{_acc(b)}\n{_f(b['flops'])}" for b in r["bins"]))
        console.print(t)
    for d in report["paired_differences"]:
        where = "" if d["config"] == "same items" else f" ({d['config']})"
        console.print(f"{d['a']} - {d['b']}{where}: {_diff(d)} paired over {_over(d)}, "
                      f"at {_x(d['flops_ratio'])} the FLOPs")
        if d.get("bins"):
            console.print("  by " + report["by"] + ": " + "; ".join(
                f"{b['bin']}: {_diff(b)}" + (f" over {_over(b)}" if 0 < b["items"] < b["of_items"] else "")
                + f" at {_x(b['flops_ratio'])}" for b in d["bins"]))


def _diff(d: dict[str, Any]) -> str:
    """A paired difference and its interval; n/a when no item is graded in both series."""
    return f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" if d["items"] else "n/a (no item graded in both)"


def _over(d: dict[str, Any]) -> str:
    """`20 items`, or `10 graded items of 20` when the judge failed on some (they are left out, not wrong)."""
    of = d.get("of_items") or d["items"]
    return f"{d['items']} items" if d["items"] == of else f"{d['items']} graded items of {of}"


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "-"


def _note(row: dict[str, Any]) -> str:
    lost = ", ".join(f"{_f(v) if u == 'flops' else f'{v:g}'} {u}" for u, v in row.get("pool_beyond_items", {}).items())
    ungraded = row["items"] - row["graded"] if 0 < row["graded"] < row["items"] else 0
    return "; ".join(text for text, on in (
        ("over budget statically", row["verdict"] == "over"), (f"{row.get('degraded')} items degraded", row.get("degraded")),
        (f"{row['shrunk_nodes']} nodes shrunk", row["shrunk_nodes"]), (f"{row['stopped']} items stopped", row["stopped"]),
        (f"pool charged {lost} for attempts a kill cut short", lost), (f"{row['failed']} items failed", row["failed"]),
        (f"{ungraded} items ungraded (judge failed)", ungraded)) if on)


# ------------------------------------------------------------------ pool


def model_meta(ref_label: str, refs: dict[str, str]) -> dict[str, Any]:
    from ttcl.runtime.backends.base import resolve_ref

    ref = refs.get(ref_label)
    if ref is None:
        return {}
    try:
        path = resolve_ref(ref)
        with open(f"{path}/ttcl_meta.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, TtclRuntimeError):
        return {}


def verifier_training(signal: str, refs: dict[str, str], policy: str | None) -> tuple[float | None, list[str]]:
    """The training FLOPs a rule adds to its series' pretraining: none for pass, strict and maj; for a verifier's
    rule (`NAME_w`, `NAME_best`) the verifier's `training_flops` and those of the models it was initialised from
    (`init_from`, a bundled model's name), each counted once and the series' own policy not again; None where a
    model of it says no training FLOPs. Also the models counted."""
    family = signal.rsplit("_", 1)[0] if signal.endswith(("_w", "_best")) else None
    if family is None or family not in refs:
        return 0.0, []
    total, trained, seen = 0.0, [], {policy}
    meta = model_meta(family, refs)
    while meta:
        name = meta.get("name") or family
        if name in seen:
            break
        flops = meta.get("training_flops")
        if not isinstance(flops, int | float):
            return None, trained
        total += float(flops)
        trained.append(name)
        seen.add(name)
        init = meta.get("init_from")
        meta = model_meta("init", {"init": f"ttcl:{init}"}) if init else {}
    return total, trained


def pool_report(runs: Any, program: Any, series: list[tuple[str, list[str]]], greedy: list[tuple[str, list[str]]],
                sets: list[str], models: list[str], seeds: list[int], by: str | None, *, param: str, n: int,
                ks: list[int] | None, alloc: tuple[str, int] | None, baseline: str, pretrain: dict[str, float],
                split_seed: int, overlays: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from ttcl.commands.compile import compile_from_cli
    from ttcl.commands.eval_checks import greedy_sets, point_sets
    from ttcl.runtime.analysis.allocate import split_halves
    from ttcl.runtime.analysis.collect import find_pool_nodes, pools_from_trace
    from ttcl.runtime.analysis.compare import exchange, total_compute
    from ttcl.runtime.analysis.curves import bin_values, curve_rows, in_bin, item_table, summarize
    from ttcl.runtime.analysis.intervals import paired_diff
    from ttcl.runtime.trace import read_trace

    def pooled(label: str, binds: list[str], extra_sets: list[str], tag: str,
               override: bool = False) -> tuple[list[Any], list[Any], dict[str, str]]:
        all_sets = point_sets(sets, extra_sets, override=override)
        nodes = find_pool_nodes(compile_from_cli(program, all_sets, rebind_models(models, binds), None, runs.allow_remote).dag)
        out, items, refs = [], [], {}
        for s in seeds:
            summary, trace = runs.run(label, all_sets, rebind_models(models, binds), s, tag)
            # a trace kept from a longer run (a larger --limit) holds more items than this eval uses
            out.append(pools_from_trace(read_trace(trace), nodes, only={r["item"] for r in summary.results}))
            items += item_rows(summary, s)
            refs = summary.header["models"]
        return out, items, refs

    gsets = greedy_sets(param)
    tables, greedy_tables, item_out, refs_of = {}, {}, {}, {}
    pool_runs, greedy_runs = {}, {}
    for label, binds in series:
        pool_runs[label], item_out[f"{label} pool"], refs_of[label] = pooled(label, binds, [f"{param}={n}"],
                                                                            f"pool {param}={n}")
    for label, binds in series + greedy:
        greedy_runs[label], item_out[f"{label} greedy"], refs = pooled(label, binds, gsets, "greedy",
                                                                       override=True)
        refs_of.setdefault(label, refs)
    # an item some candidate of which the judge failed on (in any run) is ungraded: it leaves every table,
    # so that the same items are compared everywhere and none of them counts as wrong
    total = len(next(iter(pool_runs.values()))[0])
    from ttcl.commands.eval_items import short_pools, ungraded_items

    ungraded = ungraded_items([*pool_runs.values(), *greedy_runs.values()], total, runs.judge or "gold")
    short = short_pools(pool_runs, greedy_runs, total, set(ungraded), n)
    out_of_tables = set(ungraded) | set(short)
    for label, pools in pool_runs.items():
        tables[label] = item_table(label, [[p for p in run if p.index not in out_of_tables] for run in pools], ks)
    for label, pools in greedy_runs.items():
        greedy_tables[label] = item_table(label, [[p for p in run if p.index not in out_of_tables] for run in pools],
                                          [1])
    first = next(iter(tables.values()))
    drawn = min(p.pool.n for runs in pool_runs.values() for run in runs for p in run if p.index not in out_of_tables)
    if drawn < n:  # the program drew fewer than --pool n for every item (QA pass: said nowhere; k = 16 vanished)
        import typer

        asked = [k for k in ks or [] if k > drawn]
        typer.echo(f"note: --pool {param}={n}: every item's pool holds at most {drawn} candidates, not {n}: the "
                   f"program's budget cuts it (`on_exhaust`; see `ttcl check --set {param}={n}`), so the curves "
                   f"stop at k = {drawn}" + (f" (no estimate for k = {', '.join(map(str, asked))})" if asked else ""),
                   err=True)
    fields = first.fields
    bins = bin_values(fields, by)
    curves = [row for t in tables.values() for row in curve_rows(t, by)]
    greedy_rows = []
    for label, t in greedy_tables.items():
        for value in bins:
            m = in_bin(fields, by, value)
            greedy_rows.append({"label": f"{label} greedy", "model": label, "bin": value,
                                **summarize(t.acc[("maj", 1)][m], t.flops[("maj", 1)][m])})
    # Does compute help? Each signal at the largest k against the same model's greedy answer, paired.
    diffs = []
    for label, t in tables.items():
        g = greedy_tables[label].acc[("maj", 1)]
        for signal in t.signals:
            diffs.append({"series": label, "signal": signal, "k": t.ks[-1], "vs": f"{label} greedy",
                          **paired_diff(t.acc[(signal, t.ks[-1])], g)})
    # Exchange: each series' signals against every larger model's greedy point, per bin
    # (larger: more non-embedding parameters when both are known; every other model otherwise).
    def pretrain_of(label: str) -> float | None:
        return pretrain.get(label, model_meta("policy", refs_of[label]).get("training_flops"))

    def larger(other: str, label: str) -> bool:  # by non-embedding parameters
        a = model_meta("policy", refs_of[label]).get("params_non_embedding")
        b = model_meta("policy", refs_of[other]).get("params_non_embedding")
        return other != label and (a is None or b is None or b > a)

    # What compute must buy: each larger model's greedy accuracy over the series' own, paired per bin (QA pass:
    # an "all" exchange of 0.24x read as a win where the larger model was not distinguishably better at all)
    gaps = []
    for label in tables:
        own = greedy_tables[label].acc[("maj", 1)]
        for other, g in greedy_tables.items():
            if larger(other, label):
                for value in bins:
                    m = in_bin(fields, by, value)
                    gaps.append({"series": label, "reference": f"{other} greedy", "bin": value,
                                 **paired_diff(g.acc[("maj", 1)][m], own[m])})
    exch = []
    for label, t in tables.items():
        for other, g in greedy_tables.items():
            if not larger(other, label):
                continue
            for value in bins:
                m = in_bin(fields, by, value)
                for signal in t.signals:
                    e = exchange([t.acc[(signal, k)][m] for k in t.ks], [t.flops[(signal, k)][m] for k in t.ks],
                                 g.acc[("maj", 1)][m], g.flops[("maj", 1)][m])
                    exch.append({"series": label, "signal": signal, "reference": f"{other} greedy", "bin": value, **e})
    # Snell's total compute: each series against every other model's greedy point, all items.
    totals = []
    for label, t in tables.items():
        meta_a = model_meta("policy", refs_of[label])
        pa = pretrain.get(label, meta_a.get("training_flops"))
        for other, g in greedy_tables.items():
            if not larger(other, label):
                continue
            meta_b = model_meta("policy", refs_of[other])
            pb = pretrain.get(other, meta_b.get("training_flops"))
            tokens_b = meta_b.get("training_tokens")
            if pa is None or pb is None or not tokens_b:
                continue
            # B's tokens per query: its greedy decode's, as its FLOPs F_B are (QA pass: the item's whole tokens
            # counted the verifier passes the program made on the greedy answer, 2-3x the decode)
            per_query = float(np.mean([p.pool.tokens for run in greedy_runs[other] for p in run
                                       if p.index not in out_of_tables]))
            for signal in t.signals:
                # a verifier's rule is charged the verifier's training too, and its lineage's not counted yet
                # (QA pass: on expr the verifier's lineage cost about what the reference's pretraining did)
                extra, trained = verifier_training(signal, refs_of[label], meta_a.get("name"))
                unknown = extra is None  # a verifier that says no training FLOPs: the policy's alone, said so
                extra = extra or 0.0
                curve = ([float(t.flops[(signal, k)].mean()) for k in t.ks], [float(t.acc[(signal, k)].mean()) for k in t.ks])
                for row in total_compute(curve, pa + extra,
                                         (float(g.flops[("maj", 1)].mean()), float(g.acc[("maj", 1)].mean())),
                                         pb, tokens_b, per_query):
                    totals.append({"series": label, "signal": signal, "reference": f"{other} greedy",
                                   "pretrain_flops_a": pa + extra, "pretrain_flops_b": pb, "trained": trained,
                                   "verifier_training_unknown": unknown, **row})
    report: dict[str, Any] = {
        "mode": "pool", "by": by, "bins": bins, "pool": {"param": param, "n": n, "drawn": drawn, "ks": first.ks},
        "seeds": seeds,
        "curves": curves, "greedy": greedy_rows, "greedy_vs_pool": diffs, "greedy_gap": gaps, "exchange": exch, "total_compute": totals,
        "item_rows": item_out, "items": total, "graded": total - len(ungraded), "ungraded_items": sorted(ungraded),
        "short_pool_items": sorted(short),
    }
    if alloc is not None:
        report["allocation"] = _allocation(first, alloc, baseline, by, fields, split_seed)
        # the series' own greedy answer on the report half, the cheapest reference a policy must beat (QA pass:
        # a 6.27x saving against a baseline below greedy decoding, which no line or panel showed)
        half = ~split_halves(len(fields), split_seed)
        g = greedy_tables[first.label]
        report["allocation"]["greedy"] = summarize(g.acc[("maj", 1)][half], g.flops[("maj", 1)][half])
    if overlays:
        report["overlay"] = overlay_points(report, overlays, tables)
    return report


def _allocation(table: Any, alloc: tuple[str, int, str | None], baseline: str, by: str | None,
                fields: list[dict[str, Any]], split_seed: int) -> dict[str, Any]:
    from ttcl.runtime.analysis.allocate import allocate, keeping_table, probe_bins, split_halves
    from ttcl.runtime.analysis.curves import item_bins

    if baseline not in table.signals:
        raise TtclRuntimeError(f"--baseline {baseline!r}: not a signal of this pool (signals: {', '.join(table.signals)})")
    select = split_halves(len(fields), split_seed)
    kind, probe, verifier = alloc
    policy = table
    if kind == "field":
        bins, extra = np.array([str(b) for b in item_bins(fields, by)]), None
        source = f"oracle: dataset field {by}"
    else:
        bins, extra = probe_bins(table.pools, probe, select, verifier=verifier)
        signal = f"mean {verifier} score" if verifier is not None else "agreement"
        if kind == "keep":
            policy, extra = keeping_table(table, probe, verifier), None
            source = (f"predicted: {signal} of the first {probe} pool samples, which every configuration keeps "
                      f"(k >= {probe}; their decodes{f' and {verifier} passes' if verifier else ''} counted once)")
        else:
            source = (f"predicted: {signal} of the first {probe} pool samples (their FLOPs"
                      f"{f' and {verifier} passes' if verifier else ''} charged to every item)")
    out = allocate(policy, bins, select, baseline=baseline, extra=extra, reference=table)
    out.update(bins_from=source, series=table.label, split_seed=split_seed)
    return out


def overlay_points(report: dict[str, Any], sweeps: list[dict[str, Any]],
                   tables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each sweep row as a point per bin, and every pool curve read at the point's FLOPs (log-linear).

    With the pool's item tables, each reading is also a paired difference over the bin's items: the
    run's accuracy on an item against the pool signal's estimate on the same item at the run's FLOPs
    (log-linear in FLOPs between the two k that bracket them, with one weight for every item, so the
    items' mean is the curve's reading), with a paired bootstrap interval."""
    from ttcl.runtime.analysis.compare import ENDS, acc_at, outside, pool_at
    from ttcl.runtime.analysis.curves import in_bin
    from ttcl.runtime.analysis.intervals import paired_diff

    out: list[dict[str, Any]] = []
    for data in sweeps:
        # the program's name tells apart two sweeps of one series (beam search under two verifiers)
        prog = f"{Path(data['program']).stem}: " if data.get("program") else ""
        for r in data["rows"]:
            config = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "defaults"
            run_acc = _run_items(r, tables, report.get("items"))
            for b in r["bins"]:
                if b["bin"] not in report["bins"]:
                    continue
                point = {"label": f"{prog}{r['series']} {config}", "group": f"{prog}{r['series']}", "config": config,
                         "bin": b["bin"], "items": b["items"], "accuracy": b["accuracy"], "lo": b["lo"], "hi": b["hi"], "flops": b["flops"],
                         "signal": None}
                out.append(point)
                for series in dict.fromkeys(c["series"] for c in report["curves"]):
                    for signal in dict.fromkeys(c["signal"] for c in report["curves"] if c["series"] == series):
                        pts = [c for c in report["curves"] if c["series"] == series and c["signal"] == signal
                               and c["bin"] == b["bin"]]
                        read = {**point, "series": series, "signal": signal, "outside": outside([c["flops"] for c in pts], b["flops"]),
                                "pool_accuracy": acc_at([c["flops"] for c in pts], [c["accuracy"] for c in pts], b["flops"], ends=ENDS)}
                        if run_acc is not None and series in tables:
                            t = tables[series]
                            m = in_bin(t.fields, report["by"], b["bin"])
                            pool = pool_at(t, signal, m, b["flops"], ends=ENDS)
                            both = ~np.isnan(run_acc[m])  # the run's ungraded items leave the pairing
                            read["paired"] = (paired_diff(run_acc[m][both], pool[both]) if pool is not None
                                              else {"diff": math.nan, "lo": math.nan, "hi": math.nan, "items": int(m.sum())})
                        out.append(read)
    return out


def _run_items(row: dict[str, Any], tables: dict[str, Any] | None, total: int | None = None) -> np.ndarray | None:
    """A sweep row's accuracy per item (seeds averaged) on the pool tables' items (`total` in the eval), in
    dataset order; None when it cannot pair."""
    if not tables or not row.get("graded") or not row.get("item_rows"):
        return None
    by_item: dict[int, list[float]] = {}
    for it in row["item_rows"]:  # an item the judge failed on (under any seed) is NaN: ungraded, not wrong
        by_item.setdefault(int(it["item"]), []).append(math.nan if it["correct"] is None else float(bool(it["correct"])))
    table = next(iter(tables.values()))
    n = total if total is not None else len(table.fields)
    if sorted(by_item) != list(range(n)):
        raise TtclRuntimeError(f"--overlay: the run {row['series']!r} covers items {min(by_item)}..{max(by_item)} "
                               f"({len(by_item)} of them), this eval items 0..{n - 1}; use the same dataset and --limit")
    return np.array([float(np.mean(by_item[i])) for i in (table.index or range(n))])


def _bin_table(report: dict[str, Any], rows: str, key: tuple[str, ...], head: str, label: Any, cell: Any,
               title: str) -> Table:
    """A table of `report[rows]`, a row per distinct `key` fields (labelled by `label(key)`) and a column per bin."""
    t = Table(title=title)
    t.add_column(head)
    for v in report["bins"]:
        t.add_column(bin_label(report["by"], v), justify="right")
    for k in dict.fromkeys(tuple(r[f] for f in key) for r in report[rows]):
        t.add_row(label(k), *(cell(r) for r in report[rows] if tuple(r[f] for f in key) == k))
    return t


def print_pool(report: dict[str, Any], console: Console) -> None:
    pool = report["pool"]
    over = "all items" if report.get("graded", 0) == report.get("items", 0) else \
        f"{report['graded']} graded items of {report['items']}: the judge failed on the others"
    size = pool["n"] if pool.get("drawn", pool["n"]) >= pool["n"] else f"{pool['drawn']} ({pool['param']}={pool['n']}, cut by the budget)"
    t = Table(title=f"{report['title']}: one pool of {size} per item; accuracy [95% CI] @ FLOPs per item ({over})")
    t.add_column("series")
    t.add_column("signal")
    for k in pool["ks"]:
        t.add_column(f"k={k}", justify="right")
    for series in dict.fromkeys(r["series"] for r in report["curves"]):
        for signal in dict.fromkeys(r["signal"] for r in report["curves"] if r["series"] == series):
            cells = {r["k"]: r for r in report["curves"]
                     if r["series"] == series and r["signal"] == signal and r["bin"] == "all"}
            t.add_row(series, signal, *(f"{_acc(cells[k])}\n@ {_f(cells[k]['flops'])}" for k in pool["ks"]))
    console.print(t)
    g = Table(title="greedy points: accuracy [95% CI] @ FLOPs per item")
    g.add_column("model")
    for b in report["bins"]:
        g.add_column(bin_label(report["by"], b), justify="right")
    for label in dict.fromkeys(r["label"] for r in report["greedy"]):
        g.add_row(label, *(f"{_acc(r)}\n@ {_f(r['flops'])}" for r in report["greedy"] if r["label"] == label))
    console.print(g)
    if report["by"]:
        b = Table(title=f"by {report['by']}, at k = {pool['ks'][-1]}: accuracy [95% CI]")
        b.add_column("series / signal")
        for v in report["bins"]:
            b.add_column(bin_label(report["by"], v), justify="right")
        kmax = pool["ks"][-1]
        for series in dict.fromkeys(r["series"] for r in report["curves"]):
            for signal in dict.fromkeys(r["signal"] for r in report["curves"] if r["series"] == series):
                cells = [r for r in report["curves"] if r["series"] == series and r["signal"] == signal and r["k"] == kmax]
                b.add_row(f"{series} {signal}", *(_acc(r) for r in cells))
        console.print(b)
    for d in report["greedy_vs_pool"]:
        console.print(f"{d['series']} {d['signal']}@{d['k']} - {d['vs']}: {d['diff']:+.3f} "
                      f"[{d['lo']:+.3f}, {d['hi']:+.3f}] paired over {_over({**d, 'of_items': report.get('items')})}")
    if report.get("greedy_gap"):
        console.print(_bin_table(
            report, "greedy_gap", ("series", "reference"), "reference - series greedy",
            lambda k: f"{k[1]} - {k[0]} greedy", _diff,
            "the gap compute must close: the larger model's greedy accuracy minus the series' own greedy accuracy, "
            "paired over the same items [95% CI]; an interval that holds 0 leaves nothing shown to close"))
    if report["exchange"]:
        console.print(_bin_table(
            report, "exchange", ("series", "signal", "reference"), "series signal vs reference",
            lambda k: f"{k[0]} {k[1]} vs {k[2]}", _ratio,
            "exchange at equal FLOPs: FLOPs at which the series first reaches the reference's accuracy, over the "
            "reference's FLOPs [95% CI]; - = not reached within k <= N; n/a = the reference gets no item right"))
    if report["total_compute"]:
        tc = Table(title="total compute (Snell et al. 2024): pretraining + inference at R = inference/pretraining "
                         "tokens; the series' inference budget that matches the reference's total (a verifier's "
                         "rule is charged the verifier's training too, and its lineage's)")
        for col in ("series signal vs reference", "training FLOPs (series / reference)", "R", "budget FLOPs/query",
                    "x its k = 1", "series acc", "reference acc"):
            tc.add_column(col, justify="left" if col.startswith("series signal") else "right")
        for r in report["total_compute"]:
            left = r["a_budget_flops"] > 0  # else the series' pretraining alone is over the reference's total
            counted = (" (verifier's unknown)" if r.get("verifier_training_unknown")
                       else f" (+ {', '.join(r['trained'])})" if r.get("trained") else "")
            tc.add_row(f"{r['series']} {r['signal']} vs {r['reference']}",
                       f"{_f(r['pretrain_flops_a'])}{counted} / {_f(r['pretrain_flops_b'])}", f"{r['R']:g}",
                       _f(r["a_budget_flops"]) if left else "-", f"{r['multiplier']:.3g}" if left else "none left",
                       "-" if math.isnan(r["a_accuracy"]) else ("≥" if r["a_beyond_curve"] else "") + f"{r['a_accuracy']:.3f}",
                       f"{r['b_accuracy']:.3f}")
        console.print(tc)
    if report.get("overlay"):
        _print_overlay(report, console)
    if "allocation" in report:
        a = report["allocation"]
        console.print(styled("[bold]compute-optimal allocation[/]", f" of {a['series']} (bins: {a['bins_from']}; chosen "
                             f"on {_items(a['select_items'])}, reported on the other {a['report_items']}, split seed "
                             f"{a['split_seed']})"))
        at = Table()
        choice_col = "choice per bin" + (" (0 = easiest)" if a["bins_from"].startswith("predicted") else "")
        for col in ("budget FLOPs/item", "accuracy [95% CI]", "FLOPs/item", "uniform needs", "saving vs uniform [95% CI]"):
            at.add_column(col, justify="right")
        at.add_column(choice_col)
        rows = [r for i, r in enumerate(a["curve"]) if i == 0 or r["choice"] != a["curve"][i - 1]["choice"]]
        for r in rows:  # (a larger budget that buys nothing more, the same row again, is left out)
            at.add_row(_f(r["budget"]), _acc(r), _f(r["flops"]), _f(r["uniform_flops"]) if math.isfinite(r["uniform_flops"]) else "-",
                       _saving(r), " ".join(f"{k}:{v}" for k, v in r["choice"].items()))
        console.print(at)
        console.print("budget FLOPs/item: what the policy meets on the choosing half; FLOPs/item (and every other column): "
                      "the report half's, which can exceed the budget\n"
                      "uniform needs: FLOPs/item at which the uniform frontier (one rule and k for every item; its corners, "
                      f"chosen on the choosing half: {', '.join(u['choice'] for u in a['uniform']) or 'none'}) reaches the "
                      "row's accuracy on the report half; - = none of its corners does (the saving is then more than the "
                      "largest of their FLOPs over the row's)")
        b = a["baseline"]
        if a["uniform"] and (unseen := [r for r in rows if not math.isfinite(r["uniform_flops"])
                                        and b["accuracy"] >= r["accuracy"] - 1e-12]):
            # QA pass: a policy that is uniform maj@4 read "> 3.65x" while the baseline line measured maj@4 there
            console.print(f"note: {b['signal']}@{b['k']} (the baseline, a uniform configuration) reaches {len(unseen)} "
                          "row(s) marked - on the report half, though it is no corner of the frontier chosen on the "
                          f"choosing half ({a['select_items']} items): read their saving vs uniform as unknown, not as "
                          "more than shown")
        fp = a["policy_flops_to_match"]
        if b["accuracy"] == 0:  # any curve "reaches" 0% at its cheapest point (QA pass: a 3.18x saving was printed)
            console.print(f"best-of-N baseline {b['signal']}@{b['k']}: accuracy 0.000 at {_f(b['flops'])} FLOPs/item; "
                          "saving n/a: the baseline gets no item of the report half right")
        elif math.isfinite(fp):
            console.print(f"best-of-N baseline {b['signal']}@{b['k']}: accuracy {b['accuracy']:.3f} at {_f(b['flops'])} "
                          f"FLOPs/item; the compute-optimal policy matches it at {_f(fp)} FLOPs/item: "
                          f"a saving of {a['saving']:.2f}x [95% CI {_saving_ci(a)}]" + _saving_note(a["saving"]))
        else:
            console.print(f"best-of-N baseline {b['signal']}@{b['k']}: accuracy {b['accuracy']:.3f} at {_f(b['flops'])} "
                          "FLOPs/item; the compute-optimal policy does not reach it on the report half")
        gr = a.get("greedy")
        if gr and gr["items"]:
            below = " (above the baseline: a policy that only matches the baseline is worse than greedy decoding)" \
                if gr["accuracy"] > b["accuracy"] + 1e-12 else ""
            console.print(f"{a['series']} greedy on the report half: accuracy {_acc(gr)} at {_f(gr['flops'])} "
                          f"FLOPs/item{below}")
        if a.get("note"):
            console.print(f"note: {a['note']}")
