"""Benchmark: the same strategy on the local backend and on a vLLM server, same bundled model.

Best-of-16 by majority vote (bench/programs/best_of_16.ttc) over 64 arith
items (`make_problems(64, [2, 3, 4], seed)`), with policy = arith-m:
  local     the in-process transformers backend (one batched call per step)
  vllm      the endpoint backend on vLLM, --schedule stream (items advance on their own)
  vllm-ls   the same, --schedule lockstep (every step waits for the slowest request)
Contenders alternate; the median wall time of --repeats runs is reported with
accuracy and the ledger's totals. A second job measures stream against
lockstep where it matters, multi-step strategies over --beam-items items:
programs/adaptive.ttc (every call on vLLM) and programs/beam_search.ttc
(policy on vLLM, its PRM local). vLLM is started here from --vllm-python
(killed at the end), or an already running one is given with --vllm-url.

    python bench/bench_endpoint.py --vllm-python /path/to/vllm-venv/bin/python --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cli import main_guarded, nonnegative_int, positive_int  # noqa: E402
from servers import ZOO, free_port, server  # noqa: E402

from ttcl.compiler.pipeline import compile_program  # noqa: E402
from ttcl.errors import TtclRuntimeError  # noqa: E402
from ttcl.runtime.dataset import load_dataset  # noqa: E402
from ttcl.runtime.runner import Runner, RunOptions  # noqa: E402
from ttcl.runtime.tasks.arith import iter_jsonl, make_problems  # noqa: E402

PROGRAM = ROOT / "bench" / "programs" / "best_of_16.ttc"
MODEL = ZOO / "arith-m"


def vllm_cmd(py: str, port: int) -> list[str]:
    return [py, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL), "--host", "127.0.0.1", "--port",
            str(port), "--dtype", "float32", "--enable-prompt-tokens-details", "--no-enable-chunked-prefill",
            "--no-async-scheduling"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vllm-url", help="a running vLLM serving ttcl/zoo/models/arith-m (http://127.0.0.1:PORT/v1)")
    ap.add_argument("--vllm-python", help="start vLLM with this interpreter instead")
    ap.add_argument("--items", type=positive_int, default=64, help="arith items of the best-of-16 job")
    ap.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the items and of the runs")
    ap.add_argument("--repeats", type=positive_int, default=3, help="timed runs per contender (the median is printed)")
    ap.add_argument("--beam-items", type=positive_int, default=32,
                    help="items of the multi-step job (adaptive, beam_search); at most --items")
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads of the local contender (OMP_NUM_THREADS)")
    args = ap.parse_args()
    if args.vllm_url is None and not args.vllm_python:
        ap.error("give --vllm-url or --vllm-python")
    if args.vllm_url is None and not (os.path.isfile(args.vllm_python) and os.access(args.vllm_python, os.X_OK)):
        ap.error(f"--vllm-python {args.vllm_python}: not an executable file")
    import torch

    torch.set_num_threads(args.threads)  # as BENCHMARKS.md's set-up, and the server's OMP_NUM_THREADS (QA pass)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        url = args.vllm_url
        if url is None:
            port = free_port()
            try:
                stack.enter_context(server(vllm_cmd(args.vllm_python, port), port, Path(tmp) / "vllm.log", timeout=900,
                                           env={"VLLM_CPU_KVCACHE_SPACE": "1"}))
            except RuntimeError as e:  # it exited (no vllm in that interpreter?) or never answered: its log's tail
                raise TtclRuntimeError(f"vLLM from --vllm-python {args.vllm_python} did not start: {e}") from None
            url = f"http://127.0.0.1:{port}/v1"
        url = url.rstrip("/") + f"?model={MODEL}&engine=vllm"
        data = Path(tmp) / "arith.jsonl"
        data.write_text("".join(line + "\n" for line in iter_jsonl(make_problems(args.items, [2, 3, 4], args.seed))))
        items = load_dataset(data)
        contenders = {"local": (str(MODEL), "lockstep"), "vllm": (url, "stream"), "vllm-ls": (url, "lockstep")}
        runners = {}
        for name, (ref, mode) in contenders.items():
            compiled = compile_program(PROGRAM, model_overrides={"policy": ref})
            runners[name] = Runner(compiled, RunOptions(seed=args.seed, device="cpu", schedule=mode))
            runners[name].run(items[:2])  # warm-up (model load, server compile)
        walls: dict[str, list[float]] = {k: [] for k in runners}
        last = {}
        for _ in range(args.repeats):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                last[name] = runner.run(items)
                walls[name].append(time.perf_counter() - t0)
        beam_items = items[: args.beam_items]
        multi = {}
        for prog in ("adaptive", "beam_search"):
            for mode in ("stream", "lockstep"):
                compiled = compile_program(ROOT / "programs" / f"{prog}.ttc", model_overrides={"policy": url})
                multi[f"{prog}-{mode}"] = Runner(compiled, RunOptions(seed=args.seed, device="cpu", schedule=mode))
                multi[f"{prog}-{mode}"].run(beam_items[:2])
        for name in multi:
            walls[name] = []
        for _ in range(args.repeats):
            for name, runner in multi.items():
                t0 = time.perf_counter()
                last[name] = runner.run(beam_items)
                walls[name].append(time.perf_counter() - t0)
        out = {}
        for name in [*runners, *multi]:
            s = last[name]
            out[name] = {"wall_median_s": statistics.median(walls[name]), "walls": walls[name],
                         "accuracy": s.accuracy, "correct": s.correct, "items": s.items, "failed": s.failed,
                         "prompt_tokens": s.actual_total["prompt_tokens"], "gen_tokens": s.actual_total["gen_tokens"],
                         "calls": s.actual_total["calls"]}
        print(json.dumps({"program": str(PROGRAM.relative_to(ROOT)), "model": "arith-m", "items": args.items,
                          "seed": args.seed, "repeats": args.repeats, "results": out}, indent=2))


if __name__ == "__main__":
    main_guarded(main)
