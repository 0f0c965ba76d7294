"""Does the C allocator's setting change how fast the zoo trains, or what it trains? Train the first
steps of zoo recipes in fresh processes, alternating glibc's default malloc with the setting that
`ttcl zoo train` gives its workers (`ttcl.zoo.build.ALLOCATOR_TUNABLES`: large blocks stay in the heap
instead of being mapped and unmapped on every step), and print each run's training seconds, system
seconds, and a digest of the trained weights, then the ratio of the medians side by side.

    python bench/zoo_malloc.py [--recipes expr-s:300,countdown-m:60,arith-s:400] [--rounds 2] [--concurrent 2]

Each run is one process on one thread, on the kernels the shipped model was trained with, one at a
time; `--concurrent 2` starts two identical processes at once instead (as `ttcl zoo train --jobs 2`
runs two workers) and reports their mean. The digests must agree between the two settings: the allocator moves memory, not arithmetic
(torch aligns every tensor to 64 bytes itself). Not a test; glibc (Linux) only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys

from cli import main_guarded, positive_int

CHILD = r"""
import hashlib, json, resource, sys, dataclasses
from ttcl.zoo import family
from ttcl.zoo.train import train_lm
name, steps = sys.argv[1], int(sys.argv[2])
r = dataclasses.replace(family.LM_RECIPES[name], train_steps=steps)
model, meta = train_lm(r, None, log=lambda s: None, log_every=0)
h = hashlib.sha256()
for k, v in sorted(model.state_dict().items()):
    h.update(k.encode()); h.update(v.detach().contiguous().numpy().tobytes())
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"train_s": meta["wall_seconds"], "sys_s": u.ru_stime, "digest": h.hexdigest()[:16]}))
"""


def run(name: str, steps: int, tuned: bool, concurrent: int = 1) -> dict:
    """`concurrent` identical processes at once; their mean seconds and (identical) digest."""
    from ttcl.zoo.build import ALLOCATOR_TUNABLES
    from ttcl.zoo.family import cpu_capability

    env = dict(os.environ, ATEN_CPU_CAPABILITY=cpu_capability(name).lower(), HF_HUB_OFFLINE="1")
    env.pop("GLIBC_TUNABLES", None)
    if tuned:
        env["GLIBC_TUNABLES"] = ALLOCATOR_TUNABLES
    procs: list[subprocess.Popen] = []
    got = []
    try:
        for _ in range(concurrent):  # each in its own session, stopped below however this ends (Ctrl-C, SIGTERM)
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD, name, str(steps)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        for p in procs:
            out, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(f"{name}: the training process failed:\n{err[-2000:]}")
            got.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
    if len({g["digest"] for g in got}) != 1:
        raise SystemExit(f"{name}: concurrent runs of one setting trained different weights")
    return {"train_s": statistics.mean(g["train_s"] for g in got), "sys_s": statistics.mean(g["sys_s"] for g in got),
            "digest": got[0]["digest"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="expr-s:300,countdown-m:60,arith-s:400",
                    help="NAME:STEPS,...: zoo recipes and the training steps to run of each")
    ap.add_argument("--rounds", type=positive_int, default=2, help="runs per setting and recipe, alternating")
    ap.add_argument("--concurrent", type=positive_int, default=1, help="identical processes per run, started at once")
    a = ap.parse_args()
    from ttcl.zoo.family import LM_RECIPES

    jobs = []
    for item in a.recipes.split(","):
        name, _, steps = item.strip().partition(":")
        if name not in LM_RECIPES:
            ap.error(f"--recipes: {name!r} is not a zoo recipe (ttcl.zoo.family.LM_RECIPES: {', '.join(sorted(LM_RECIPES))})")
        if not (steps.isdigit() and int(steps) > 0):
            ap.error(f"--recipes: {item.strip()!r}: expected NAME:STEPS, STEPS a positive number of training steps")
        jobs.append((name, steps))
    rows = []
    for name, steps in jobs:
        got: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(a.rounds):
            for tuned in (False, True):
                r = run(name, int(steps), tuned, a.concurrent)
                got[tuned].append(r)
                print(f"{name} {steps} steps, {'tuned  ' if tuned else 'default'}: {r['train_s']:.1f} s training, "
                      f"{r['sys_s']:.2f} s system, weights {r['digest']}", flush=True)
        d = statistics.median(r["train_s"] for r in got[False])
        t = statistics.median(r["train_s"] for r in got[True])
        same = len({r["digest"] for r in got[False] + got[True]}) == 1
        rows.append((name, steps, d, t, same))
    print(f"\n{a.concurrent} process(es) at once per run; medians of {a.rounds}")
    print("recipe      steps  default s  tuned s  default/tuned  same weights")
    for name, steps, d, t, same in rows:
        print(f"{name:<11} {steps:>5}  {d:9.1f}  {t:7.1f}  {d / t:13.2f}  {'yes' if same else 'NO'}")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    main_guarded(main)
