"""Testbed v2 gates on the `expr` or `countdown` task, per difficulty bin, on held-out items, with
95% intervals.

    python bench/testbed_gates.py --policy ttcl:expr-s --verifier ttcl:expr-prm \
        [--large ttcl:expr-m] [--per-level 150] [--seed 777001] [--k 16] [--json out.json]
    python bench/testbed_gates.py --task countdown ... --seed 777001,20261203,20261204
    python bench/testbed_gates.py --task countdown --policy ttcl:countdown-s \
        --verifier ttcl:countdown-prm --large ttcl:countdown-l
    python bench/testbed_gates.py --policy ttcl:expr-s --verifier ttcl:expr-m --likelihood
    python bench/testbed_gates.py --pair A.json B.json    # two verifiers' within-question AUROC, paired

Per bin (number of operations): the question-blind guesser's pass@64 bound;
greedy, maj@k, verifier-weighted@k, verifier-best@k, pass@k and strict@k
(Wilson intervals); the verifier's pooled and within-question AUROC (also against strict
labels: a right answer after a broken derivation counts as wrong); the mean
number of distinct strictly-right chains among the k samples; and the gates
of issue 7 as paired differences with percentile-bootstrap intervals:

  (a) maj@k - greedy of the policy;
  (b) weighted@k - maj@k;
  (c) the policy plus the verifier at the smallest n whose weighted@n reaches
      the large policy's greedy accuracy, and the FLOPs of both per item
      (policy sampling with a shared prefill plus one verifier pass per sample,
      against one greedy decode of the large model).

Samples at T=0.7 (`--temperature`; chosen on the dev seed 555). The seed names the dataset: items are
`ttcl.zoo.testbed.BEDS[task].problems(per_level, seed)` (expr: 2..8 operations; countdown:
2..5 combinations). Several comma-separated seeds pool their items into one table (each set
sampled with its own seed), so a gate's interval covers all of them. The guesser's reference
answers (expr only: a countdown answer is an expression over the question's own numbers) come
from the first seed + 1. Not a test.
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

from ttcl.runtime.tasks.expr import guess_pass_bound, make_problems  # noqa: E402
from ttcl.runtime.verifier_gen import GenerativeStepVerifier, is_generative, likelihood_verifier  # noqa: E402
from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402


def _meta(path) -> dict:
    return json.loads((path / "ttcl_meta.json").read_text())


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{T.pct(v)} [{T.pct(lo)}, {T.pct(hi)}]"


def _prop(vals: list[float]) -> str:
    n = len(vals)
    s = sum(vals)
    lo, hi = T.wilson(s, n)
    return _ci(s / n, lo, hi)


def _diff(a: list[float], b: list[float], seed: int) -> tuple[float, float, float]:
    return T.mean_ci([x - y for x, y in zip(a, b, strict=True)], seed=seed)


def main() -> int:
    if sys.argv[1:2] == ["--pair"]:
        if len(sys.argv) != 4:
            print("usage: testbed_gates.py --pair A.json B.json", file=sys.stderr)
            return 2
        return pair(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="expr", choices=sorted(T.BEDS))
    ap.add_argument("--policy", default="ttcl:expr-s", help="ttcl:NAME or a model directory")
    ap.add_argument("--verifier", default="ttcl:expr-prm", help="the PRM (or, with --likelihood, any causal LM)")
    ap.add_argument("--large", default=None, help="the large policy of gate (c)")
    ap.add_argument("--per-level", type=positive_int, default=150, help="items per difficulty bin and seed")
    ap.add_argument("--seed", default=str(T.EVAL_SEED), help="the evaluation set's seed, or several, comma-separated, each named once, pooled")
    ap.add_argument("--k", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--temperature", type=temperature, default=0.7, help="sampling temperature")
    ap.add_argument("--json", default=None, help="write the per-bin figures here")
    ap.add_argument("--guess-reference", type=positive_int, default=20000, metavar="N",
                    help="reference answers per bin for the question-blind guesser's bound (expr; default 20000)")
    ap.add_argument("--likelihood", action="store_true",
                    help="score with likelihood(VERIFIER): the verifier is any causal LM, and a sample's "
                         "score is its probability of the sample's lines")
    a = ap.parse_args()
    try:
        seeds = T.seed_list(a.seed)
    except ValueError as e:
        ap.error(f"--seed: {e}")
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    from ttcl.zoo.data import build_tokenizer
    from ttcl.zoo.sampling import score_steps

    a.seed = seeds[0]  # the guesser's reference answers and the bootstrap draws
    bed = T.BEDS[a.task]
    pdir = resolve_model(a.policy)
    for ref in (a.verifier, a.large):  # a bad reference is said now, not after the policy's sampling
        if ref is not None:
            resolve_model(ref)
    pmeta = _meta(pdir)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(pdir)).eval()
    ptok = AutoTokenizer.from_pretrained(str(pdir))
    style = T.chain_style(pmeta)
    problems, items = T.run_sets(model, ptok, bed, seeds, a.per_level, k=a.k, temperature=a.temperature, style=style)
    print(f"[sampled {a.policy}: {len(items)} items x {a.k} in {time.time() - t0:.0f}s]", file=sys.stderr)
    vdir = resolve_model(a.verifier)
    vmeta = _meta(vdir)
    ver_flops: dict[int, float] = {}  # per sample, by item, when the verifier reports what it spent
    kind = "likelihood" if a.likelihood else "generative step checker" if is_generative(vmeta) else "PRM"
    if kind != "PRM":  # through the runtime's `likelihood(...)` or `prm(...)` scorer
        if a.likelihood:
            gv = likelihood_verifier(str(vdir), device="cpu", dtype="float32")
        else:
            gv = GenerativeStepVerifier(str(vdir), device="cpu", dtype="float32")
        steps = []
        for it in items:
            _, s, u = gv.score_steps([(it.problem.question, c) for c in it.samples])
            steps += s
            ver_flops[id(it)] = u.flops / max(1, len(it.samples))
    else:
        vmodel = AutoModelForTokenClassification.from_pretrained(str(vdir)).eval()
        vtok = build_tokenizer(vmodel.config.n_positions, padding_side="right")
        steps = score_steps(vmodel, vtok, [it.problem.prompt for it in items for _ in it.samples],
                            [c for it in items for c in it.samples])
    flat = [s[-1] if s else 0.0 for s in steps]
    for i, it in enumerate(items):
        it.scores = flat[i * a.k : (i + 1) * a.k]
    large: dict[int, list[float]] = {}
    large_flops: dict[int, float] = {}
    if a.large:
        ldir = resolve_model(a.large)
        lmeta = _meta(ldir)
        lmodel = AutoModelForCausalLM.from_pretrained(str(ldir)).eval()
        litems = T.run_policy(lmodel, AutoTokenizer.from_pretrained(str(ldir)), problems, k=0,
                              style=T.chain_style(lmeta))
        for st, its in T.by_steps(litems).items():
            large[st] = [T.greedy_right(x) for x in its]
            large_flops[st] = sum(T.policy_flops(lmeta, x.problem.prompt, [x.greedy]) for x in its) / len(its)
    k = a.k
    out: dict = {"seed": seeds if len(seeds) > 1 else a.seed, "policy": a.policy, "verifier": a.verifier, "large": a.large, "k": k,
                 "temperature": a.temperature, "per_level": a.per_level, "bins": []}
    sets = T.sets_label(seeds)
    print(f"dataset: {a.task} make_problems({a.per_level * len(bed.steps)}, {bed.steps[0]}..{bed.steps[-1]}, "
          f"{sets}); policy {a.policy} "
          f"({pmeta['params_total']:,} params), verifier {a.verifier} ({vmeta['params_total']:,} params, "
          f"{kind} last-step score); {k} samples at T={a.temperature}; 95% intervals\n")
    print(f"| steps | guess pass@64 bound | greedy | maj@{k} | weighted@{k} | best@{k} | pass@{k} | strict@{k} | "
          f"pooled AUROC | within-q AUROC (questions) | within-q AUROC, strict labels (questions) | "
          f"distinct correct chains / {k} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    gates = []
    for st, its in T.by_steps(items).items():
        guess = guess_pass_bound(make_problems(a.guess_reference, st, a.seed + 1), 64) if a.task == "expr" else float("nan")
        g = [T.greedy_right(x) for x in its]
        maj = [T.method_right(x, "maj", k) for x in its]
        wtd = [T.method_right(x, "weighted", k) for x in its]
        best = [T.method_right(x, "best", k) for x in its]
        pas = [T.method_right(x, "pass", k) for x in its]
        strict = [T.method_right(x, "strict", k) for x in its]
        wq, nq = T.within_question_auroc(its)
        wqs, nqs = T.within_question_auroc(its, strict=True)
        chains = sum(T.distinct_correct_chains(x) for x in its) / len(its)
        print(f"| {st} | {T.pct(guess) if guess == guess else '-'} | {_prop(g)} | {_prop(maj)} | {_prop(wtd)} | {_prop(best)} | {_prop(pas)} | "
              f"{_prop(strict)} | {T.pooled_auroc(its):.3f} | {wq:.3f} ({nq}) | {wqs:.3f} ({nqs}) | {chains:.2f} |")
        ga = _diff(maj, g, a.seed + st)
        gb = _diff(wtd, maj, a.seed + st)
        row = {"steps": st, "n": len(its), "guess_pass64_bound": guess, "greedy": sum(g) / len(g),
               f"maj@{k}": sum(maj) / len(maj), f"weighted@{k}": sum(wtd) / len(wtd), f"best@{k}": sum(best) / len(best),
               f"pass@{k}": sum(pas) / len(pas), f"strict@{k}": sum(strict) / len(strict),
               "pooled_auroc": T.pooled_auroc(its), "within_auroc": wq, "within_questions": nq,
               "within_auroc_strict": wqs, "within_questions_strict": nqs,
               "distinct_correct_chains": chains, "gate_a": ga, "gate_b": gb}
        if st in large:
            # the prompt's prefill is paid once however many samples are drawn; each sample pays its own decode
            prefill = sum(T.policy_flops(pmeta, x.problem.prompt, []) for x in its) / len(its)
            pol_sample = (sum(T.policy_flops(pmeta, x.problem.prompt, x.samples) for x in its) / len(its) - prefill) / k
            if ver_flops:
                ver_sample = sum(ver_flops[id(x)] for x in its) / len(its)
            else:
                ver_sample = sum(T.verifier_flops(vmeta, x.problem.question, x.samples) for x in its) / (len(its) * k)
            target = sum(large[st]) / len(large[st])
            # every n, so that a reading at an n fixed in advance is in the JSON; the table takes the
            # smallest n whose weighted@n reaches the large policy's greedy accuracy
            by_n = {}
            for n in (n for n in (1, 2, 4, 8, 16) if n <= k):
                w = [T.method_right(x, "weighted", n) for x in its]
                by_n[n] = {"weighted": sum(w) / len(w), "diff": _diff(w, large[st], a.seed + st),
                           "small_flops": prefill + n * (pol_sample + ver_sample)}
            gc = {"large_greedy": target, "large_greedy_ci": T.wilson(sum(large[st]), len(large[st])),
                  "large_flops": large_flops[st], "by_n": {str(n): v for n, v in by_n.items()}}
            reach = next((n for n, v in by_n.items() if v["weighted"] >= target), None)
            if reach is not None:
                gc |= {"n": reach} | by_n[reach]
            for n in (1, 2, 4, 8, 16):  # for reference: the exact checker (a program, no FLOPs) as the selector
                if n <= k and sum(T.method_right(x, "pass", n) for x in its) / len(its) >= target:
                    gc["checker"] = {"n": n, "pass": sum(T.method_right(x, "pass", n) for x in its) / len(its),
                                     "small_flops": prefill + n * pol_sample}
                    break
            row["gate_c"] = gc
        gates.append(row)
        out["bins"].append(row)
    print("\ngates (paired differences, 95% bootstrap intervals over items; met = interval above 0):\n")
    print(f"| steps | (a) maj@{k} - greedy | (b) weighted@{k} - maj@{k} | (c) small+verifier vs large greedy | "
          "for reference: small + exact checker |")
    print("|---|---|---|---|---|")
    for r in gates:
        ga, gb = r["gate_a"], r["gate_b"]
        c = r.get("gate_c")
        if c is None:
            ctext = "not measured (no --large)"
        elif "n" not in c:
            ctext = (f"missed: weighted@n < large greedy {T.pct(c['large_greedy'])} for every n <= {k}")
        else:
            d = c["diff"]
            cheaper = c["small_flops"] <= c["large_flops"]
            verdict = ("missed (more FLOPs)" if not cheaper else "met (interval above 0)" if d[1] > 0
                       else "reached at the point estimate only (the interval holds 0)")
            ctext = (f"weighted@{c['n']} {T.pct(c['weighted'])} vs large greedy {T.pct(c['large_greedy'])} "
                     f"(diff {_ci(*d)}); FLOPs {c['small_flops']:.3g} vs {c['large_flops']:.3g}: {verdict}; n is "
                     "the smallest whose estimate reaches, chosen on these items (the JSON keeps every n, to read "
                     "one fixed in advance)")
            if c["large_greedy"] < 0.05:
                ctext += " (uninformative: the large policy's greedy is below 5%)"
        ref = "-"
        if c is not None and "checker" in c:
            x = c["checker"]
            ref = (f"pass@{x['n']} {T.pct(x['pass'])}, FLOPs {x['small_flops']:.3g} vs {c['large_flops']:.3g}")
        elif c is not None:
            ref = f"pass@n < large greedy for every n <= {k}"
        print(f"| {r['steps']} | {_ci(*ga)}{' met' if ga[1] > 0 else ''} | {_ci(*gb)}{' met' if gb[1] > 0 else ''} "
              f"| {ctext} | {ref} |")
    mid = [x for x in items if x.problem.steps in bed.middle]
    per_q = dict(T.within_question_aurocs(mid))
    m, lo, hi = T.mean_ci(list(per_q.values()), seed=a.seed)
    print(f"\nwithin-question AUROC at the middle difficulties ({bed.middle[0]}..{bed.middle[-1]}): {m:.3f} "
          f"[{lo:.3f}, {hi:.3f}] over {len(per_q)} questions with both right and wrong samples "
          "(95% bootstrap interval over questions)")
    out["within_auroc_middle"] = {"value": m, "ci": [lo, hi], "questions": len(per_q), "by_question": per_q}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def pair(paths: list[str]) -> int:
    """`--pair A.json B.json`: the within-question AUROC at the middle difficulties of two runs'
    verifiers on the same samples (the same --policy, --seed, --per-level, --k, --temperature),
    paired over the questions where both samples had right and wrong ones: B - A with a 95%
    bootstrap interval."""
    runs = []
    for p in paths:
        try:
            with open(p) as f:
                d = json.load(f)
            runs.append((d, d["within_auroc_middle"]["by_question"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"--pair {p}: not a testbed_gates.py --json file with within_auroc_middle ({e})", file=sys.stderr)
            return 2
    (da, qa), (db, qb) = runs
    same = ("policy", "seed", "per_level", "k", "temperature")
    if any(da.get(k) != db.get(k) for k in same):
        print(f"--pair: the two runs differ in {', '.join(k for k in same if da.get(k) != db.get(k))}: "
              "not the same samples", file=sys.stderr)
        return 2
    qs = sorted(set(qa) & set(qb))
    m, lo, hi = T.mean_ci([qb[q] - qa[q] for q in qs], seed=0)
    print(f"{db['verifier']} - {da['verifier']}: within-question AUROC at the middle difficulties "
          f"{sum(qb[q] for q in qs) / max(1, len(qs)):.3f} - {sum(qa[q] for q in qs) / max(1, len(qs)):.3f} = "
          f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] over {len(qs)} questions (95% bootstrap interval)")
    return 0


if __name__ == "__main__":
    main_guarded(main)
