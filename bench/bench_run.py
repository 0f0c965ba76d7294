"""Benchmark (a) end to end: a compiled `.ttc` program run by the ttcl runtime vs hand-written transformers.

bench_generate.py measures the backend alone. This measures the whole stack a
user gets from `ttcl run`: compile the program (parse, load, check, DAG,
bounds), build the Runner (accountant, hooks, scorers; the model itself is
loaded once per process and cached by `runtime.runner.load_backend`), read the
JSONL dataset, schedule, generate, extract and vote. Against it, in the same
process and on the same model object: `baselines.handwritten_batched` doing the
same sampling (same prompts, n, temperature, max_tokens), and the naive loop of
one `model.generate` call per sample (timed on a subset, scaled, and said so).

Model loading is excluded from both in-process timings (a warm-up loads it);
compiling the program is included in ttcl's. Contenders alternate, the median
of --repeats runs is reported, wall and process CPU seconds. A last line times
the real CLI, `ttcl run ... --dataset FILE`, as a subprocess: process start,
imports and model load included.

    python bench/bench_run.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import handwritten_batched, naive_loop  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int, positive_int_list, temperature  # noqa: E402

from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.runtime.dataset import load_dataset  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions, RunSummary, load_backend  # noqa: E402
from ttcl.runtime.tasks.arith import iter_jsonl, make_problems  # noqa: E402

PROGRAM = Path(__file__).resolve().parent / "programs" / "best_of_16.ttc"


@dataclass
class Timings:
    """Wall and process CPU seconds of every timed run of one contender (CPU is robust on a shared box)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], Any]) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        self.wall.append(time.perf_counter() - t0)
        self.cpu.append(time.process_time() - c0)
        return out

    @property
    def med_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def med_cpu(self) -> float:
        return statistics.median(self.cpu)

    def runs(self) -> str:
        return ", ".join(f"{w:.2f}" for w in self.wall)


def write_dataset(path: Path, items: int, steps: list[int], seed: int) -> list[str]:
    """The arith items as `ttcl run --dataset` reads them; returns the prompts the program will send."""
    problems = make_problems(items, steps, seed)
    path.write_text("".join(line + "\n" for line in iter_jsonl(problems)))
    return [p.prompt for p in problems]


def cli_run(args: argparse.Namespace, dataset: Path) -> tuple[float, float, str]:
    """The real `ttcl run` as a subprocess: wall and child CPU seconds, and the run's own `wall` line."""
    exe = shutil.which("ttcl")
    cmd = [exe] if exe else [sys.executable, "-c", "from ttcl.cli import main; main()"]
    cmd += ["run", str(PROGRAM), "--dataset", str(dataset), "--device", "cpu", "--seed", str(args.seed),
            "--set", f"n={args.n}", "--set", f"temperature={args.temperature}",
            "--set", f"max_tokens={args.max_tokens}", "--model", f"policy={args.model}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"ttcl run failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"^wall [0-9.]+s.*$", proc.stdout, re.MULTILINE)
    acc = re.search(r"^accuracy: .*$", proc.stdout, re.MULTILINE)
    note = "; ".join(x.group(0) for x in (acc, m) if x)
    return wall, cpu, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ttcl:arith-s", help="the policy: ttcl:NAME or a model directory")
    ap.add_argument("--items", type=positive_int, default=64, help="arith items of the job")
    ap.add_argument("--n", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--max-tokens", type=positive_int, default=64, help="generated tokens per sample at most")
    ap.add_argument("--temperature", type=temperature, default=0.8, help="sampling temperature")
    ap.add_argument("--steps", type=positive_int_list, default="2,3,4", help="arith difficulty levels of the items")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the items and of the run")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs per contender (the median is printed)")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (both sides)")
    ap.add_argument("--naive-items", type=nonnegative_int, default=8, help="items the naive loop runs (0: skip)")
    ap.add_argument("--skip-cli", action="store_true", help="do not time the `ttcl run` subprocess")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ttcl-bench-run-") as tmp:  # the dataset, removed at the end
        bench(args, Path(tmp))


def bench(args: argparse.Namespace, tmp: Path) -> None:
    steps = args.steps
    dataset = tmp / f"arith{args.items}.jsonl"
    prompts = write_dataset(dataset, args.items, steps, args.seed)
    overrides = {"n": str(args.n), "temperature": str(args.temperature), "max_tokens": str(args.max_tokens)}
    models = {"policy": args.model}
    opts = RunOptions(seed=args.seed, device="cpu", dataset=dataset)
    n, m, temp = args.n, args.max_tokens, args.temperature

    compile_s: list[float] = []

    def ours() -> RunSummary:
        t0 = time.perf_counter()
        compiled = compile_program(PROGRAM, overrides=overrides, model_overrides=models)
        compile_s.append(time.perf_counter() - t0)
        return Runner(compiled, opts).run(load_dataset(dataset))

    t_load = time.perf_counter()
    be = load_backend(args.model, "cpu", "auto")  # the Runner's own cache: the same object ours() gets
    t_load = time.perf_counter() - t_load
    model, tok = be.model, be.tokenizer

    def hand() -> list[list[list[int]]]:
        return handwritten_batched(model, tok, prompts, n, m, temp, seed=args.seed)

    print(
        f"model {args.model}: {be.spec.non_embedding_params:,} non-embedding params, n_layer {be.spec.n_layer}, "
        f"d_model {be.spec.d_model}, n_ctx {be.spec.n_ctx}; loaded once in {t_load:.2f} s (excluded)"
    )
    print(f"program {PROGRAM.relative_to(Path.cwd()) if PROGRAM.is_relative_to(Path.cwd()) else PROGRAM}")
    print(f"job: {len(prompts)} items x n={n}, max_tokens={m}, temperature={temp}, steps {steps}, seed {args.seed}")
    ours(), hand()  # warm-up (and the check that both run)
    t_ours, t_hand = Timings(), Timings()
    summary: RunSummary | None = None
    rows: list[list[list[int]]] = []
    for _ in range(args.repeats):
        summary = t_ours.add(ours)
        rows = t_hand.add(hand)
    assert summary is not None
    assert summary.items == len(prompts) and summary.failed == 0 and summary.stopped == 0, summary
    assert not any(r.shrunk or r.refused for r in summary.rows), "the budget must not shrink the job"
    hand_gen = sum(len(r) for item in rows for r in item)
    gen = summary.actual_total["gen_tokens"]
    print(
        f"  ttcl run (in process) {t_ours.med_wall:7.2f} s wall, {t_ours.med_cpu:6.2f} s CPU  (runs {t_ours.runs()});"
        f" compile {statistics.median(compile_s) * 1e3:.0f} ms of it; {gen:,.0f} gen tokens, {summary.actual_total['prompt_tokens']:,.0f} prompt tokens,"
        f" {summary.batches} batched backend call(s), vote accuracy {summary.accuracy:.3f}"
    )
    print(
        f"  hand-written batched  {t_hand.med_wall:7.2f} s wall, {t_hand.med_cpu:6.2f} s CPU  (runs {t_hand.runs()});"
        f" {hand_gen:,} gen tokens (EOS included, no vote)"
    )
    print(
        f"(a) ttcl / hand-written = {t_ours.med_wall / t_hand.med_wall:.3f} wall, "
        f"{t_ours.med_cpu / t_hand.med_cpu:.3f} CPU   (target <= 1.10)"
    )
    if args.naive_items == 0:
        print("(b) skipped: --naive-items 0")
    else:
        sub = prompts[: args.naive_items]
        t_naive = Timings()
        naive_gen = t_naive.add(lambda: naive_loop(model, tok, sub, n, m, temp, seed=args.seed))
        scale = len(prompts) / len(sub)
        est, est_cpu = t_naive.med_wall * scale, t_naive.med_cpu * scale
        note = "" if scale == 1 else f" (measured once on {len(sub)} of {len(prompts)} items, x{scale:g})"
        print(f"  naive generate loop   {est:7.2f} s wall, {est_cpu:6.2f} s CPU{note}; {naive_gen:,} gen tokens measured")
        print(
            f"(b) naive loop / ttcl run = {est / t_ours.med_wall:.1f}x wall, "
            f"{est_cpu / t_ours.med_cpu:.1f}x CPU   (target >= 10x)"
        )
    if not args.skip_cli:
        wall, cpu, note = cli_run(args, dataset)
        print(
            f"  CLI `ttcl run {PROGRAM.name} --dataset {dataset.name} --device cpu` (subprocess, once, "
            f"OMP_NUM_THREADS={args.threads}): {wall:.2f} s wall, {cpu:.2f} s CPU, process start, imports and "
            f"model load included; its own lines: {note}"
        )


if __name__ == "__main__":
    main_guarded(main)
