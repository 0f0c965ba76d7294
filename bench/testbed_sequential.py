"""Sequential revisions against parallel samples, checker-gated, call for call (Snell et al. 2024, sec. 6).

    python bench/testbed_sequential.py --task countdown --reviser DIR --seed S1,S2 --per-level 150 \
        --rounds 3 [--context history|last] [--json OUT]

One model drafts and revises: a reviser whose card template extends its own draft
(`{question}\\n{attempt}\\nfix:\\n`), such as countdown-revise-hist or countdown-revise-inline-chk.
Per item of the held-out sets it draws R+1 samples of the question at T=0.7. The exact checker
(`checker.outcome`, no FLOPs on countdown) accepts or rejects each attempt, and both arms stop at
the first accepted one:

- sequential: sample 0 is the draft; round r (1..R) revises a rejected attempt at T=0.7 with
  `--context history` every attempt so far in context (joined by data.HISTORY_JOIN, so each
  revision extends the previous one's context) or with `--context last` the last attempt only;
- parallel: samples 1..R, one per round, in the question's cached prompt.

After r rounds each arm has made at most r+1 calls. Per difficulty bin and round: accuracy of
each arm (an accepted attempt; the checker is exact, so accepted means right), sequential -
parallel paired per item with a 95% bootstrap interval, and mean FLOPs per item of each arm
(the draft included in both; a revision computes what its prompt adds to the cached context
before it plus its own tokens; a sample its own tokens after the cached question). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, positive_int  # noqa: E402

from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402

TEMPERATURE = 0.7


def _diff(d: tuple[float, float, float]) -> str:
    return f"{100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="countdown", choices=sorted(T.BEDS))
    ap.add_argument("--reviser", required=True, help="a model that drafts and revises in its own draft's context")
    ap.add_argument("--per-level", type=positive_int, default=150, help="items per difficulty bin and seed")
    ap.add_argument("--seed", default=str(T.EVAL_SEED), help="the evaluation set's seed, or several, comma-separated, each named once, pooled")
    ap.add_argument("--rounds", type=positive_int, default=3, help="revision rounds")
    ap.add_argument("--context", default="history", choices=["history", "last"],
                    help="what a revision sees: every earlier attempt (history) or the last one")
    ap.add_argument("--json", default=None, help="write the per-bin figures here")
    a = ap.parse_args()
    try:
        seeds = T.seed_list(a.seed)
    except ValueError as e:
        ap.error(f"--seed: {e}")
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.compiler.costmodel import ModelSpec, forward_flops
    from ttcl.zoo.data import HISTORY_JOIN, REVISE_INLINE_TEMPLATE
    from ttcl.zoo.sampling import generate

    bed = T.BEDS[a.task]
    checker = bed.checker
    rdir = resolve_model(a.reviser)
    meta = json.loads((rdir / "ttcl_meta.json").read_text())
    template = meta.get("revise_template")
    if template != REVISE_INLINE_TEMPLATE:
        print(f"--reviser {a.reviser}: its template {template!r} does not extend its own draft", file=sys.stderr)
        return 2
    model = AutoModelForCausalLM.from_pretrained(str(rdir)).eval()
    tok = AutoTokenizer.from_pretrained(str(rdir))
    style = T.chain_style(meta)
    problems, items = T.run_sets(model, tok, bed, seeds, a.per_level, k=1 + a.rounds, temperature=TEMPERATURE,
                                 style=style)
    spec = ModelSpec(non_embedding_params=meta["params_non_embedding"], n_layer=meta["n_layer"], d_model=meta["d_model"])
    n = len(problems)

    def right(i: int, text: str) -> bool:
        return bool(checker.outcome(problems[i].question, text))

    # sequential: chains[i] = the attempts so far; context[i] = the text the model has computed (cached)
    chains = [[it.samples[0]] for it in items]
    context = [problems[i].prompt + chains[i][0] for i in range(n)]
    marker = bed.module.ANSWER_MARKER

    def answer(text: str) -> str | None:
        lines = [x.strip() for x in text.strip().splitlines() if x.strip().startswith(marker)]
        return lines[-1] if lines else None

    def first_line(text: str) -> str:
        return next((x.strip() for x in text.strip().splitlines() if x.strip()), "")

    repeats = [[False] * n for _ in range(a.rounds + 1)]  # a revision proposing an answer already rejected
    # a call whose first line (countdown: its first combination) is one an earlier rejected attempt began with
    seq_same_start = [[False] * n for _ in range(a.rounds + 1)]
    par_same_start = [[False] * n for _ in range(a.rounds + 1)]
    seq_flops = [[0.0] * n for _ in range(a.rounds + 1)]
    seq_ok = [[False] * n for _ in range(a.rounds + 1)]
    for i in range(n):
        p = len(problems[i].prompt)
        seq_flops[0][i] = forward_flops(spec, 0, p) + forward_flops(spec, p, p + T.gen_tokens(chains[i][0]) - 1)
        seq_ok[0][i] = right(i, chains[i][0])
    for r in range(1, a.rounds + 1):
        live = [i for i in range(n) if not seq_ok[r - 1][i]]
        prompts: dict[int, str] = {}
        for i in live:
            shown = chains[i] if a.context == "history" else chains[i][-1:]
            prompts[i] = template.format(question=problems[i].question,
                                         attempt=HISTORY_JOIN.join(x.strip() for x in shown))
        outs: dict[int, str] = {}
        by: dict[int, list[int]] = {}
        for i in live:
            by.setdefault(problems[i].steps, []).append(i)
        for st, idx in sorted(by.items()):
            got = generate(model, tok, [prompts[i] for i in idx], n=1, max_new_tokens=bed.max_new_tokens(st, style),
                           temperature=TEMPERATURE, seed=seeds[0] + 1000 * st + 100 * r)
            for i, o in zip(idx, got, strict=True):
                outs[i] = o[0]
        for i in range(n):
            seq_flops[r][i] = seq_flops[r - 1][i]
            seq_ok[r][i] = seq_ok[r - 1][i]
            if i not in outs:
                continue
            prompt, out = prompts[i], outs[i]
            cached = len(os.path.commonprefix([context[i], prompt]))
            seq_flops[r][i] += forward_flops(spec, cached, len(prompt)) + forward_flops(
                spec, len(prompt), len(prompt) + T.gen_tokens(out) - 1)
            repeats[r][i] = answer(out) is not None and answer(out) in {answer(x) for x in chains[i]}
            seq_same_start[r][i] = first_line(out) in {first_line(x) for x in chains[i]}
            chains[i].append(out)
            context[i] = prompt + out
            seq_ok[r][i] = right(i, out)
    # parallel: samples 0..r, stopping at the first the checker accepts
    par_flops = [[0.0] * n for _ in range(a.rounds + 1)]
    par_ok = [[False] * n for _ in range(a.rounds + 1)]
    for i, it in enumerate(items):
        p = len(problems[i].prompt)
        for r in range(a.rounds + 1):
            if r == 0:
                par_flops[0][i], par_ok[0][i] = seq_flops[0][i], seq_ok[0][i]
                continue
            par_flops[r][i], par_ok[r][i] = par_flops[r - 1][i], par_ok[r - 1][i]
            if not par_ok[r][i]:
                s = it.samples[r]
                par_same_start[r][i] = first_line(s) in {first_line(x) for x in it.samples[:r]}
                par_flops[r][i] += forward_flops(spec, p, p + T.gen_tokens(s) - 1)
                par_ok[r][i] = right(i, s)

    print(f"dataset: {a.task} make_problems({a.per_level * len(bed.steps)}, {bed.steps[0]}..{bed.steps[-1]}, "
          f"{T.sets_label(seeds)}); model {a.reviser}; drafts, revisions ({a.context} in context) and samples at "
          f"T={TEMPERATURE:g}; checker-gated: each arm stops at the first attempt check(\"{a.task}\") accepts; "
          "95% intervals\n")
    print("| steps | n | round | sequential | parallel | sequential - parallel | FLOPs sequential / parallel | "
          "rejected before the round | revisions repeating a rejected answer | same first line as a rejected "
          "attempt: revisions / samples |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    out = {"seed": seeds if len(seeds) > 1 else seeds[0], "reviser": a.reviser, "context": a.context,
           "rounds": a.rounds, "temperature": TEMPERATURE, "bins": []}
    for st in sorted({p.steps for p in problems}):
        idx = [i for i, p in enumerate(problems) if p.steps == st]
        rows = []
        for r in range(a.rounds + 1):
            s = sum(seq_ok[r][i] for i in idx) / len(idx)
            q = sum(par_ok[r][i] for i in idx) / len(idx)
            d = T.mean_ci([float(seq_ok[r][i]) - float(par_ok[r][i]) for i in idx], seed=seeds[0] + st + r)
            fs = sum(seq_flops[r][i] for i in idx) / len(idx)
            fp = sum(par_flops[r][i] for i in idx) / len(idx)
            live = len(idx) if r == 0 else sum(not seq_ok[r - 1][i] for i in idx)
            rep = sum(repeats[r][i] for i in idx)
            par_live = len(idx) if r == 0 else sum(not par_ok[r - 1][i] for i in idx)
            ss, ps = sum(seq_same_start[r][i] for i in idx), sum(par_same_start[r][i] for i in idx)
            same = f"{T.pct(ss / max(1, live))}% / {T.pct(ps / max(1, par_live))}%" if r else "-"
            print(f"| {st} | {len(idx)} | {r} | {T.pct(s)} | {T.pct(q)} | {_diff(d) if r else '-'} | {fs:.3g} / {fp:.3g} "
                  f"| {live if r else '-'} | {rep if r else '-'} | {same} |")
            rows.append({"round": r, "sequential": s, "parallel": q, "diff": d, "flops_sequential": fs,
                         "flops_parallel": fp, "sequential_live": live, "repeats": rep, "parallel_live": par_live,
                         "same_start_sequential": ss, "same_start_parallel": ps})
        out["bins"].append({"steps": st, "n": len(idx), "rounds": rows})
    # per item, in the pooled sets' order, so two runs on the same sets can be paired afterwards
    out["items"] = {"steps": [p.steps for p in problems], "sequential": [[int(x) for x in row] for row in seq_ok],
                    "parallel": [[int(x) for x in row] for row in par_ok]}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    main_guarded(main)
