"""Gate (a), maj@k - greedy, on several evaluation sets at once: each seed's own paired difference
per difficulty bin, and the difference pooled over every item of every seed (items of different
seeds are independent draws, so the pooled interval is a paired bootstrap over all of them).

    python bench/gate_a_replication.py --policy ttcl:expr-s --seeds 777001,20261203,20261204

One evaluation set of 150 items per bin decides a 5-point effect only now and then; this shows
whether a gate that is met (or missed) on one set is met on the others, and what the effect is
once the sets are pooled. Every seed named is reported, in the order given. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, positive_int, temperature  # noqa: E402

from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402


def _diff(xs: list[float], seed: int) -> str:
    d, lo, hi = T.mean_ci(xs, seed=seed)
    met = " met" if lo > 0 else ""
    return f"{100 * d:+.1f} [{100 * lo:.1f}, {100 * hi:.1f}]{met}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="expr", choices=sorted(T.BEDS))
    ap.add_argument("--policy", default="ttcl:expr-s", help="ttcl:NAME or a model directory")
    ap.add_argument("--seeds", required=True, help="comma-separated evaluation-set seeds, each named once")
    ap.add_argument("--per-level", type=positive_int, default=150, help="items per difficulty bin and seed")
    ap.add_argument("--k", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--temperature", type=temperature, default=0.7, help="sampling temperature")
    a = ap.parse_args()
    try:
        seeds = T.seed_list(a.seeds)
    except ValueError as e:
        ap.error(f"--seeds: {e}")
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bed = T.BEDS[a.task]
    pdir = resolve_model(a.policy)
    style = T.chain_style(json.loads((pdir / "ttcl_meta.json").read_text()))
    model = AutoModelForCausalLM.from_pretrained(str(pdir), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(pdir), local_files_only=True)
    # per seed, per bin: the paired (maj - greedy) differences and the greedy results
    diffs: dict[int, dict[int, list[float]]] = {}
    greedy: dict[int, dict[int, list[bool]]] = {}
    for s in seeds:
        t0 = time.time()
        items = T.run_policy(model, tok, bed.problems(a.per_level, seed=s), k=a.k,
                             temperature=a.temperature, seed=s, style=style)
        print(f"[seed {s}: {len(items)} items x {a.k} in {time.time() - t0:.0f}s]", file=sys.stderr)
        for st, its in T.by_steps(items).items():
            g = [T.greedy_right(x) for x in its]
            m = [T.method_right(x, "maj", a.k) for x in its]
            diffs.setdefault(s, {})[st] = [float(x) - float(y) for x, y in zip(m, g, strict=True)]
            greedy.setdefault(s, {})[st] = g
    bins = sorted({st for d in diffs.values() for st in d})
    print(f"gate (a): maj@{a.k} - greedy of {a.policy} (chain style {style}), {a.k} samples at "
          f"T={a.temperature}; {a.task} BEDS[{a.task!r}].problems({a.per_level}, seed=S) for each seed S; "
          "in points, paired, 95% bootstrap intervals over items; met = interval above 0\n")
    print("| steps | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled | pooled greedy |")
    print("|---|" + "---|" * (len(seeds) + 2))
    for st in bins:
        cells = [_diff(diffs[s][st], s + st) for s in seeds]
        pooled = [x for s in seeds for x in diffs[s][st]]
        g = [x for s in seeds for x in greedy[s][st]]
        lo, hi = T.wilson(sum(g), len(g))
        cells += [_diff(pooled, st), f"{100 * sum(g) / len(g):.1f} [{100 * lo:.1f}, {100 * hi:.1f}] (n={len(g)})"]
        print(f"| {st} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    main_guarded(main)
