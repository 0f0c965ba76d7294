"""The headline table of the bundled family: accuracy by model, difficulty and method.

    python bench/zoo_table.py [--per-level 50] [--models arith-s,arith-m,arith-l,arith-revise,arith-direct]

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
from cli import main_guarded, positive_int  # noqa: E402

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
    ap.add_argument("--per-level", type=positive_int, default=50, help="problems per difficulty level")
    ap.add_argument("--models", default="arith-s,arith-m,arith-l,arith-revise,arith-direct",
                    help="bundled policies (names without ttcl:), comma-separated")
    ap.add_argument("--verifiers", default="orm,prm", help="any of orm, prm, comma-separated ('' for none)")
    ap.add_argument("--revise-sources", default="arith-s,arith-m,arith-revise",
                    help="policies whose greedy attempts arith-revise revises ('' to skip)")
    args = ap.parse_args()
    verifiers = [v for v in args.verifiers.split(",") if v]
    if set(verifiers) - {"orm", "prm"}:
        ap.error(f"--verifiers {args.verifiers!r}: expected any of orm, prm")
    for name in dict.fromkeys([*args.models.split(","), *(args.revise_sources.split(",") if args.revise_sources else [])]):
        resolve_model(f"ttcl:{name}")  # an unknown name: one line (main_guarded) before any table is begun
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    k = max(NS)
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
    if args.revise_sources:
        revision_table(args.per_level, args.revise_sources.split(","))


def _pick(d: dict[object, list[float]], steps: object) -> list[float]:
    return [x for v in d.values() for x in v] if steps == "all" else d[steps]


def revision_table(per_level: int, sources: list[str]) -> None:
    """Greedy accuracy of each source policy's greedy attempt, before and after one greedy
    revision by ttcl:arith-revise (prompt from its meta's `revise_template`), next to
    arith-revise solving from scratch."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.runtime.tasks.arith import checker
    from ttcl.zoo.evaluate import max_new_tokens
    from ttcl.zoo.sampling import generate

    path = resolve_model("ttcl:arith-revise")
    template = model_card("ttcl:arith-revise")["revise_template"]
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    own = policy_records("arith-revise", per_level, 16)
    print()
    print("| attempt by | steps | attempt greedy | after 1 revision | arith-revise from scratch |")
    print("|---|---|---|---|---|")
    for src in sources:
        recs = own if src == "arith-revise" else policy_records(src, per_level, 16)
        before: dict[object, list[float]] = {}
        after: dict[object, list[float]] = {}
        scratch: dict[object, list[float]] = {}
        for steps, rs in by_level(recs).items():
            prompts = [template.format(question=r.problem.question, attempt=(r.greedy or "").strip()) for r in rs]
            outs = generate(model, tok, prompts, max_new_tokens=max_new_tokens(steps), batch_size=256)
            before[steps] = [checker.outcome(r.problem.question, r.greedy or "") for r in rs]
            after[steps] = [checker.outcome(r.problem.question, o[0]) for r, o in zip(rs, outs, strict=True)]
            scratch[steps] = [checker.outcome(o.problem.question, o.greedy or "") for o in by_level(own)[steps]]
        for steps in [*before, "all"]:
            b, a, c = (_pick(d, steps) for d in (before, after, scratch))
            print(f"| {src} | {steps} | {100 * sum(b) / len(b):.1f} | {100 * sum(a) / len(a):.1f} | "
                  f"{100 * sum(c) / len(c):.1f} |", flush=True)


if __name__ == "__main__":
    main_guarded(main)
