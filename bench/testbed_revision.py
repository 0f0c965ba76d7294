"""Revision on the `expr` or `countdown` testbed: flips per round, and revision against a fresh
sample (gate d).

    python bench/testbed_revision.py --policy ttcl:expr-s --reviser ttcl:expr-revise \
        [--per-level 150] [--seed 777001] [--rounds 2]
    python bench/testbed_revision.py --task countdown --inline --reviser DIR --seed 20261203,20261204 --fresh 4
    python bench/testbed_revision.py --task countdown --policy ttcl:countdown-s --reviser ttcl:countdown-revise

Per item of the held-out set (`ttcl.zoo.testbed.BEDS[task].problems(per_level, seed)`):
the policy draws two independent samples at T=0.7. Round 1 revises the first
sample greedily with the reviser (prompt `{question}\\nattempt:\\n{attempt}\\nfix:\\n`,
the previous attempt in context); round r revises round r-1's output. Reported
per difficulty bin: accuracy of the attempt and after each round, the
right->wrong and wrong->right counts of each round, and gate (d): revision
(round 1) minus the fresh second sample, a paired difference with a 95%
bootstrap interval, beside the FLOPs of each (a revision call prefills the
attempt too). Not a test.

With --inline (a reviser whose card template extends its own draft, such as
expr-revise-inline), the reviser drafts its own attempts and revises each in
the draft's context: a runtime with a prefix cache computes only the marker
and the revision, so both revision and a fresh sample are charged what they
add to the draft (FLOPs revise / fresh counts that, not the draft).
--fresh K draws K fresh samples per item and takes their mean accuracy as the
fresh-sample column (a lower-variance estimate of one fresh sample's
accuracy; the difference is still paired per item). Inline, the column "kept"
counts the drafts whose revision restates the answer (keeps the draft),
among right and among wrong drafts: how well the reviser tells them apart.
--draft greedy revises the greedy decode instead of a sample; then a second greedy call would
repeat the draft, and round 1 - greedy is the matched comparison.
Three more columns set revision beside the other second call a user can make: the drafting
model's greedy decode of the question in a fresh prompt (computed anyway; the revision is greedy
too unless --revise-temperature samples it), round 1 - greedy paired per item, and its FLOPs.
The last three columns gate the second call with the exact checker (`checker.outcome`, which
countdown makes cheap): every draft it accepts is kept, and only a rejected one is redone, by the
revision or by a fresh sample. Printed: the rejected drafts, the share of them each redo gets
right, and checker-gated revise - resample over all items (paired per item; it differs from 0
only on rejected drafts). With --revise-temperature 0.7 both redos are decoded alike.
The attempt and the fresh samples are draws from one distribution (the same model, prompt and
temperature), so round 1 - attempt (column "(d) flips": wrong->right minus right->wrong, per
item) estimates the same difference as round 1 - fresh. It leaves out the luck of the one draft
each item gets against its fresh samples, which round 1 - fresh carries; its own noise is the
answers revision changes. Both are printed: where they disagree, the drafts were lucky or
unlucky against the fresh samples, and a larger evaluation decides.
Several comma-separated seeds pool their items into one table (each set sampled with its own
seed, as when it is run alone), so the interval of (d) covers all of them.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, positive_int  # noqa: E402

from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402


def _gate(d: tuple[float, float, float]) -> str:
    return f"{T.pct(d[0])} [{T.pct(d[1])}, {T.pct(d[2])}]{' met' if d[1] > 0 else ''}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="expr", choices=sorted(T.BEDS))
    ap.add_argument("--policy", default="ttcl:expr-s", help="the policy whose attempts are revised")
    ap.add_argument("--reviser", default="ttcl:expr-revise", help="the revising model")
    ap.add_argument("--per-level", type=positive_int, default=150, help="items per difficulty bin and seed")
    ap.add_argument("--seed", default=str(T.EVAL_SEED), help="the evaluation set's seed, or several, comma-separated, each named once, pooled")
    ap.add_argument("--rounds", type=positive_int, default=2, help="revision rounds")
    ap.add_argument("--inline", action="store_true",
                    help="the reviser drafts its own attempts and revises in the draft's context (no --policy)")
    ap.add_argument("--fresh", type=positive_int, default=1, help="fresh samples per item, their mean accuracy reported")
    ap.add_argument("--revise-temperature", type=float, default=0.0,
                    help="sample the revisions at this temperature (seeded) instead of greedily")
    ap.add_argument("--draft", default="sample", choices=["sample", "greedy"],
                    help="the attempt round 1 revises: the first T=0.7 sample (default) or the greedy decode")
    ap.add_argument("--json", default=None, help="write the per-bin figures here")
    a = ap.parse_args()
    if a.revise_temperature < 0:
        ap.error("--revise-temperature: must be 0 (greedy) or more")
    try:
        seeds = T.seed_list(a.seed)
    except ValueError as e:
        ap.error(f"--seed: {e}")
    a.seed = seeds[0]  # the bootstrap draws
    if a.inline:
        a.policy, a.rounds = a.reviser, 1
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.compiler.costmodel import ModelSpec, forward_flops
    from ttcl.zoo.data import REVISE_TEMPLATE
    from ttcl.zoo.sampling import generate

    bed = T.BEDS[a.task]
    checker = bed.checker
    pdir, rdir = resolve_model(a.policy), resolve_model(a.reviser)
    pmeta = json.loads((pdir / "ttcl_meta.json").read_text())
    rmeta = json.loads((rdir / "ttcl_meta.json").read_text())
    pol = AutoModelForCausalLM.from_pretrained(str(pdir)).eval()
    ptok = AutoTokenizer.from_pretrained(str(pdir))
    problems, items = T.run_sets(pol, ptok, bed, seeds, a.per_level, k=1 + a.fresh, temperature=0.7,
                                 style=T.chain_style(pmeta))
    template = rmeta.get("revise_template", REVISE_TEMPLATE)
    rev = AutoModelForCausalLM.from_pretrained(str(rdir)).eval()
    rtok = AutoTokenizer.from_pretrained(str(rdir))
    attempts = [[it.greedy if a.draft == "greedy" else it.samples[0] for it in items]]
    for r in range(1, a.rounds + 1):
        prev = attempts[-1]
        outs: list[str] = [""] * len(items)
        by: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by.setdefault(it.problem.steps, []).append(i)
        for st, idx in by.items():
            prompts = [template.format(question=items[i].problem.question, attempt=prev[i].strip()) for i in idx]
            budget = bed.max_new_tokens(st, T.chain_style(rmeta))
            outs_st = generate(rev, rtok, prompts, n=1, max_new_tokens=budget, temperature=a.revise_temperature,
                               seed=a.seed + 1000 * st + 100 * r)
            for i, o in zip(idx, outs_st, strict=True):
                outs[i] = o[0]
        attempts.append(outs)
    sets = T.sets_label(seeds)
    rev_decode = f"sampled at T={a.revise_temperature:g}" if a.revise_temperature > 0 else "greedy"
    print(f"dataset: {a.task} make_problems({a.per_level * len(bed.steps)}, {bed.steps[0]}..{bed.steps[-1]}, "
          f"{sets}); attempts by {a.policy} {'greedy' if a.draft == 'greedy' else 'at T=0.7'}, "
          f"revisions by {a.reviser} ({rev_decode}{', in the draft context' if a.inline else ''}); "
          f"fresh sample: mean of {a.fresh} per item; 95% intervals\n")
    rspec = ModelSpec(non_embedding_params=rmeta["params_non_embedding"], n_layer=rmeta["n_layer"],
                      d_model=rmeta["d_model"])

    def revise_flops(i: int) -> float:
        """A revision's FLOPs; inline, the draft's context (its prompt and text) is cached."""
        prompt = template.format(question=problems[i].question, attempt=attempts[0][i].strip())
        if not a.inline:
            return T.policy_flops(rmeta, prompt, [attempts[1][i]])
        draft = problems[i].prompt + attempts[0][i]
        cached = len(os.path.commonprefix([draft, prompt]))
        end = len(prompt) + T.gen_tokens(attempts[1][i]) - 1
        return forward_flops(rspec, cached, len(prompt)) + forward_flops(rspec, len(prompt), end)

    def decode_flops(i: int, text: str) -> float:
        """One more decode of the question (a fresh sample, or the greedy decode); inline, its
        prompt is cached with the draft."""
        if not a.inline:
            return T.policy_flops(pmeta, problems[i].prompt, [text])
        p = len(problems[i].prompt)
        return forward_flops(rspec, p, p + T.gen_tokens(text) - 1)
    head = "| steps | n | attempt | " + " | ".join(f"round {r} | r{r} right->wrong | r{r} wrong->right"
                                                for r in range(1, a.rounds + 1))
    kept_head = " | kept: right / wrong drafts" if a.inline else ""
    print(head + " | fresh sample | (d) round 1 - fresh | (d) flips: round 1 - attempt | FLOPs revise / fresh"
          f"{kept_head} | greedy (fresh prompt) | round 1 - greedy | FLOPs greedy | rejected drafts "
          "| right among them: revision / fresh | checker-gated: revise - resample |")
    print("|" + "---|" * (3 + 3 * a.rounds + 4 + bool(a.inline) + 3 + 3))
    marker = bed.module.ANSWER_MARKER
    out = {"seed": seeds if len(seeds) > 1 else a.seed, "policy": a.policy, "reviser": a.reviser, "inline": a.inline, "fresh_per_item": a.fresh,
           "bins": []}
    for st in sorted({p.steps for p in problems}):
        idx = [i for i, p in enumerate(problems) if p.steps == st]
        right = [[checker.outcome(problems[i].question, att[i]) for i in idx] for att in attempts]
        fresh = [sum(checker.outcome(problems[i].question, x) for x in items[i].samples[1:]) / a.fresh for i in idx]
        cells = [str(st), str(len(idx)), T.pct(sum(right[0]) / len(idx))]
        row: dict = {"steps": st, "n": len(idx), "attempt": sum(right[0]) / len(idx), "rounds": []}
        for r in range(1, a.rounds + 1):
            rw = sum(1 for x, y in zip(right[r - 1], right[r], strict=True) if x and not y)
            wr = sum(1 for x, y in zip(right[r - 1], right[r], strict=True) if not x and y)
            cells += [T.pct(sum(right[r]) / len(idx)), str(rw), str(wr)]
            row["rounds"].append({"acc": sum(right[r]) / len(idx), "right_to_wrong": rw, "wrong_to_right": wr})
        d = T.mean_ci([x - y for x, y in zip(right[1], fresh, strict=True)], seed=a.seed + st)
        flips = T.mean_ci([float(x) - float(y) for x, y in zip(right[1], right[0], strict=True)], seed=a.seed + st)
        f_rev = sum(revise_flops(i) for i in idx) / len(idx)
        f_fresh = sum(decode_flops(i, items[i].samples[1]) for i in idx) / len(idx)
        cells += [T.pct(sum(fresh) / len(idx)), _gate(d), _gate(flips), f"{f_rev:.3g} / {f_fresh:.3g}"]
        row |= {"fresh": sum(fresh) / len(idx), "gate_d": d, "gate_d_flips": flips, "flops_revise": f_rev,
                "flops_fresh": f_fresh}
        if a.inline:  # a revision that restates the answer (starts with the answer marker) keeps its draft
            kept = [attempts[1][i].lstrip().startswith(marker) for i in idx]
            kr = sum(k for k, r in zip(kept, right[0], strict=True) if r)
            kw = sum(k for k, r in zip(kept, right[0], strict=True) if not r)
            nr = sum(1 for r in right[0] if r)
            cells.append(f"{kr}/{nr} / {kw}/{len(idx) - nr}")
            row |= {"kept_right": [kr, nr], "kept_wrong": [kw, len(idx) - nr]}
        greedy = [checker.outcome(problems[i].question, items[i].greedy) for i in idx]
        vs_greedy = T.mean_ci([float(x) - float(y) for x, y in zip(right[1], greedy, strict=True)], seed=a.seed + st)
        f_greedy = sum(decode_flops(i, items[i].greedy) for i in idx) / len(idx)
        cells += [T.pct(sum(greedy) / len(idx)), _gate(vs_greedy), f"{f_greedy:.3g}"]
        row |= {"greedy": sum(greedy) / len(idx), "round1_minus_greedy": vs_greedy, "flops_greedy": f_greedy}
        # checker-gated: the exact checker keeps every right draft, and only a rejected one is redone,
        # by a revision or by a fresh sample; the two differ only on the rejected drafts
        wrong = [not x for x in right[0]]
        g_rev = [float(w and x) for w, x in zip(wrong, right[1], strict=True)]
        g_fresh = [y if w else 0.0 for w, y in zip(wrong, fresh, strict=True)]
        gated = T.mean_ci([x - y for x, y in zip(g_rev, g_fresh, strict=True)], seed=a.seed + st)
        n_wrong = sum(wrong)
        cells += [str(n_wrong), f"{T.pct(sum(g_rev) / max(1, n_wrong))} / {T.pct(sum(g_fresh) / max(1, n_wrong))}",
                  _gate(gated)]
        row |= {"rejected": n_wrong, "gated_revise_right": sum(g_rev), "gated_fresh_right": sum(g_fresh),
                "gated_revise_minus_fresh": gated}
        out["bins"].append(row)
        print("| " + " | ".join(cells) + " |")
    if a.revise_temperature != 0.7 or a.draft == "greedy":
        print("\nThe revisions and the fresh samples are decoded differently (revisions "
              f"{rev_decode}, fresh samples at T=0.7), so round 1 - fresh also measures that difference; "
              "the matched comparisons are round 1 - greedy for greedy revisions, and round 1 - fresh "
              "with --revise-temperature 0.7 (ttcl/zoo/README.md, \"Is the gain revision's, or greedy "
              "decoding's?\").")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    main_guarded(main)
