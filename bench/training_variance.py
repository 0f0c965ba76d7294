"""How much a zoo policy's greedy accuracy moves between training runs: retrain one recipe with
other seeds (initialisation and data order), then measure every run's greedy accuracy per
difficulty bin on the same held-out items, beside the shipped model's.

    python bench/training_variance.py --recipe expr-s --seeds 101,102 [--per-level 150] [--out DIR]

Each seed trains on one thread (the recipe's steps; expr-s takes about 11 minutes); run two
processes with one seed each to use two cores, then `--eval-only` to tabulate every run in DIR.
The intervals are over items (95% Wilson); the spread between seeds is what they leave out. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int  # noqa: E402

from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model, shipped_names  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="expr-s", help="the zoo recipe (a policy trained from scratch)")
    ap.add_argument("--seeds", default="", help="comma-separated training seeds to train (none: only evaluate)")
    ap.add_argument("--out", default="training-variance", help="where the retrained runs are written")
    ap.add_argument("--per-level", type=positive_int, default=150, help="held-out items per difficulty bin")
    ap.add_argument("--seed", type=nonnegative_int, default=T.EVAL_SEED, help="the held-out dataset seed")
    ap.add_argument("--eval-only", action="store_true", help="train nothing; evaluate the shipped model and DIR's runs")
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")] if a.seeds.strip() else []
    except ValueError:
        ap.error(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
    if len(set(seeds)) != len(seeds):
        ap.error(f"--seeds {a.seeds!r}: a seed is named twice")
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.family import LM_RECIPES
    from ttcl.zoo.train import train_lm, write_meta

    if a.recipe not in LM_RECIPES:
        ap.error(f"--recipe {a.recipe!r}: not a zoo recipe (ttcl.zoo.family.LM_RECIPES: {', '.join(sorted(LM_RECIPES))})")
    base = LM_RECIPES[a.recipe]
    if base.init_from or base.kind != "policy":
        ap.error(f"--recipe {a.recipe}: only policies trained from scratch are supported here")
    out = Path(a.out)
    if not a.eval_only:
        for s in seeds:
            r = replace(base, seed=s, name=f"{a.recipe}-seed{s}")
            _, meta = train_lm(r, out / r.name, log=print)
            write_meta(out / r.name, meta)
    # an experimental recipe has no shipped model: its runs are all in DIR (the recipe's own seed as DIR/NAME-seedS too)
    runs = [(f"{a.recipe} (shipped, seed {base.seed})", resolve_model(f"ttcl:{a.recipe}"))] if a.recipe in shipped_names() else []
    runs += sorted((p.name, p) for p in out.glob(f"{a.recipe}-seed*") if (p / "config.json").is_file())
    if not runs:
        ap.error(f"nothing to evaluate: {a.recipe} has no shipped model and {out} holds no {a.recipe}-seed* run")
    bed = T.BEDS[base.data.task]
    problems = bed.problems(a.per_level, seed=a.seed)
    bins = sorted({p.steps for p in problems})
    print(f"\ndataset: {bed.name} make_problems({len(problems)}, {bins[0]}..{bins[-1]}, seed={a.seed}); "
          f"greedy accuracy in %, 95% Wilson intervals over items\n")
    print("| run | final loss | " + " | ".join(str(b) for b in bins) + " |")
    print("|" + "---|" * (2 + len(bins)))
    table = {}
    for name, path in runs:
        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        meta = json.loads((path / "ttcl_meta.json").read_text()) if (path / "ttcl_meta.json").is_file() else {}
        items = T.run_policy(model, AutoTokenizer.from_pretrained(str(path)), problems, k=0, seed=a.seed,
                             style=T.chain_style(meta))
        cells = []
        for b in bins:
            got = [bed.checker.outcome(it.problem.question, it.greedy) for it in items if it.problem.steps == b]
            k, n = int(sum(got)), len(got)
            lo, hi = T.wilson(k, n)
            cells.append(f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
            table.setdefault(name, {})[b] = k / n
        print(f"| {name} | {meta.get('final_loss', float('nan')):.3f} | " + " | ".join(cells) + " |")
    spread = {b: max(t[b] for t in table.values()) - min(t[b] for t in table.values()) for b in bins}
    print("\nspread between runs (max - min), points: "
          + ", ".join(f"{b}: {100 * v:.1f}" for b, v in spread.items()))
    return 0


if __name__ == "__main__":
    main_guarded(main)
