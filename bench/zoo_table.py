"""The headline table of the bundled family: accuracy by model, difficulty and method.

    python bench/zoo_table.py [--per-level 50] [--models arith-s,arith-m,arith-l,arith-direct]

Methods, from 16 samples per problem at T=0.8 (n < 16 averages the 16/n disjoint groups):
greedy; maj@n (majority vote over extracted answers); orm@n (votes weighted by
ttcl:arith-orm's score); prm@n (votes weighted by ttcl:arith-prm's min step score);
pass@n (oracle: any sample right). Reuses the card samples in the zoo cache when they
match; otherwise samples afresh (a few minutes on 2 cores). Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ttcl.zoo.cards import _cache_path, load_records, save_records  # noqa: E402
from ttcl.zoo.evaluate import Record, by_level, eval_problems, greedy_acc, mean_metric, run_policy  # noqa: E402
from ttcl.zoo.registry import model_card, resolve_model  # noqa: E402

NS = (1, 4, 16)


def policy_records(name: str, per_level: int, k: int) -> list[Record]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(f"ttcl:{name}")
    problems = eval_problems(per_level)
    cache = _cache_path(path, name)
    if cache.is_file():
        recs = load_records(cache)
        if [r.problem for r in recs] == problems and len(recs[0].samples) >= k:
            return recs
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    recs = run_policy(model, tok, problems, k=k, temperature=0.8)
    save_records(recs, cache)
    print(f"# sampled {name} in {time.time() - t0:.0f}s", file=sys.stderr)
    return recs


def score(recs: list[Record], kind: str) -> list[list[float]]:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from ttcl.zoo.sampling import score_sequences, score_steps

    path = resolve_model(f"ttcl:arith-{kind}")
    tok = AutoTokenizer.from_pretrained(str(path))
    qs = [r.problem.question for r in recs for _ in r.samples]
    cs = [c for r in recs for c in r.samples]
    if kind == "orm":
        model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        flat = score_sequences(model, tok, [q + "\n" + c for q, c in zip(qs, cs, strict=True)])
    else:
        model = AutoModelForTokenClassification.from_pretrained(str(path)).eval()
        flat = [min(s) if s else 0.0 for s in score_steps(model, tok, [q + "\n" for q in qs], cs)]
    out, i = [], 0
    for r in recs:
        out.append(flat[i : i + len(r.samples)])
        i += len(r.samples)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-level", type=int, default=50)
    ap.add_argument("--models", default="arith-s,arith-m,arith-l,arith-direct")
    ap.add_argument("--verifiers", default="orm,prm")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    k = max(NS)
    verifiers = [v for v in args.verifiers.split(",") if v]
    cols = ["greedy"] + [f"{m}@{n}" for m in ("maj", *verifiers, "pass") for n in NS]
    print("| model | params | steps | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for name in args.models.split(","):
        recs = policy_records(name, args.per_level, k)
        scores = {v: score(recs, v) for v in verifiers}
        params = model_card(f"ttcl:{name}")["params_total"]
        levels = by_level(recs)
        idx = {id(r): i for i, r in enumerate(recs)}
        for steps, rs in [*levels.items(), ("all", recs)]:
            row = [f"{100 * greedy_acc(rs):.1f}"]
            for method in ("maj", *verifiers, "pass"):
                for n in NS:
                    if method in verifiers:
                        for r in rs:
                            r.scores = scores[method][idx[id(r)]]
                        row.append(f"{100 * mean_metric(rs, n, 'weighted'):.1f}")
                    else:
                        row.append(f"{100 * mean_metric(rs, n, method):.1f}")
            print(f"| {name} | {params / 1e3:.0f}k | {steps} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
