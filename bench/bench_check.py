"""Benchmark: `ttcl check` stages on a generated program of 500+ DAG nodes, in one process.

    python bench/bench_check.py [--runs 15] [--blocks 20]

Prints the DAG size and the median time of each stage (parse+load, check,
DAG build, bound) and of the whole, over `--runs` runs after one warm-up,
by the wall clock and by this process's CPU time (the second is the fair
figure on a shared, loaded machine). Target: under 100 ms in total.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

from cli import main_guarded, positive_int

from ttcl.compiler.budget import spec_lookup
from ttcl.compiler.budget_report import analyze
from ttcl.compiler.checks import check_program
from ttcl.compiler.dag_build import build, instances_of
from ttcl.compiler.loader import load_program
from ttcl.compiler.pipeline import paused_gc

HEADER = '''ttcl 1
"""Generated for bench/bench_check.py: a long chain of steps, branches and loops."""

model policy = "/bench/policy" (params = 1G, n_layer = 24, d_model = 2048)
model rm = "/bench/rm" (params = 100M, n_layer = 12, d_model = 768)
verifier orm = reward(rm)
verifier exact = check("arith")

param beams: int = 4 in 1..64
param width: int = 2 in 1..16
param step_tokens: int = 16 in 1..256
param depth: int = 3 in 1..16

budget per item { calls <= 1M; tokens <= 100M; flops <= 1e18 }

strategy main(question: text[<=256]) -> answer {
    c = sample(policy, "Question: {question}\\nAnswer:", n = beams * width, max_tokens = step_tokens)
'''

BLOCK = '''    c = top(verify(orm, extend(policy, top(c, k = beams), n = width, max_tokens = step_tokens)), k = beams)
    if agreement(c) > 0.8 {{
        c = verify(exact, c)
    }} else {{
        c = c + sample(policy, "Retry {i}: {{question}}", n = width, max_tokens = step_tokens)
    }}
    repeat depth {{
        c = top(verify(orm, extend(policy, c, n = width, max_tokens = step_tokens)), k = beams)
    }} until best_score(c) > 0.9
'''


def program(blocks: int) -> str:
    return HEADER + "".join(BLOCK.format(i=i) for i in range(blocks)) + "    return vote(c, weight = score)\n}\n"


def run_once(source: str, clock: Callable[[], float]) -> tuple[dict[str, float], int]:
    with paused_gc():  # as compile_program runs the same stages
        return _stages(source, clock)


def _stages(source: str, clock: Callable[[], float]) -> tuple[dict[str, float], int]:
    t0 = clock()
    prog = load_program(source=source, file="bench.ttc")
    t1 = clock()
    checked = check_program(prog, {})
    t2 = clock()
    instances, sources = instances_of(checked)
    dag = build(instances=instances, strategy=checked.entry.name, sources=sources)
    t3 = clock()
    diags: list = []
    report = analyze(dag, prog.root.module, spec_lookup(diags))
    t4 = clock()
    assert not diags and report.verdict == "fits", report.verdict
    return {"parse+load": t1 - t0, "check": t2 - t1, "dag": t3 - t2, "bound": t4 - t3, "total": t4 - t0}, len(dag)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=positive_int, default=15, help="timed runs per clock, after one warm-up (the median is printed)")
    ap.add_argument("--blocks", type=positive_int, default=20, help="blocks of the generated program (20 blocks: 604 DAG nodes)")
    args = ap.parse_args()
    source = program(args.blocks)
    gc.collect()
    _, nodes = run_once(source, time.perf_counter)  # warm-up: imports, grammar, caches
    lines = source.count("\n")
    print(f"program: {lines} lines, {nodes} DAG nodes; median of {args.runs} runs")
    for label, clock in (("wall clock (perf_counter)", time.perf_counter), ("CPU time of this process (process_time)", time.process_time)):
        samples = [run_once(source, clock)[0] for _ in range(args.runs)]
        print(label)
        for stage in ("parse+load", "check", "dag", "bound", "total"):
            values = [s[stage] * 1000 for s in samples]
            print(f"  {stage:<11} {statistics.median(values):8.1f} ms   (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main_guarded(main)
