"""`ttcl run`: run a strategy on real models, with its cost counted and capped.

`ttcl run` prints the answer (one input) or the accuracy (a dataset), then
one row per spending node, the same rows as `ttcl check`, with the actual
spend beside the static bound, and the totals against the budget.
`ttcl eval` (ttcl/commands/eval.py) reuses the run helpers here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ttcl.commands.compile import (
    MAX_ROWS,
    MaxInputOpt,
    ProgramArg,
    VerifierOpt,
    errors_as_json,
    program_input,
    refuse_input_as_output,
    register_verifiers,
    report_console,
    styled,
)
from ttcl.commands.interrupts import (
    exit_code,
    finish_the_items_in_flight,
    stop_after_the_running_step,
)
from ttcl.commands.paths import named_path
from ttcl.commands.run_interrupted import interrupted_message, shard_failed_message, stamp
from ttcl.commands.wide import (
    RAY_HELP,
    SHARDS_HELP,
    Wide,
    check_trace_before_the_cluster,
    show_workers,
)
from ttcl.errors import TtclSemanticError
from ttcl.runtime.backends.endpoint_http import unseeded
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.ray_cluster import DistributedError, ShardFailedError
from ttcl.runtime.trace import has_run
from ttcl.safeio import is_dir, is_file, where_written

DEVICES = ("auto", "cpu", "cuda")
# `ttcl run --strict`: the run finished, but some item failed or was stopped (CI should fail).
EXIT_ITEMS_NOT_OK = 3
_SAID_UNSEEDED: set[str] = set()  # servers whose ignored seeds this process has noted
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")  # the short names: as the backend takes them


class RunOptionError(TtclSemanticError):
    """A malformed `ttcl run` / `ttcl eval` option (exit 2)."""


def _num(x: float) -> str:
    """Counts with thousands separators; a huge (`calls <= 1e30`) or infinite one compactly, as `ttcl check`."""
    if not math.isfinite(x) or abs(x) >= 1e15:
        return f"{x:.3e}"
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:,.1f}"


def _flops(x: float) -> str:
    return "0" if x == 0 else f"{x:.3e}"


def _fmt(unit: str, x: float) -> str:
    if unit == "seconds" and abs(x) < 1e15:
        return f"{x:.2f}"
    return _flops(x) if unit == "flops" else _num(x)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed and not (name == "--device" and value.startswith("cuda:")):
        raise RunOptionError(f"{name} {value!r}: expected one of {', '.join(allowed)}")


DATASET_HELP = ("A dataset: FILE.jsonl (question/answer per line), - (JSONL on stdin), or from local disk a "
                "Hugging Face dataset DIR (save_to_disk), FILE.parquet, FILE.arrow, hf:NAME[:SPLIT] (the local cache).")
def dataset_path(text: str) -> Path:
    """`--dataset`'s value: `""` is refused (as a Path it reads as `.`, the current folder)."""
    if not text.strip():
        raise typer.BadParameter("an empty path; give FILE.jsonl, - (stdin), a dataset folder or hf:NAME")
    return Path(text)


JUDGE_HELP = ("How an answer is judged right: `gold` (the default: equal to the dataset's gold answer) or a "
              "registered checker, --judge countdown (its outcome on the answer; for tasks with several right "
              "answers; items without gold are judged too). Your own: --verifier NAME=module:function --judge NAME.")
JudgeOpt = Annotated[str | None, typer.Option("--judge", help=JUDGE_HELP)]
FIELD_HELP = "Map an item field to the dataset's: --field question=problem --field answer=solution (repeatable)."


def _load_items(input_: str | None, dataset: Path | None, limit: int | None, fields: list[str] | None = None) -> list[Any]:
    from ttcl.runtime.dataset import load_dataset, parse_fields, single_item

    if limit is not None and limit < 1:
        raise RunOptionError(f"--limit {limit}: expected a positive number of items")
    if (input_ is None) == (dataset is None):
        raise RunOptionError("give exactly one of --input TEXT or --dataset FILE.jsonl")
    if input_ is not None:  # QA pass: --limit and --field beside --input were accepted and did nothing
        for opt, given in (("--limit", limit is not None), ("--field", bool(fields))):
            if given:
                raise RunOptionError(f"{opt} applies to a --dataset; --input runs one item as it is")
        return single_item(input_)
    assert dataset is not None
    return load_dataset(dataset, limit=limit, fields=parse_fields(fields or []), on_note=lambda m: typer.echo(m, err=True))


class _Progress(NodeHook):
    """Progress on stderr that moves as work finishes: node steps of all items, and items done.

    With every item in flight the items finish together at the end, so the
    bar counts each node of each item as it finishes (run, skipped, refused);
    the items column counts finished items.
    """

    wants_io = False

    def __init__(self, total: int, label: str, done: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.items, self.done = total, done
        self.started = False
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[items]}"),
            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        from rich.markup import escape

        # a label is text, not markup: a model's path may hold brackets (`[/x]` was an internal error)
        self.task = self.progress.add_task(escape(label), total=None, items=self._items_text())

    def items_done(self, n: int) -> None:
        """A wide run's finished items (the items column)."""
        self._start()
        self.done = n
        self.progress.update(self.task, items=self._items_text())

    def steps_done(self, done: int, total: int) -> None:
        """A wide run's node steps, of all its items, in flight ones included (the bar)."""
        self._start()
        self.progress.update(self.task, total=total, completed=done)

    def _items_text(self) -> str:
        return f"{self.done}/{self.items} items"

    def __enter__(self) -> _Progress:
        return self  # the bar starts with the run's first step: a run refused before it (a trace that cannot be
        # resumed) draws no bar above its error

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self.progress.start()

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def before_run(self, *, items: int, nodes: int = 0, replayed: int = 0, **future: Any) -> None:
        self._start()
        total = (items + self.done) * max(1, nodes)
        self.progress.update(self.task, total=total, completed=self.done * max(1, nodes) + replayed)

    def after_node(self, **_: Any) -> None:
        self.progress.advance(self.task)

    def skip_node(self, **_: Any) -> None:
        self.progress.advance(self.task)

    def after_item(self, **_: Any) -> None:
        self.done += 1
        self.progress.update(self.task, items=self._items_text())


def _compile(program: Path, sets: list[str], models: list[str], max_input_tokens: int | None,
             allow_remote: list[str] | None, as_json: bool) -> Any:
    """The program as the command line binds it; with --json its errors are printed as JSON diagnostics."""
    from ttcl.commands.compile import compile_from_cli

    with errors_as_json(as_json):
        return compile_from_cli(program, sets, models, max_input_tokens, allow_remote)


def _run_once(
    program: Path, sets: list[str], models: list[str], items: list[Any], *, seed: int, device: str, dtype: str,
    trace: Path | None, resume: bool, dataset: Path | None, show_progress: bool, label: str = "items",
    batch_items: int | None = None, overwrite: bool = False, json_errors: bool = False,
    allow_remote: list[str] | None = None, wide: Wide | None = None, schedule: str = "auto",
    judge: str | None = None, max_input_tokens: int | None = None, retry_failed: bool | None = None,
    stop_after: bool = False, compiled: Any = None,
) -> Any:
    """`retry_failed`: `ttcl run --retry-failed` (None: a command without that option, which prints no note).
    `stop_after`: a Ctrl-C during the run's last step still interrupts, after it (`ttcl eval`, whose next
    configuration must not start), instead of returning the finished run. `compiled`: the program, already
    compiled (`ttcl run --ray` compiles it before its cluster starts)."""
    from ttcl.runtime.runner import Runner, RunOptions

    if compiled is None:
        compiled = _compile(program, sets, models, max_input_tokens, allow_remote, json_errors)
    opts = RunOptions(seed=seed, device=device, dtype=dtype, trace=trace, resume=resume, dataset=dataset,
                      max_batch_items=batch_items, overwrite=overwrite, schedule=schedule, judge=judge,
                      retry_failed=bool(retry_failed))
    if wide is not None and wide.address is not None:
        from ttcl.runtime.distributed import RayRunner

        ray_runner = RayRunner(compiled, opts, workers=wide.workers, shards=wide.shards)
        # Ray prints cluster events (a worker died) on stdout: they go to stderr, stdout stays the result.
        with contextlib.redirect_stdout(sys.stderr), finish_the_items_in_flight() as stop:
            if not show_progress:
                summary = ray_runner.run(items, on_workers=show_workers, should_stop=stop,
                                         on_note=lambda line: typer.echo(line, err=True))
            else:
                with _Progress(len(items), label) as bar:
                    summary = ray_runner.run(items, on_workers=show_workers, progress=bar.items_done,
                                             on_steps=bar.steps_done, should_stop=stop, on_note=lambda line: (
                                                 bar.progress.console.print(line, markup=False, highlight=False,
                                                                            soft_wrap=True)))
        if stop_after and stop.requested:
            raise KeyboardInterrupt
        if stop.requested:  # the run returned: every item had started before the Ctrl-C (QA pass: said nothing)
            typer.echo("Ctrl-C: every item had started, so the run finished them (a wide run keeps whole items)",
                       err=True)
        return summary
    runner = Runner(compiled, opts)
    for url, why in unseeded(runner.backends).items():  # once a process: an eval's runs share the servers
        if url not in _SAID_UNSEEDED:
            _SAID_UNSEEDED.add(url)
            typer.echo(f"note: {why}", err=True)
    with stop_after_the_running_step(resumable=runner.split != "need") as stop:
        if not show_progress:
            note = None if retry_failed is None else (lambda line: typer.echo(line, err=True))
            summary = runner.run(items, should_stop=stop, on_note=note)
        else:
            summary = _run_with_progress(runner, items, label, resume=resume, trace=trace, stop=stop,
                                         retry_failed=retry_failed)
    if stop_after and stop.requested:
        raise KeyboardInterrupt
    return summary


def _run_with_progress(runner: Any, items: list[Any], label: str, *, resume: bool, trace: Path | None,
                       stop: Any, retry_failed: bool | None = None) -> Any:
    done = 0
    if resume and trace is not None and has_run(trace):
        from ttcl.runtime.trace import read_trace

        wanted = {it.index for it in items}
        done = len([i for i, r in read_trace(trace).items.items()
                    if i in wanted and not (retry_failed and r.status == "failed")])
    with _Progress(len(items), label, done=done) as bar:
        note = None if retry_failed is None else (
            lambda line: bar.progress.console.print(line, markup=False, highlight=False, soft_wrap=True))
        return runner.run(items, progress=bar, should_stop=stop, on_note=note)


def check_judge(judge: str | None, items: list[Any] | None = None, dataset: Path | None = None) -> None:
    """`--judge NAME`: refuse an unknown checker before any model loads (exit 2, naming the known ones), and one
    that reads none of the items' questions (QA pass: found after all the sampling, and a sweep exited 0)."""
    from ttcl.runtime.judge import make_judge, shown

    j = make_judge(judge)
    reads = getattr(j.checker, "reads", None)
    if items and reads is not None and not any(reads(it.question) for it in items):
        it = items[0]
        where = it.where(dataset) if dataset is not None and it.line else "--input"
        raise RunOptionError(f"--judge {judge}: no question of {dataset or '--input'} is one the `{judge}` checker "
                             f"reads (first: {where}, {shown(it.question)!r}); judge by the gold answer (leave --judge out) or by "
                             "the dataset's own task")


def print_summary(summary: Any, console: Console, *, single: bool) -> None:
    judge = summary.header.get("judge", "gold")
    if single:
        r = summary.results[0]
        console.print(styled("[bold]answer:[/] ", r["answer"] if r["answer"] is not None else "(none)"))
        if r["correct"] is not None:
            console.print(f"judged {'right' if r['correct'] else 'wrong'} by {_judged_by(judge)}")
        if r["status"] != "ok" or r["failures"]:
            console.print(f"status: {r['status']}" + (f" ({r['error']})" if r["error"] else ""))
            for node, why in r["failures"].items():
                console.print(f"  {node}: {why}")
        if r.get("degraded"):
            console.print(styled("[yellow]degraded[/]", f" by on_exhaust = {summary.on_exhaust}:"), highlight=False)
            for line in r["degraded"]:
                console.print(f"  {line}", highlight=False)
    else:
        acc = _accuracy(summary)
        console.print(styled("[bold]accuracy:[/]", f" {acc} judged by {_judged_by(judge)}   items {summary.items}, answered "
                             f"{summary.answered}, stopped {summary.stopped}, failed {summary.failed}"))
        bad = [r for r in summary.results if r["status"] != "ok"]
        for r in bad[:5]:
            console.print(f"  item {r['item']}: {r['status']}: {r['error'] or '; '.join(r['failures'].values())}")
        if len(bad) > 5:
            console.print(f"  ... {len(bad) - 5} more (see --trace / --json)")
        degraded = [r for r in summary.results if r.get("degraded")]
        if degraded:
            console.print(styled("[yellow]degraded[/]", f": {len(degraded)} of {summary.items} items ran a smaller "
                                 f"strategy than the program's (on_exhaust = {summary.on_exhaust}):"), highlight=False)
            for r in degraded[:3]:
                console.print(f"  item {r['item']}: " + "; ".join(r["degraded"]), highlight=False)
            if len(degraded) > 3:
                console.print(f"  ... {len(degraded) - 3} more (each result's `degraded` in --json / --trace)")
    if summary.verdict == "over":
        n = summary.degraded
        kept = ("no item needed it" if not n else
                f"it kept the spend within the budget by degrading {n} of {summary.items} items (above)")
        console.print(f"note: the static worst case is over budget; on_exhaust = {summary.on_exhaust}: {kept}")
    what = "actual" if single else "actual (max per item)"
    table = Table(title=f"{summary.program}: cost per node, {what} / bound")
    units = ("calls", "prompt_tokens", "gen_tokens", "flops")
    for col, justify in (("line", "right"), ("node", "left"), ("op", "left"), *((u, "right") for u in units),
                         ("ran", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in summary.rows[:MAX_ROWS]:  # the check's cap: --json and the trace keep every node
        cells = [f"{_fmt(u, row.actual_max[u])} / {_fmt(u, row.bound[u])}" for u in units]
        ran = f"{row.ran}/{summary.items}" + (f" ({row.shrunk} shrunk)" if row.shrunk else "") + (
            f" ({row.refused} refused)" if row.refused else "") + (f" ({row.reused} scores reused)" if row.reused else "")
        line = str(row.line) if row.file in ("", summary.program) else f"{Path(row.file).name}:{row.line}"
        table.add_row(line, row.node, row.op, *cells, ran)
    if len(summary.rows) > MAX_ROWS:
        table.add_row("", f"... {len(summary.rows) - MAX_ROWS:,} more nodes (--json lists them all)", "", "", "", "",
                      "", "")
    table.add_section()
    table.add_row("", "total per item", "", *(f"{_fmt(u, summary.actual_max[u])} / {_fmt(u, summary.bound_total[u])}"
                                              for u in units), "", style="bold")
    if not single:
        table.add_row("", "mean per item", "", *(_fmt(u, summary.actual_mean[u]) for u in units), "")
    console.print(table)
    # what the pool was charged beyond the items' costs: a wide run's attempts lost with their workers (or a Ctrl-C),
    # this run's and a resumed trace's (QA pass: the line showed 3.9e8 / 6e8 where 5.99e8 had been charged); one
    # machine's steps a kill cut short, charged at their worst case when the trace was resumed
    beyond = summary.pool_beyond_items
    what = "lost attempts" if summary.distributed else "cut short by a kill"
    for scope, limits in (("per item", summary.budget_item), ("pooled", summary.budget_pooled)):
        if limits:
            spent = summary.actual_max if scope == "per item" else {
                u: summary.actual_total[u] + beyond.get(u, 0.0) for u in summary.actual_total}
            parts = [f"{u} {_fmt(u, spent[u])} / {_fmt(u, lim)}" + (
                f" ({what} {_fmt(u, beyond[u])} of it)" if scope == "pooled" and beyond.get(u) else "") + (
                # the one soft unit: a node that starts in time runs to its end (QA pass: 0.22 / 0.05, unmarked)
                " (over: seconds is checked before each model node, not within it)" if spent[u] > lim else "")
                for u, lim in limits.items()]
            console.print(f"budget {scope} (on_exhaust = {summary.on_exhaust}): " + "; ".join(parts))
    for w in summary.warnings:
        console.print(styled("[yellow]warning:[/] ", w), highlight=False)
    if summary.shared_across_items:
        sh = summary.shared_across_items
        console.print(f"each item is charged its prefill as if it ran alone; the prefix cache served "
                      f"{_fmt('prompt_tokens', sh['prompt_tokens'])} of those prompt tokens "
                      f"({_fmt('flops', sh['flops'])} FLOPs) from other items' prompts, so the run computed that much less")
    console.print(f"wall {summary.wall_seconds:.2f}s, {summary.batches} batched backend calls, "
                  f"seed {summary.header['seed']}, device {summary.header['device']}"
                  + (f" ({dt})" if (dt := summary.header["dtype"]) and dt != summary.header["device"] else ""))
    if summary.distributed:
        d = summary.distributed
        lost = {u: v for u, v in d.get("lost_spend", {}).items() if v and u != "seconds"}  # this run's
        spent = ", ".join(f"{u} {_fmt(u, v)}" for u, v in lost.items())
        console.print(f"ray: {_n(d['workers'], 'worker')}, {_n(d['shards'], 'shard')}, {d['calls']} pooled-ledger "
                      f"calls, {_n(d['restarts'], 'worker restart')}" + (f", lost attempts spent {spent}" if lost else ""))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _accuracy(summary: Any) -> str:
    """`0.600 (3/5)`, over the graded items only: an item the judge failed on is ungraded, never wrong."""
    if summary.accuracy is None:
        return "n/a (judge failed on every item)" if summary.judge_failed else "n/a (no gold answers)"
    ungraded = summary.items - summary.graded
    return f"{summary.accuracy:.3f} ({summary.correct}/{summary.graded}" + (
        f" graded, {ungraded} ungraded)" if ungraded else ")")


def _judged_by(judge: str) -> str:
    return "equality with the gold answer" if judge == "gold" else f"check({judge!r})"


def run(
    program: ProgramArg,
    input_: Annotated[str | None, typer.Option("--input", help="One input text (the strategy's question).")] = None,
    dataset: Annotated[Path | None, typer.Option("--dataset", help=DATASET_HELP, parser=dataset_path)] = None,
    field: Annotated[list[str] | None, typer.Option("--field", help=FIELD_HELP)] = None,
    verifier: VerifierOpt = None,
    judge: JudgeOpt = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Bind a model: --model policy=PATH or policy=http://HOST:PORT/v1 (repeatable).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a param: --set n=64 (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Run seed; every sample's randomness derives from it.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16")] = "auto",
    trace: Annotated[Path | None, typer.Option("--trace", help="Write a JSONL trace (one record per node per item).", parser=named_path)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip items the --trace file already finished.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="With --resume: run the items the trace holds as failed again (their finished steps are replayed).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the --trace file over if it already holds a run.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help=f"Exit {EXIT_ITEMS_NOT_OK} if any item failed, was stopped or could not be judged (for CI).")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Run only the first N dataset items.")] = None,
    batch_items: Annotated[int | None, typer.Option("--batch-items", help="Items in flight at once (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results and cost table as JSON.")] = False,
    by: Annotated[str | None, typer.Option("--by", help="Accuracy and mean cost per value of a dataset field, e.g. --by steps.")] = None,
    allow_remote: Annotated[list[str] | None, typer.Option("--allow-remote", help="A host the program's own endpoints may name (repeatable).")] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP, metavar="[ADDRESS]")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Ray worker actors (default 2).")] = None,
    shards: Annotated[int | None, typer.Option("--shards", help=SHARDS_HELP)] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="auto | lockstep | stream (stream: items advance as their own server calls return; auto: stream on a server).")] = "auto",
    max_input_tokens: MaxInputOpt = None,
) -> None:
    """Run a strategy on an input or a dataset; print the answer or accuracy and bound-vs-actual cost per node."""
    model, set_ = model or [], set_ or []
    with errors_as_json(as_json):  # an error before the run is JSON under --json, as eval's (review)
        trace = None if trace is None else where_written(trace)
        _check_choice("--device", device, DEVICES)
        _check_choice("--dtype", dtype, DTYPES)
        if resume and trace is None:
            raise RunOptionError("--resume needs --trace FILE (the trace to resume from)")
        if resume and overwrite:
            raise RunOptionError("--resume and --overwrite contradict each other: keep one")
        if overwrite and trace is None:  # it was taken without a word (QA pass)
            raise RunOptionError("--overwrite starts a --trace file over: add --trace FILE, or drop --overwrite")
        if trace is not None and str(trace) == "-":  # a file named `-` was written, where `--dataset -` reads stdin
            raise RunOptionError("--trace -: a trace is written to a file, not to stdout; give a path, e.g. --trace run.jsonl")
        if trace is not None and os.path.exists(trace) and not is_file(trace) and not is_dir(trace):  # /dev/null
            raise RunOptionError(f"--trace {trace}: not a regular file; give a file path, e.g. --trace run.jsonl")
        if retry_failed and not resume:
            raise RunOptionError("--retry-failed reruns the failed items of a resumed run: add --resume (and --trace FILE)")
        if retry_failed and ray is not None:
            raise RunOptionError("--retry-failed works on one machine only: a wide run (--ray) resumes whole items and "
                                 "cannot replay a failed item's finished steps; run --resume --retry-failed without --ray")
        if batch_items is not None and batch_items < 1:
            raise RunOptionError(f"--batch-items {batch_items}: expected a positive number of items")
        _check_choice("--schedule", schedule, ("auto", "lockstep", "stream"))
        refuse_input_as_output(trace, "--trace", {"dataset": dataset, "program": program_input(program)})
        if trace is not None and is_dir(trace):
            raise RunOptionError(f"--trace {trace}: is a directory; give a file name, e.g. --trace {trace / 'run.jsonl'}")
        wide = Wide(ray, workers, shards)
        register_verifiers(verifier or [])
        items = _load_items(input_, dataset, limit, field)
        check_judge(judge, items, dataset)
        if by is not None:
            check_by(items, by, dataset)
        if resume and trace is not None and not has_run(trace):  # a typo in the path would rerun everything unsaid
            why = "is empty (a run killed as it started)" if os.path.exists(trace) else "does not exist"
            typer.echo(f"note: --resume: {trace} {why}; starting the run from the beginning", err=True)
        # a wide run's program and trace are checked before its cluster starts (seconds), so that an error comes first
        compiled = _compile(program, set_, model, max_input_tokens, allow_remote, as_json) if wide.address else None
        if wide.address is not None and trace is not None:
            check_trace_before_the_cluster(compiled, wide, items, trace, seed=seed, dataset=dataset, judge=judge,
                                           resume=resume, overwrite=overwrite)
        wide.check_device(device)
    earlier = stamp(trace) if overwrite else None  # a Ctrl-C before the run starts the trace over keeps it
    try:
        with wide:
            summary = _run_once(program, set_, model, items, seed=seed, device=device, dtype=dtype, trace=trace,
                                resume=resume, dataset=dataset, show_progress=dataset is not None and len(items) > 1,
                                batch_items=batch_items, overwrite=overwrite, json_errors=as_json,
                                allow_remote=allow_remote, wide=wide, schedule=schedule, judge=judge,
                                max_input_tokens=max_input_tokens, retry_failed=retry_failed,
                                compiled=compiled)
    except KeyboardInterrupt as e:
        typer.echo(interrupted_message(trace, len(items), earlier), err=True)
        raise typer.Exit(exit_code(e)) from None
    except ShardFailedError as e:
        raise DistributedError(shard_failed_message(e, trace, len(items))) from None
    if input_ is not None and not as_json:  # the error alone: the report above it filed the refusal under
        _refuse_over_long_input(summary.results[0])  # "degraded by on_exhaust" and said it three times (QA pass)
    breakdown = by_field(summary.results, by) if by is not None else None
    if as_json:
        out = json.loads(summary.model_dump_json())
        if breakdown is not None:
            out["by"] = {"field": by, "bins": breakdown}
        typer.echo(json.dumps(out, indent=2))
    else:
        console = report_console()
        print_summary(summary, console, single=input_ is not None)
        if breakdown is not None:
            for b in breakdown:
                acc = ("n/a (no item graded)" if b["accuracy"] is None else
                       f"{b['accuracy']:.3f} [{b['lo']:.3f}, {b['hi']:.3f}] (95% Wilson)")
                over = f"{b['graded']} graded of {b['items']}" if b["graded"] < b["items"] else f"{b['items']}"
                head = "all" if b["bin"] == "all" else f"no {by}" if b["bin"] is None else f"{by} = {b['bin']}"
                console.print(f"{head}: accuracy {acc} over {over} item{'s' * (b['items'] != 1)}, "
                              f"FLOPs/item {_flops(b['flops'])}, tokens/item {b['tokens']:.1f}")
    from ttcl.runtime.judge import failure_line, judge_failures

    judge_failed = judge_failures(summary.results)
    if judge_failed:  # those items are ungraded, not wrong: say so where the accuracy is read, --json or not
        typer.echo(failure_line(judge or "gold", judge_failed, summary.items), err=True)
    if input_ is not None:
        _refuse_over_long_input(summary.results[0])
    if strict and (summary.failed or summary.stopped or judge_failed):
        ungraded = f", and the judge failed on {len(judge_failed)} (ungraded)" if judge_failed else ""
        typer.echo(f"--strict: {summary.failed} items failed and {summary.stopped} were stopped{ungraded}; "
                   f"exit {EXIT_ITEMS_NOT_OK}", err=True)
        raise typer.Exit(EXIT_ITEMS_NOT_OK)


def _refuse_over_long_input(result: dict[str, Any]) -> None:
    """One `--input` longer than the strategy's declared `text[<=N]` is bad input (exit 2), not a run that
    succeeded: the item was stopped before the node that reads it (in the text report, this error is all that is
    printed; `--json` prints the run's record before it). In a dataset such an item
    is stopped and counted like any other (exit 0, or 3 with --strict), so no item is lost."""
    from ttcl.runtime.accountant import input_over_bound

    why = input_over_bound(result, "--input")
    if why is not None:
        raise RunOptionError(f"{why}")


def check_by(items: list[Any], by: str, dataset: Path | None) -> None:
    """`--by FIELD` groups items by a field's value: say before any sampling that no item has the field, or
    that a value is not one to group by (a list or an object)."""
    if not any(by in it.extra for it in items):
        fields = sorted({k for it in items for k in it.extra}) or ["none"]
        what = "the question and the gold answer are not fields to group by; " if by in ("question", "answer") else ""
        raise RunOptionError(f"--by {by!r}: {what}no item of {dataset or '--input'} has that field "
                             f"(fields: {', '.join(fields)})")
    for it in items:
        value = it.extra.get(by)
        if value is not None and not isinstance(value, str | int | float | bool):
            where = f"{it.where(dataset)}: error" if dataset is not None and it.line else "error: --input"
            raise RunOptionError(f"{where}: --by {by!r}: the field holds a {type(value).__name__}; --by groups by a "
                                 "string, number or boolean")
    missing = [it for it in items if it.extra.get(by) is None]
    if missing:  # grouped as their own bin, `no FIELD`: said, since a typo in one line's field name looks alike
        first = missing[0].where(dataset) if dataset is not None and missing[0].line else f"item {missing[0].index}"
        typer.echo(f"note: --by {by!r}: {len(missing)} of {len(items)} items have no value for it (first: {first}); "
                   f"they are grouped as `no {by}`", err=True)


def by_field(results: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Accuracy (95% Wilson) and mean cost per value of a dataset field, then "all"."""
    from ttcl.runtime.analysis.curves import bin_values, in_bin
    from ttcl.runtime.analysis.intervals import wilson

    fields = [r.get("fields", {}) for r in results]
    out = []
    for value in bin_values(fields, by):
        rows = [r for r, m in zip(results, in_bin(fields, by, value), strict=True) if m]
        graded = [r for r in rows if r["correct"] is not None]
        right = sum(1 for r in graded if r["correct"])
        lo, hi = wilson(right, len(graded)) if graded else (None, None)
        out.append({"bin": value, "items": len(rows), "graded": len(graded),
                    "accuracy": right / len(graded) if graded else None,
                    "lo": lo, "hi": hi, "flops": sum(r["cost"]["flops"] for r in rows) / max(1, len(rows)),
                    "tokens": sum(r["cost"]["tokens"] for r in rows) / max(1, len(rows))})
    return out


# ---------------------------------------------------------------- sweeps (used by `ttcl eval`)


def parse_sweep(items: list[str]) -> list[list[tuple[str, str]]]:
    """`["n=1,4,16", "temperature=0.5,1"]` -> every combination as (param, value) pairs, in order."""
    axes: list[list[tuple[str, str]]] = []
    for item in items:
        name, eq, values = item.partition("=")
        vals = [v.strip() for v in values.split(",")]
        if not eq or not name.strip() or not any(vals):
            raise RunOptionError(f"--sweep {item!r}: expected NAME=V1,V2,..., e.g. --sweep n=1,4,16")
        if "" in vals:  # `n=1,,2` dropped its empty value without a word (QA pass)
            raise RunOptionError(f"--sweep {item!r}: an empty value between commas; give V1,V2,..., e.g. --sweep n=1,4,16")
        twice = next((v for i, v in enumerate(vals) if v in vals[:i]), None)
        if twice is not None:
            raise RunOptionError(f"--sweep {item!r}: {name.strip()} = {twice} is given twice; keep one")
        axes.append([(name.strip(), v) for v in vals])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def register(app: typer.Typer) -> None:
    app.command("run")(run)


__all__ = ["register", "parse_sweep"]

