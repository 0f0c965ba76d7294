"""Benchmark: `ttcl serve` under concurrent clients vs calling the strategy in-process.

The strategy is bench/programs/best_of_16.ttc on the bundled arith-s (local
backend). `ttcl serve` runs as its own process; --clients threads (official
openai client) each send --per-client chat requests back to back, every one
with its own arith question and seed. Reported: requests/s over the whole
burst and the p50/p99 of per-request latency. In-process: the same inputs
through `Runner.run`, in batches of --clients (what the server can batch at
best), and one at a time; requests/s and per-request latency likewise.
Every contender runs on --threads torch threads (default 1: the server's
OMP_NUM_THREADS, as BENCHMARKS.md's set-up), and each reports the CPU
seconds its process spent (the server's read from /proc), so that a run on a
loaded machine shows where time went to waiting (QA pass: the in-process
contenders ran on torch's default threads and, under load, came out slower
than the server).

    python bench/bench_serve.py --clients 32 --per-client 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cli import main_guarded, nonnegative_int, positive_int  # noqa: E402
from servers import free_port, server  # noqa: E402

from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.dataset import Item  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions  # noqa: E402
from ttcl.runtime.tasks.arith import make_problems  # noqa: E402

PROGRAM = ROOT / "bench" / "programs" / "best_of_16.ttc"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=positive_int, default=32, help="concurrent client threads (and the in-process batch)")
    ap.add_argument("--per-client", type=positive_int, default=4, help="requests each client sends back to back")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the arith questions and of each request")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads of every contender (OMP_NUM_THREADS)")
    args = ap.parse_args()
    import torch
    from openai import OpenAI

    torch.set_num_threads(args.threads)

    total = args.clients * args.per_client
    questions = [p.question for p in make_problems(total, [2, 3, 4], args.seed)]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cmd = [sys.executable, "-m", "ttcl.cli", "serve", str(PROGRAM), "--port", str(port), "--device", "cpu"]
        with ExitStack() as started:
            try:
                proc = started.enter_context(server(cmd, port, Path(tmp) / "serve.log", timeout=300,
                                                    env={"OMP_NUM_THREADS": str(args.threads)}))
            except RuntimeError as e:  # its log's tail in one error, not a traceback (QA pass)
                raise TtclRuntimeError(f"`ttcl serve` did not start: {e}") from None
            url = f"http://127.0.0.1:{port}/v1"

            local = threading.local()
            batches: list[int] = []

            def one(k: int) -> float:
                if not hasattr(local, "client"):  # one client per client thread, reused
                    local.client = OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)
                t0 = time.perf_counter()
                r = local.client.chat.completions.create(model="best_of_16", seed=k,
                                                         messages=[{"role": "user", "content": questions[k]}])
                batches.append(r.usage.model_extra["ttcl"]["batch"])
                return time.perf_counter() - t0

            one(0)  # warm-up
            c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                lat = list(pool.map(one, range(total)))
            wall = time.perf_counter() - t0
            out["serve"] = {"requests": total, "wall_s": wall, "req_per_s": total / wall,
                            "p50_s": statistics.median(lat), "p99_s": pct(lat, 0.99),
                            "server_cpu_s": cpu_seconds(proc.pid) - c0, "mean_batch": statistics.mean(batches[1:])}
    runner = Runner(compile_program(PROGRAM), RunOptions(seed=args.seed, device="cpu"))
    runner.run([Item(index=0, question=questions[0], seed=0)])  # warm-up
    lat, t0, c0 = [], time.perf_counter(), time.process_time()
    for s in range(0, total, args.clients):
        b0 = time.perf_counter()
        runner.run([Item(index=k, question=questions[k], seed=k) for k in range(s, min(total, s + args.clients))])
        lat += [time.perf_counter() - b0] * min(args.clients, total - s)
    wall = time.perf_counter() - t0
    out["in_process_batched"] = {"requests": total, "wall_s": wall, "req_per_s": total / wall,
                                 "p50_s": statistics.median(lat), "p99_s": pct(lat, 0.99),
                                 "cpu_s": time.process_time() - c0}
    lat, t0, c0 = [], time.perf_counter(), time.process_time()
    for k in range(min(total, 32)):
        b0 = time.perf_counter()
        runner.run([Item(index=k, question=questions[k], seed=k)])
        lat.append(time.perf_counter() - b0)
    wall = time.perf_counter() - t0
    out["in_process_one_at_a_time"] = {"requests": len(lat), "wall_s": wall, "req_per_s": len(lat) / wall,
                                       "p50_s": statistics.median(lat), "p99_s": pct(lat, 0.99),
                                       "cpu_s": time.process_time() - c0}
    print(json.dumps({"program": str(PROGRAM.relative_to(ROOT)), "clients": args.clients,
                      "per_client": args.per_client, "seed": args.seed, "threads": args.threads,
                      "load_avg_1min": os.getloadavg()[0], "results": out}, indent=2))


if __name__ == "__main__":
    main_guarded(main)
