"""A wide run's overhead: the same job in-process, on 1 Ray worker and on 2; and the pooled ledger's cost.

(1) Overhead. programs/adaptive.ttc on generated arith items (seed below),
    run three ways on this machine: `Runner` in this process (no Ray), and
    `RayRunner` with 1 and with 2 worker actors on a local cluster. The
    cluster start and the workers' model load are timed separately (once);
    each timed run is then warm. Median of --repeats, alternating.

(2) Accountant cost per item at --items (default 10,000). A real shard is
    first run in-process on --record items with a recording client: every
    batched pool call it made (its reserve/charge ops and finished items, one
    call per scheduler step). That call sequence is then replayed against the
    real accountant actor over Ray, tiled with fresh item ids until --items
    items have gone through, from --workers threads at once (one per worker).
    Reported: calls, ops, time the workers spent waiting on pool calls, and
    the actor's own time, per item.

(3) The ledger alone, in this process (no Ray): microseconds per operation
    for batches of 16, 128 and 1,024 operations per call (half reserves, then
    the matching charges in the next call): what the actor's CPU pays.

(4) What fixed shard quotas cost (`--quota-cost`): bench/programs/pooled_adaptive.ttc,
    whose pooled budget binds, on the same 96 items, in one process (one pool)
    and wide with 1, 2 and 4 shards on 2 workers: accuracy, items shrunk,
    calls spent of the pool.

    python bench/bench_ray.py --job-items 96 --items 10000 --repeats 3
    python bench/bench_ray.py --quota-cost --job-items 96
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from cli import main_guarded, nonnegative_int, positive_int  # noqa: E402

from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.runtime import distributed  # noqa: E402
from ttcl.runtime.dataset import Item  # noqa: E402
from ttcl.runtime.pool import PoolLedger  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions  # noqa: E402
from ttcl.runtime.shard import run_shard  # noqa: E402
from ttcl.runtime.tasks.arith import make_problems  # noqa: E402

PROGRAM = ROOT / "programs" / "adaptive.ttc"


def items_of(n: int, seed: int) -> list[Item]:
    return [Item(index=i, question=p.question, gold=str(p.answer))
            for i, p in enumerate(make_problems(n, list(range(1, 7)), seed))]


def overhead(items: list[Item], repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    compiled = compile_program(PROGRAM)
    opts = RunOptions(device="cpu")
    local = Runner(compiled, opts)
    local.run(items[:2])  # warm: model loaded, first-call costs paid
    t = time.perf_counter()
    distributed.connect(num_cpus=2)
    start = time.perf_counter() - t
    t = time.perf_counter()
    distributed.RayRunner(compiled, opts, workers=2).run(items[:2])  # workers spawned, models loaded
    warm = time.perf_counter() - t
    walls: dict[str, list[float]] = {"in-process (no Ray)": [], "ray, 1 worker": [], "ray, 2 workers": []}
    answers: dict[str, list[Any]] = {}
    for _ in range(repeats):
        for name, fn in (("in-process (no Ray)", lambda: local.run(items)),
                         ("ray, 1 worker", lambda: distributed.RayRunner(compiled, opts, workers=1).run(items)),
                         ("ray, 2 workers", lambda: distributed.RayRunner(compiled, opts, workers=2).run(items))):
            t = time.perf_counter()
            s = fn()
            walls[name].append(time.perf_counter() - t)
            answers[name] = [r["answer"] for r in s.results]
    same = len({tuple(a) for a in answers.values()}) == 1
    return {"cluster_start_s": start, "first_run_with_worker_start_s": warm, "walls": walls, "same_answers": same}


def record(items: list[Item]) -> list[tuple[list[Any], list[Any]]]:
    """The pool calls one real shard makes, in order (ops and finished items per scheduler step)."""
    compiled = compile_program(PROGRAM)
    runner = Runner(compiled, RunOptions(device="cpu"))
    led = PoolLedger(runner.pooled)
    calls: list[tuple[list[Any], list[Any]]] = []

    def client(w: str, ops: list[Any], finished: list[Any], nodes: int) -> list[bool]:
        calls.append((ops, finished))
        return led.step(w, ops)

    run_shard(runner, items, client=client, worker="rec", shard=0, attempt=0, quota=runner.pooled)
    return calls


def _retag(calls: list[tuple[list[Any], list[Any]]], worker: str, offset: int) -> list[tuple[list[Any], list[Any]]]:
    out = []
    for ops, finished in calls:
        ops2 = [(kind, (worker, key[1] + offset, *key[2:]), shard, cost) for kind, key, shard, cost in ops]
        fin2 = [(nodes, {**item, "item": item["item"] + offset}) for nodes, item in finished]
        out.append((ops2, fin2))
    return out


def accountant_cost(calls: list[tuple[list[Any], list[Any]]], per_chunk: int, total: int, workers: int,
                    *, with_items: bool = True, trace: Path | None = None) -> dict[str, Any]:
    import ray

    from ttcl.compiler.pipeline import compile_program as _compile

    planner = Runner(_compile(PROGRAM), RunOptions(device="cpu"), load_models=False)
    header = planner.header([]).model_dump(mode="json") if trace else None
    pool = ray.remote(num_cpus=0)(distributed.PoolService).remote(planner.pooled, {}, header,
                                                                  str(trace) if trace else None, False)
    chunks = total // per_chunk
    waited = [0.0] * workers
    n_calls = [0] * workers

    def drive(w: int) -> None:
        for c in range(w, chunks, workers):
            for ops, finished in _retag(calls, f"w{w}", c * per_chunk):
                finished = finished if with_items else []
                t = time.perf_counter()
                ray.get(pool.step.remote(f"w{w}", ops, finished))
                waited[w] += time.perf_counter() - t
                n_calls[w] += 1

    t = time.perf_counter()
    threads = [threading.Thread(target=drive, args=(w,)) for w in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    stats = ray.get(pool.stats.remote())
    ray.kill(pool)
    items = chunks * per_chunk
    return {"items": items, "calls": sum(n_calls), "ops": stats["ops"], "wall_s": wall,
            "worker_wait_s": sum(waited), "actor_s": stats["pool_seconds"],
            "per_item_wait_ms": 1e3 * sum(waited) / items, "per_item_actor_ms": 1e3 * stats["pool_seconds"] / items,
            "per_call_wait_ms": 1e3 * sum(waited) / sum(n_calls), "ops_per_call": stats["ops"] / sum(n_calls)}


def ledger_per_op(per_call: int, total_ops: int = 40_000) -> float:
    from ttcl.compiler.costmodel import Cost
    from ttcl.runtime.accountant import Limits

    c = Cost(calls=4, prompt_tokens=40, gen_tokens=400, flops=1e8).as_dict()
    led = PoolLedger(Limits(calls=1e12, gen_tokens=1e15, flops=1e20), {0: Limits(calls=1e12, flops=1e20)})
    rounds = max(4, total_ops // per_call)
    item = 0
    t = time.perf_counter()
    for _ in range(rounds):
        ops = [("reserve", ("w0", item + j, "main/s", 0, 0), 0, c) for j in range(per_call)]
        item += per_call
        led.step("w0", ops)
        led.step("w0", [("charge", o[1], 0, c) for o in ops])
    return 1e6 * (time.perf_counter() - t) / (2 * rounds * per_call)


def quota_cost(items: list[Item]) -> None:
    import torch

    torch.set_num_threads(1)
    compiled = compile_program(ROOT / "bench" / "programs" / "pooled_adaptive.ttc")
    opts = RunOptions(device="cpu")
    rows = [("in-process, one pool", Runner(compiled, opts).run(items))]
    distributed.connect(num_cpus=2)
    for shards in (1, 2, 4):
        rows.append((f"ray, 2 workers, {shards} shard(s)",
                     distributed.RayRunner(compiled, opts, workers=2, shards=shards).run(items)))
    print(f"(4) pooled_adaptive.ttc (pooled calls <= 576), {len(items)} items:")
    base = rows[0][1]
    for name, s in rows:
        shrunk = sum(r.shrunk for r in s.rows)
        differ = sum(1 for a, b in zip(base.results, s.results, strict=True) if a["answer"] != b["answer"])
        moved = sum(1 for a, b in zip(base.results, s.results, strict=True) if a["status"] != b["status"])
        print(f"    {name:28s} accuracy {s.accuracy:.3f} ({s.correct}/{s.graded}), nodes shrunk {shrunk:3d}, "
              f"stopped {s.stopped:3d}, calls spent {s.actual_total['calls']:.0f} / 576; vs one pool: "
              f"{moved} items with another status, {differ} answers differ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job-items", type=positive_int, default=96, help="(1), (4): arith items of the job")
    ap.add_argument("--seed", type=nonnegative_int, default=11, help="seed of the items")
    ap.add_argument("--repeats", type=positive_int, default=3, help="(1): timed runs per contender (the median is printed)")
    ap.add_argument("--record", type=positive_int, default=16, help="(2): items of the recorded shard")
    ap.add_argument("--items", type=positive_int, default=10_000,
                    help="(2): items replayed, rounded down to a multiple of --record (said when it is)")
    ap.add_argument("--workers", type=positive_int, default=2, help="(2): worker threads replaying at once")
    ap.add_argument("--skip-overhead", action="store_true", help="skip part (1)")
    ap.add_argument("--quota-cost", action="store_true", help="only part (4)")
    a = ap.parse_args()
    if not a.quota_cost and a.items < a.record:
        ap.error(f"--items {a.items}: expected at least --record ({a.record}), the items of one replayed shard")
    if a.quota_cost:
        try:
            quota_cost(items_of(a.job_items, a.seed))
        finally:
            distributed.shutdown()
        return
    tmp: Path | None = None
    try:
        if not a.skip_overhead:
            r = overhead(items_of(a.job_items, a.seed), a.repeats)
            print(f"(1) {PROGRAM.name}, {a.job_items} arith items (steps 1..6, seed {a.seed}), warm, "
                  f"median of {a.repeats}:")
            print(f"    local cluster start {r['cluster_start_s']:.1f} s; first run incl. spawning 2 workers and "
                  f"loading their models {r['first_run_with_worker_start_s']:.1f} s")
            for name, ws in r["walls"].items():
                print(f"    {name:22s} {statistics.median(ws):7.2f} s  (runs: {', '.join(f'{w:.2f}' for w in ws)})")
            print(f"    same answers in all three: {r['same_answers']}")
        else:
            distributed.connect(num_cpus=2)
        calls = record(items_of(a.record, a.seed))
        if a.items % a.record:
            print(f"(2) --items {a.items} is rounded down to {a.items - a.items % a.record}, a multiple of "
                  f"--record {a.record}")
        tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))  # the merged trace, removed at the end
        for with_items, trace in ((False, None), (True, None), (True, tmp / "trace.jsonl")):
            r2 = accountant_cost(calls, a.record, a.items, a.workers, with_items=with_items, trace=trace)
            what = ("reservations/charges only" if not with_items else
                    "reservations/charges AND finished items (node records)" +
                    (", the actor writing the merged trace (fsync per call)" if trace else ", no trace"))
            print(f"(2) pooled-ledger actor, {r2['items']} items replayed from a real {a.record}-item shard "
                  f"({len(calls)} calls per {a.record} items), {a.workers} worker threads, {what}:")
            print(f"    {r2['calls']} calls, {r2['ops']} ops ({r2['ops_per_call']:.1f} per call), "
                  f"wall {r2['wall_s']:.2f} s")
            print(f"    workers waiting on pool calls: {r2['worker_wait_s']:.2f} s total = "
                  f"{r2['per_item_wait_ms']:.3f} ms per item ({r2['per_call_wait_ms']:.2f} ms per call)")
            print(f"    inside the actor: {r2['actor_s']:.2f} s total = {r2['per_item_actor_ms']:.3f} ms per item "
                  f"({1e3 * r2['actor_s'] / r2['calls']:.3f} ms per call)")
        for per_call in (16, 128, 1024):
            us = statistics.median(ledger_per_op(per_call) for _ in range(3))
            print(f"(3) ledger in-process, {per_call} ops per call: {us:.1f} us per op (median of 3)")
    finally:
        distributed.shutdown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main_guarded(main)
