"""A policy family side by side: greedy accuracy per difficulty bin for each size on the same items,
with 95% Wilson intervals, and each size against the next smaller one as a paired difference
(percentile bootstrap over items). Does "a bigger model" mean a better one at every step of the family?

    python bench/testbed_sizes.py --task expr --policies ttcl:expr-s,ttcl:expr-m,DIR/expr-l-grown \
        [--per-level 150] [--seed 555] [--json out.json]

`--policies` lists the family from the smallest up (`ttcl:NAME` or a `ttcl zoo train --out` directory);
each row also gives the size's parameters and its training FLOPs (6·N·D, including those of the model
it was grown or trained on from, if any). The seed names the dataset: items are `ttcl.zoo.testbed.BEDS[task].problems(per_level,
seed)`. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int  # noqa: E402

from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR, resolve_model  # noqa: E402


def _path(ref: str) -> Path:
    return resolve_model(ref) if ref.startswith("ttcl:") else Path(ref)


def _flops_with_init(meta: dict, path: Path) -> float | None:
    """Training FLOPs including the model it started from (`init_from`, looked up beside it or among
    the shipped models), so that a model trained on from another counts that one's training too."""
    if "training_flops_with_init" in meta or not meta.get("init_from"):
        return meta.get("training_flops_with_init", meta.get("training_flops"))
    for d in (path.parent / meta["init_from"], MODELS_DIR / meta["init_from"]):
        if (d / "ttcl_meta.json").is_file():
            src = json.loads((d / "ttcl_meta.json").read_text())
            return meta["training_flops"] + (_flops_with_init(src, d) or 0.0)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(T.BEDS), default="expr")
    ap.add_argument("--policies", required=True, help="comma-separated, smallest first")
    ap.add_argument("--per-level", type=positive_int, default=150, help="items per difficulty bin")
    ap.add_argument("--seed", type=nonnegative_int, default=555, help="the dataset seed (555 is the dev seed)")
    ap.add_argument("--json", help="write the per-item greedy outcomes and the table here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refs = [r.strip() for r in a.policies.split(",") if r.strip()]
    if not refs:
        ap.error("--policies: name at least one policy")
    for ref in refs:
        if not (_path(ref) / "config.json").is_file():
            ap.error(f"--policies: {ref!r} is not a model directory (no config.json)")
    bed = T.BEDS[a.task]
    problems = bed.problems(a.per_level, seed=a.seed)
    bins = sorted({p.steps for p in problems})
    right: dict[str, list[float]] = {}
    metas: dict[str, dict] = {}
    for ref in refs:
        path = _path(ref)
        t0 = time.time()
        meta = json.loads((path / "ttcl_meta.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        items = T.run_policy(model, AutoTokenizer.from_pretrained(str(path)), problems, k=0, seed=a.seed,
                             style=T.chain_style(meta))
        right[ref] = [float(bed.checker.outcome(it.problem.question, it.greedy)) for it in items]
        metas[ref] = meta
        print(f"[{ref}] {len(items)} greedy decodes in {time.time() - t0:.0f} s", file=sys.stderr)
    idx = {b: [i for i, p in enumerate(problems) if p.steps == b] for b in bins}
    print(f"\ndataset: {bed.name}, {a.per_level} items per bin, seed={a.seed}; greedy accuracy in % "
          f"(95% Wilson intervals); differences in points against the next smaller size (paired bootstrap)\n")
    print("| policy | params | training FLOPs | " + " | ".join(str(b) for b in bins) + " |")
    print("|" + "---|" * (3 + len(bins)))
    table: dict[str, dict] = {}
    for j, ref in enumerate(refs):
        m = metas[ref]
        flops = _flops_with_init(m, _path(ref))
        cells, diffs = [], []
        for b in bins:
            got = [right[ref][i] for i in idx[b]]
            lo, hi = T.wilson(sum(got), len(got))
            cells.append(f"{T.pct(sum(got) / len(got))} [{T.pct(lo)}, {T.pct(hi)}]")
            table.setdefault(ref, {})[b] = {"greedy": sum(got) / len(got), "ci": [lo, hi]}
            if j:
                d = [right[ref][i] - right[refs[j - 1]][i] for i in idx[b]]
                mean, dlo, dhi = T.mean_ci(d, seed=a.seed + b)
                diffs.append(f"{100 * mean:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}]")
                table[ref][b]["minus_smaller"] = [mean, dlo, dhi]
        print(f"| {ref} | {m.get('params_total', 0):,} | {'?' if flops is None else f'{flops:.3g}'} | "
              + " | ".join(cells) + " |")
        if j:
            print(f"| - {refs[j - 1]} | | | " + " | ".join(diffs) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps({"task": a.task, "seed": a.seed, "per_level": a.per_level, "bins": bins,
                                            "policies": refs, "table": {r: {str(b): v for b, v in t.items()}
                                                                        for r, t in table.items()},
                                            "steps": [p.steps for p in problems], "right": right}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    main_guarded(main)
