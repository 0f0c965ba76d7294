"""`ttcl eval`: accuracy against compute, per item, per difficulty bin, with 95% intervals.

Two modes share the options:

- a sweep (`--sweep n=1,4,16`): one run per configuration and series; per
  item rows, `--by FIELD` breakdowns, Wilson (one seed) or bootstrap (several)
  intervals, and paired-bootstrap differences against the first series;
- one pool (`--pool n=16`): one run per series draws N samples per item, and
  every k <= N is estimated from it (pass@k, strict pass@k, maj@k, weighted@k
  and best@k per verifier) with its FLOPs from the ledger; each series' model
  and every `--greedy` model adds a greedy point; then the exchange rate at
  equal FLOPs, Snell's total-compute accounting, and (`--allocate`) the
  compute-optimal policy chosen on half the items and scored on the other.

Runs write traces (`--traces DIR` keeps them; a rerun reuses finished items).
The analysis itself lives in `ttcl.runtime.analysis`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import typer

from ttcl.commands.compile import (
    ProgramArg,
    VerifierOpt,
    errors_as_json,
    program_input,
    rebind_models,
    refuse_input_as_output,
    register_verifiers,
    report_console,
)
from ttcl.commands.eval_checks import (
    check_allocation,
    check_pool,
    check_series,
    check_sweep,
    parse_pool,
    read_sweep,
)
from ttcl.commands.eval_report import pool_report, print_pool, print_sweep, sweep_report
from ttcl.commands.interrupts import exit_code
from ttcl.commands.paths import named_path
from ttcl.commands.run import (
    DATASET_HELP,
    DEVICES,
    DTYPES,
    FIELD_HELP,
    JudgeOpt,
    RunOptionError,
    _check_choice,
    _judged_by,
    _load_items,
    _run_once,
    check_by,
    check_judge,
    dataset_path,
    parse_sweep,
)
from ttcl.commands.wide import RAY_HELP, SHARDS_HELP, Wide
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.dataset import items_digest
from ttcl.safeio import make_parents, where_written


def parse_compare(items: list[str]) -> list[tuple[str, list[str]]]:
    """`["policy=ttcl:arith-l"]` -> series label (the model's short name) and the --model overrides it adds."""
    out = []
    for item in items:
        binds = [b.strip() for b in item.split(",") if b.strip()]
        if not binds or any("=" not in b or not b.split("=", 1)[1] for b in binds):
            raise RunOptionError(f"--compare {item!r}: expected NAME=MODEL[,NAME=MODEL], e.g. --compare policy=ttcl:arith-l")
        out.append((", ".join(short_name(b.split("=", 1)[1]) for b in binds), binds))
    return out


def short_name(ref: str) -> str:
    """A series' label: a model's name, for a server ref the model it serves (`?model=` or `local=`), else its host."""
    from ttcl.compiler.endpoints import is_endpoint, parse_endpoint

    if is_endpoint(ref):
        ep = parse_endpoint(ref)
        named = ep.model or ep.local
        return short_name(named) if named else ep.base_url.split("://", 1)[-1]
    return ref.removeprefix("ttcl:").rstrip("/").rsplit("/", 1)[-1]


def parse_seeds(seeds: str | None, seed: int) -> list[int]:
    if seeds is None:
        return [seed]
    try:
        out = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        out = []
    if not out or len(set(out)) != len(out):
        raise RunOptionError(f"--seeds {seeds!r}: expected distinct integers, e.g. --seeds 0,1,2")
    return out


def parse_ks(ks: str | None, n: int) -> list[int] | None:
    from ttcl.runtime.analysis.pool import default_ks

    if ks is None:
        return default_ks(n)
    if ks == "all":
        return list(range(1, n + 1))
    try:
        out = sorted({int(k) for k in ks.split(",") if k.strip()})
    except ValueError:
        out = []
    if not out or out[0] < 1 or out[-1] > n:
        example = ",".join(str(k) for k in (default_ks(n) or [1]))
        raise RunOptionError(f"--ks {ks!r}: expected `all` or k values in 1..{n} (the pool's size), e.g. --ks {example}")
    return out


def parse_pretrain(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        try:
            flops = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise RunOptionError(f"--pretrain-flops {item!r}: expected MODEL=FLOPS, e.g. --pretrain-flops ttcl:arith-s=3.7e12")
        if not (math.isfinite(flops) and flops > 0):
            raise RunOptionError(f"--pretrain-flops {item!r}: a model's training FLOPs are a positive number, "
                                 "e.g. --pretrain-flops ttcl:arith-s=3.7e12")
        out[short_name(name.strip())] = flops
    return out


def parse_allocate(spec: str | None, by: str | None) -> tuple[str, int, str | None] | None:
    """`field`, `probe[:M]`, `probe:M:VERIFIER`, `keep[:M]` or `keep:M:VERIFIER` -> (kind, M, verifier or None)."""
    if spec is None:
        return None
    m = re.fullmatch(r"(field|probe|keep)(?::(\d+))?(?::([A-Za-z_]\w*))?", spec)
    if m is None or (m.group(1) == "field" and (m.group(2) or m.group(3))) or (m.group(3) and not m.group(2)):
        raise RunOptionError(f"--allocate {spec!r}: expected `field` (bins from --by, oracle), `probe[:M]` "
                             "(bins from the agreement of the first M pool samples, charged) or `probe:M:VERIFIER` "
                             "(bins from their mean VERIFIER score, samples and verifier passes charged); `keep` "
                             "instead of `probe` keeps the M samples in every configuration (k >= M)")
    if m.group(1) == "field" and by is None:
        raise RunOptionError("--allocate field needs --by FIELD (the dataset field that bins the items)")
    probe = int(m.group(2) or 4)
    if m.group(1) != "field" and probe < 1:
        raise RunOptionError(f"--allocate {spec!r}: the probe needs M >= 1 samples")
    return m.group(1), probe, m.group(3)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "run"


class Runs:
    """Runs one configuration of one series per seed, each with a trace in `root` (reused when finished)."""

    def __init__(self, program: Path, dataset: Path, items: list[Any], root: Path, *, device: str, dtype: str,
                 quiet: bool, batch_items: int | None = None, wide: Wide | None = None,
                 allow_remote: list[str] | None = None, judge: str | None = None, kept: bool = True) -> None:
        self.program, self.dataset, self.items, self.root = program, dataset, items, root
        self.judge = judge
        self.device, self.dtype, self.quiet = device, dtype, quiet
        self.batch_items, self.wide, self.allow_remote = batch_items, wide, allow_remote
        self.kept = kept  # the traces outlive the command (--traces DIR)
        self.finished = 0  # runs this command finished (or found finished)

    @cached_property
    def data_key(self) -> str:
        """The dataset's content, as a run's trace header names it (the whole file: `--limit` reuses a longer run)."""
        from ttcl.runtime.dataset import dataset_digest

        return dataset_digest(self.dataset, self.items)

    def interrupted(self, trace: Path | None = None) -> str:
        """What Ctrl-C kept: the finished runs' traces, and the stopped run's finished items (counted, QA pass:
        the line said neither how many), where --traces names a directory (a rerun continues from them); nothing
        without it (the traces were in a temporary one)."""
        if not self.kept:
            return "interrupted: nothing was saved (no --traces DIR; with it, a rerun continues where this one stopped)"
        items = 0
        if trace is not None and trace.exists():
            from ttcl.runtime.trace import read_trace

            try:
                items = len(read_trace(trace).items)
            except Exception:  # a trace cut mid-line is read by the rerun; the count is only said here
                items = 0
        return (f"interrupted: {self.finished} finished run{'' if self.finished == 1 else 's'} and the {items} "
                f"finished item{'' if items == 1 else 's'} of the one stopped are kept in {self.root}; rerun the same "
                "command to continue from them")

    def run(self, label: str, sets: list[str], binds: list[str], seed: int, tag: str) -> tuple[Any, Path]:
        import hashlib

        from ttcl.runtime.trace import TraceError, has_run

        # the program's file name is part of the key: two programs with the same series, params and seed
        # (beam search guided by two verifiers, say) keep a trace each in one --traces directory; so is the
        # dataset's content: one directory holds the runs of several datasets (another one overwrote them)
        key = hashlib.blake2b("\x00".join([self.program.name, "|", *sets, "|", *binds, "|", self.data_key]).encode(),
                              digest_size=4).hexdigest()
        trace = self.root / f"{slug(label)}__{slug(tag)}__{key}__seed{seed}.jsonl"  # one file per distinct run
        kw: dict[str, Any] = dict(seed=seed, device=self.device, dtype=self.dtype, trace=trace, dataset=self.dataset,
                                  show_progress=not self.quiet, label=f"{label}: {tag} (seed {seed})", judge=self.judge,
                                  batch_items=self.batch_items, wide=self.wide, allow_remote=self.allow_remote)
        # a finished trace of the same run is reused, a killed one continued, and its failed items (a server that
        # was down) run again; a wide run (--ray) cannot replay single steps, so keeps them
        again = has_run(trace)  # an empty file (killed as it was made) is begun afresh (QA pass: every rerun failed)
        try:
            try:
                summary = _run_once(self.program, sets, binds, self.items, resume=again, stop_after=True,
                                    retry_failed=again and (self.wide is None or self.wide.address is None), **kw)
            except TraceError as e:
                if e.changed is None:
                    raise
                typer.echo(f"{trace}: the {e.changed} changed since this trace was written; running afresh", err=True)
                summary = _run_once(self.program, sets, binds, self.items, resume=False, overwrite=True,
                                    stop_after=True, **kw)
        except KeyboardInterrupt as e:
            typer.echo(self.interrupted(trace), err=True)
            raise typer.Exit(exit_code(e)) from None
        self.finished += 1
        from ttcl.runtime.judge import failure_line, judge_failures

        failed = judge_failures(summary.results)
        if failed:  # those items are ungraded: left out of every accuracy, never counted wrong
            typer.echo(f"{label}: {tag} (seed {seed}): {failure_line(self.judge or 'gold', failed, summary.items)}",
                       err=True)
        broken = [r for r in summary.results if r["status"] == "failed"]
        if broken:  # QA pass: a server that died mid-eval left 9 of 24 items failed, counted wrong without a word
            first = broken[0]
            again = ("run the same command again to rerun them (their traces are kept in --traces)" if self.kept
                     else "with --traces DIR, running the same command again reruns only them")
            typer.echo(f"{label}: {tag} (seed {seed}): {len(broken)} of {summary.items} items failed (first: item "
                       f"{first['item']}: {first.get('error') or 'failed'}); they count as wrong; {again}", err=True)
        return summary, trace


def policy_label(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None = None) -> str:
    """The short names of the models the program samples from (after overrides)."""
    from ttcl.commands.compile import compile_from_cli

    dag = compile_from_cli(program, sets, binds, None, allow_remote).dag
    return ", ".join(short_name(r) for r in sampled_refs(dag)) or program.stem


def sampled_refs(dag: Any) -> list[str]:
    """The refs of the models a program generates with, in order, once each."""
    return list(dict.fromkeys(n.args.model.ref for n in dag if n.op in ("sample", "extend", "revise") and n.args.model))


def unique_labels(program: Path, sets: list[str], binds: list[str], allow_remote: list[str] | None,
                  series: list[tuple[str, list[str]]], greedy: list[tuple[str, list[str]]]
                  ) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    """Series are named after their models' short names; two that share one (a server and its local twin, two
    copies of a model) get the refs they sample from, in full: under one name the second replaced the first
    without a word (QA pass). A --greedy series of the same refs as a pool series is the same greedy point."""
    from ttcl.commands.compile import compile_from_cli

    def refs(extra: list[str]) -> str:
        dag = compile_from_cli(program, sets, rebind_models(binds, extra), None, allow_remote).dag
        return ", ".join(sampled_refs(dag)) or program.stem

    every = [(label, extra, refs(extra)) for label, extra in series + greedy]
    taken: dict[str, set[str]] = {}
    for label, _, r in every:
        taken.setdefault(label, set()).add(r)
    named = [(f"{label} ({r})" if len(taken[label]) > 1 else label, extra) for label, extra, r in every]
    return named[:len(series)], named[len(series):]


def eval_(
    program: ProgramArg,
    dataset: Annotated[Path, typer.Option("--dataset", help=DATASET_HELP, parser=dataset_path)],
    field: Annotated[list[str] | None, typer.Option("--field", help=FIELD_HELP)] = None,
    verifier: VerifierOpt = None,
    judge: JudgeOpt = None,
    sweep: Annotated[list[str] | None, typer.Option("--sweep", help="A param and its values: --sweep n=1,4,16 (repeatable).")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="One pool per item: --pool n=16 sets param n to 16 and estimates every k <= 16 from it.")] = None,
    ks: Annotated[str | None, typer.Option("--ks", help="With --pool: the k values (1,2,4,... by default; `all`).")] = None,
    compare: Annotated[list[str] | None, typer.Option("--compare", help="Another series with other models: --compare policy=ttcl:arith-l.")] = None,
    greedy: Annotated[list[str] | None, typer.Option("--greedy", help="With --pool: a greedy point for another model: --greedy policy=ttcl:arith-m.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Break results down by a dataset field, e.g. --by steps.")] = None,
    allocate: Annotated[str | None, typer.Option("--allocate", help="With --pool: compute-optimal allocation over bins from `field` (--by) or `probe[:M[:VERIFIER]]` (the first M samples' answer agreement, or their mean VERIFIER score, charged on top; M is 4 when not given); `keep[:M[:VERIFIER]]` bins the same way and keeps those M samples in every configuration (k >= M).")] = None,
    baseline: Annotated[str, typer.Option("--baseline", help="With --allocate: the best-of-N signal to match (e.g. orm_w, maj).")] = "maj",
    pretrain_flops: Annotated[list[str] | None, typer.Option("--pretrain-flops", help="Override a model's pretraining FLOPs: MODEL=FLOPS.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Bind a model for every series: --model policy=PATH.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a param in every configuration.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The run seed (see --seeds).")] = 0,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Repeat every run over these seeds: --seeds 0,1,2.")] = None,
    split_seed: Annotated[int, typer.Option("--split-seed", help="With --allocate: the seed of the select/report split.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N dataset items.")] = None,
    traces: Annotated[Path | None, typer.Option("--traces", help="Keep every run's trace in this directory (reused on rerun).", parser=named_path)] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write accuracy against FLOPs per item (log x), a panel per bin, as a PNG.", parser=named_path)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything (per-item rows included) as JSON.")] = False,
    overlay: Annotated[list[Path] | None, typer.Option("--overlay", help="With --pool: put the rows of a sweep's --json output (same dataset) on the same plane, read at equal FLOPs.", parser=named_path)] = None,
    allow_remote: Annotated[list[str] | None, typer.Option("--allow-remote", help="A host the program's own endpoints may name (repeatable).")] = None,
    batch_items: Annotated[int | None, typer.Option("--batch-items", help="Items in flight at once per process (default: all).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP, metavar="[ADDRESS]")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Ray worker actors (default 2).")] = None,
    shards: Annotated[int | None, typer.Option("--shards", help=SHARDS_HELP)] = None,
) -> None:
    """Accuracy against compute: sweeps or one-pool estimators, per difficulty bin, with intervals."""
    # before any run, an error (a bad option, a program that does not compile) is the JSON `ttcl run --json` and
    # `ttcl check --json` print, with --json (QA pass: stdout was empty, and a script's json.load failed)
    with errors_as_json(as_json):
        sweep, compare, model, set_ = sweep or [], compare or [], model or [], set_ or []
        _check_choice("--device", device, DEVICES)
        _check_choice("--dtype", dtype, DTYPES)
        seed_list = parse_seeds(seeds, seed)
        traces = None if traces is None else where_written(traces)  # `nd/../tr` reached no trace of tr (QA pass)
        if traces is not None and str(traces) == "-":  # a folder named `-` was made (QA pass)
            raise RunOptionError("--traces -: the traces are kept in a folder; give its path, e.g. --traces runs/")
        if traces is not None and traces.exists() and not traces.is_dir():  # said "cannot create ...: File exists",
            raise RunOptionError(f"--traces {traces}: not a folder; --traces names a folder that keeps one trace per "  # late
                                 "run, e.g. --traces runs/")
        if split_seed < 0:  # numpy's generators take non-negative seeds only
            raise RunOptionError(f"--split-seed {split_seed}: expected a non-negative integer (0 or more), "
                                 "e.g. --split-seed 0")
        if pool is not None and sweep:
            raise RunOptionError("give --sweep or --pool, not both (a pool already covers every k <= N)")
        for opt, val in (("--greedy", greedy), ("--allocate", allocate), ("--ks", ks), ("--overlay", overlay)):
            if val and pool is None:
                raise RunOptionError(f"{opt} needs --pool PARAM=N")
        if batch_items is not None and batch_items < 1:
            raise RunOptionError(f"--batch-items {batch_items}: expected a positive number of items")
        wide = Wide(ray, workers, shards)
        wide.check_device(device)
        alloc = parse_allocate(allocate, by)
        if alloc is not None and alloc[0] != "field" and len(seed_list) > 1:
            # one run's probe bins an item and (keep) is kept; another seed's pool has its own probe, whose bins
            # the allocation does not model, so several seeds would mix runs under one run's bins
            raise RunOptionError(f"--allocate {allocate}: a probe bins each item from one run's first samples; give one "
                                 f"seed (--seed S), not --seeds {seeds} (--allocate field works with several)")
        pretrain = parse_pretrain(pretrain_flops or [])
        greedy_series = parse_compare(greedy or [])
        compare_series = parse_compare(compare)
        register_verifiers(verifier or [])
        plot = plot_destination(plot) if plot is not None else None  # an unwritable figure is refused before any run
        refuse_input_as_output(plot, "--plot", {"dataset": dataset, "program": program_input(program)})
        items = _load_items(None, dataset, limit, field)
        check_judge(judge, items, dataset)
        ungraded = next((it for it in items if it.gold is None), None) if judge in (None, "gold") else None
        if ungraded is not None:  # scored as wrong, it would pull every accuracy towards 0 without a word
            raise RunOptionError(f"{ungraded.where(dataset)}: error: the item has no \"answer\", and ttcl eval judges every item "
                                 "by its gold answer: add one (`--field answer=NAME` names another field), or judge by "
                                 "a task's exact checker with --judge TASK")
        if by is not None:
            check_by(items, by, dataset)
        base = [(policy_label(program, set_, model, allow_remote), [])]
        check_series(program, set_, model, allow_remote, [("--compare", c) for c in compare_series]
                     + [("--greedy", g) for g in greedy_series])
        check_sweep(program, set_, model, allow_remote, parse_sweep(sweep))
        series = base + [(label, binds) for label, binds in compare_series]
        series, greedy_series = unique_labels(program, set_, model, allow_remote, series, greedy_series)
        models = list(dict.fromkeys(label for label, _ in series + greedy_series))
        unknown = next((m for m in pretrain if m not in models), None) if pool is not None else next(iter(pretrain), None)
        if unknown is not None:  # it was ignored without a word, and a --sweep has no table that reads it
            raise RunOptionError("--pretrain-flops: " + (
                f"{unknown} is not a model of this eval (its models: {', '.join(models)})" if pool is not None
                else "only a --pool report's total-compute table reads pretraining FLOPs; a --sweep has none"))
        if pool is not None:
            check_pool(program, set_, model, allow_remote, pool)
        if alloc is not None and pool is not None:
            if len(items) < 2:
                raise RunOptionError(f"--allocate needs at least 2 items (half to choose the policy on, half to report it "
                                     f"on); {dataset} gives {len(items)}")
            check_allocation(program, set_, model, allow_remote, alloc, baseline, parse_pool(pool)[1])
        # the rest of what can be refused before any run, inside the --json cover too (review: a bad --ks,
        # --overlay or --traces printed nothing on stdout)
        ks_list = parse_ks(ks, parse_pool(pool)[1]) if pool is not None else None
        sweeps = [read_sweep(p, items, judge or "gold") for p in overlay or []]  # a bad file fails now
        if traces is not None:
            try:
                traces.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TtclRuntimeError(f"{traces}: error: cannot create the traces directory: {e.strerror}") from e
    with tempfile.TemporaryDirectory(prefix="ttcl-eval-") as tmp, wide:
        root = traces if traces is not None else Path(tmp)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TtclRuntimeError(f"{root}: error: cannot create the traces directory: {e.strerror}") from e
        # progress goes to stderr, so `--json` keeps it: stdout is the report alone, as with `ttcl run --json`
        runs = Runs(program, dataset, items, root, device=device, dtype=dtype, quiet=False,
                    batch_items=batch_items, wide=wide, allow_remote=allow_remote, judge=judge, kept=traces is not None)
        title = (f"{program.name} on {dataset.name} ({len(items)} items, seed{'s' * (len(seed_list) > 1)} {','.join(map(str, seed_list))}; "
                 f"judged by {_judged_by(judge or 'gold')})")
        if pool is None:
            report = sweep_report(runs, series, parse_sweep(sweep), set_, model, seed_list, by)
            report.update(program=str(program), dataset=str(dataset), title=title, judge=judge or "gold",
                          items_digest=items_digest(items))
            _emit(report, as_json, plot, print_sweep, lambda: _plot_sweep(report, plot, by, title))
            return
        param, n = parse_pool(pool)
        for path, sw in zip(overlay or [], sweeps, strict=True):
            if by is not None and sw.get("by") != by:  # its rows hold that field's bins only, or none
                how = f"with --by {sw['by']}" if sw.get("by") else "without --by"
                typer.echo(f"--overlay {path}: that sweep was run {how}, so only its `all` rows are overlaid; "
                           f"rerun it with --by {by} for the per-bin panels", err=True)
        report = pool_report(runs, program, series, greedy_series, set_, model, seed_list, by, param=param, n=n,
                             ks=ks_list, alloc=alloc, baseline=baseline, pretrain=pretrain,
                             split_seed=split_seed, overlays=sweeps)
        report.update(program=str(program), dataset=str(dataset), title=title, judge=judge or "gold",
                      items_digest=items_digest(items))

        def draw() -> None:
            from ttcl.runtime.analysis.plot import write_figure

            points = report["greedy"] + [o for o in report.get("overlay", []) if o["signal"] is None]
            _write(lambda: write_figure(plot, curves=report["curves"], points=points, bins=report["bins"],
                                        by=by, title=title, allocation=report.get("allocation")), plot)

        _emit(report, as_json, plot, print_pool, draw)


def plot_destination(plot: Path) -> Path:
    """The file `--plot` will write, checked before any run: a name without an image suffix gets `.png` (as the
    figure library would add it, so the path printed is the path written); a folder, a path through a file, or one
    ttcl cannot write in is refused (exit 2) instead of failing after the whole eval; missing folders are made."""
    from matplotlib.backend_bases import FigureCanvasBase

    if plot.is_dir():
        raise RunOptionError(f"--plot {plot}: is a directory; give a file name, e.g. --plot {plot / 'plot.png'}")
    if plot.suffix[1:].lower() not in FigureCanvasBase.get_supported_filetypes():
        plot = plot.with_name(plot.name + ".png")
        if plot.is_dir():
            raise RunOptionError(f"--plot {plot}: is a directory; give a file name")
    parent = plot.parent
    if not parent.is_dir():  # made now, as --trace's and `graph -o`'s folders are
        try:
            make_parents(plot)
        except OSError as e:
            raise RunOptionError(f"--plot {plot}: {e.strerror or e}; choose another path") from None
    if not os.access(parent, os.W_OK | os.X_OK) or (plot.exists() and not os.access(plot, os.W_OK)):
        raise RunOptionError(f"--plot {plot}: cannot write there (permission denied); choose another path")
    return plot


def _write(fn: Any, path: Path) -> None:
    try:
        fn()
    except OSError as e:
        raise TtclRuntimeError(f"{path}: error: cannot write the plot: {e.strerror or e}") from e


def _plot_sweep(report: dict[str, Any], plot: Path, by: str | None, title: str) -> None:
    from ttcl.runtime.analysis.plot import write_figure

    curves = []
    for r in report["rows"]:
        config = ", ".join(f"{k}={v}" for k, v in r["config"].items())
        for b in r["bins"]:
            curves.append({**b, "series": r["series"], "signal": "", "config": config, "degraded": r.get("degraded", 0)})
    _write(lambda: write_figure(plot, curves=curves, points=[], bins=report["bins"], by=by, title=title), plot)


def _emit(report: dict[str, Any], as_json: bool, plot: Path | None, printer: Any, draw: Any) -> None:
    """Print the report, then draw the figure (`draw`, when there is a --plot): what was measured is out
    before anything can go wrong with the figure."""
    if as_json:  # the figure's path, `.png` added or not, for a script (QA pass: named nowhere under --json)
        typer.echo(json.dumps(_finite(report | ({"plot": str(plot)} if plot is not None else {})), indent=1,
                              default=_json_default))
    else:
        console = report_console()
        printer(report, console)
    if plot is None:
        return
    draw()
    if as_json:
        typer.echo(f"plot: {plot}", err=True)
    else:
        console.print(f"plot: {plot}")


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: they print as null (an interval that does not exist, a target never reached)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _json_default(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)


__all__ = ["register", "parse_compare", "parse_seeds", "parse_pool"]
