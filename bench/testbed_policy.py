"""One policy on the testbed, without a verifier: greedy, maj@k, pass@k and strict@k per difficulty
bin, with 95% intervals, how the wrong samples spread (distinct wrong answers per question, and the
largest of them in samples, against the right samples per question), and gate (a) (maj@k - greedy)
as a paired difference.

    python bench/testbed_policy.py --policy ttcl:expr-s [--task expr] [--per-level 60] \
        [--seed 555] [--k 16] [--temperature 0.7]
    python bench/testbed_policy.py --policy ttcl-zoo/expr-s-trace --seed 555 --per-level 60

This is how a candidate recipe is judged on the dev seed (555) before anything is measured on the
held-out one (777001): `--policy` takes `ttcl:NAME` or the directory a `ttcl zoo train --out`
wrote, and the policy's chain style (its ttcl_meta.json) sets the token budget. The seed names
the dataset: items are `ttcl.zoo.testbed.BEDS[task].problems(per_level, seed)`. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int, temperature  # noqa: E402

from ttcl.runtime.tasks.base import text_after_marker  # noqa: E402
from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402


def _ci(successes: float, n: int) -> str:
    lo, hi = T.wilson(successes, n)
    return f"{T.pct(successes / n)} [{T.pct(lo)}, {T.pct(hi)}]"


def _wrong_spread(item: T.Item) -> tuple[int, int, int, int]:
    """(right samples, wrong samples, distinct wrong answers, samples of the most common wrong answer);
    a sample without an answer counts as a wrong answer of its own kind (None)."""
    right = item.right()
    wrong = Counter(T.answer_of(s, item.checker) for s, r in zip(item.samples, right, strict=True) if not r)
    return sum(right), sum(wrong.values()), len(wrong), max(wrong.values(), default=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="expr", choices=sorted(T.BEDS))
    ap.add_argument("--policy", default="ttcl:expr-s", help="ttcl:NAME or the directory `ttcl zoo train --out` wrote")
    ap.add_argument("--per-level", type=positive_int, default=60, help="items per difficulty bin")
    ap.add_argument("--seed", type=nonnegative_int, default=555, help="the dataset seed (555 is the dev seed)")
    ap.add_argument("--k", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--temperature", type=temperature, default=0.7, help="sampling temperature")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bed = T.BEDS[a.task]
    pdir = resolve_model(a.policy)
    meta = json.loads((pdir / "ttcl_meta.json").read_text())
    style = T.chain_style(meta)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(pdir), local_files_only=True).eval()
    items = T.run_policy(model, AutoTokenizer.from_pretrained(str(pdir), local_files_only=True),
                         bed.problems(a.per_level, seed=a.seed), k=a.k, temperature=a.temperature,
                         seed=a.seed, style=style)
    print(f"[sampled {a.policy}: {len(items)} items x {a.k} in {time.time() - t0:.0f}s]", file=sys.stderr)
    print(f"dataset: {a.task} BEDS[{a.task!r}].problems({a.per_level}, seed={a.seed}); policy {a.policy} "
          f"(chain style {style}), {a.k} samples at T={a.temperature}; in %, 95% intervals\n")
    print(f"| steps | greedy | maj@{a.k} | pass@{a.k} | strict@{a.k} | sample acc | "
          f"distinct correct chains / {a.k} | right / wrong samples | distinct wrong answers | largest wrong answer | "
          f"(a) maj@{a.k} - greedy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for st, its in T.by_steps(items).items():
        n = len(its)
        g = [T.greedy_right(x) for x in its]
        maj = [T.method_right(x, "maj", a.k) for x in its]
        cover = sum(T.method_right(x, "pass", a.k) for x in its)
        strict = sum(T.method_right(x, "strict", a.k) for x in its)
        sample_acc = sum(sum(x.right()) / len(x.samples) for x in its) / n
        chains = sum(T.distinct_correct_chains(x) for x in its) / n
        spread = [_wrong_spread(x) for x in its]
        right_n, wrong_n, distinct, largest = (sum(v[j] for v in spread) / n for j in range(4))
        d, lo, hi = T.mean_ci([m - y for m, y in zip(maj, g, strict=True)], seed=a.seed + st)
        print(f"| {st} | {_ci(sum(g), n)} | {_ci(sum(maj), n)} | {_ci(cover, n)} | {_ci(strict, n)} | "
              f"{T.pct(sample_acc)} | {chains:.2f} | {right_n:.1f} / {wrong_n:.1f} | {distinct:.1f} | {largest:.1f} | {100 * d:+.1f} [{100 * lo:.1f}, {100 * hi:.1f}] |")
    if a.task == "countdown":
        _as_written(items, a.k, a.seed)
    return 0


def _maj_as_written(item: T.Item, k: int) -> float:
    """maj@k with each expression voted as the policy wrote it (spaces dropped): how countdown was
    voted before its checker read answers canonically (`countdown_answers.canonical`)."""
    groups = max(1, len(item.samples) // k)
    written = [None if (t := text_after_marker(s, "####")) is None else t.replace(" ", "") for s in item.samples]
    return sum(float(item.answer_right(T.vote(written[g * k:(g + 1) * k]))) for g in range(groups)) / groups


def _as_written(items: list[T.Item], k: int, seed: int) -> None:
    """The vote over canonical answers (the table above) beside the vote over answers as written."""
    print(f"\nmaj@{k}: one computation written in another order is one answer (above), or each text its own "
          "(as written); paired differences\n")
    print(f"| steps | greedy | maj@{k} as written | maj@{k} | maj@{k} - as written | as written - greedy |")
    print("|---|---|---|---|---|---|")
    for st, its in T.by_steps(items).items():
        n = len(its)
        g = [T.greedy_right(x) for x in its]
        raw = [_maj_as_written(x, k) for x in its]
        maj = [T.method_right(x, "maj", k) for x in its]
        d, lo, hi = T.mean_ci([m - r for m, r in zip(maj, raw, strict=True)], seed=seed + st)
        e, elo, ehi = T.mean_ci([r - y for r, y in zip(raw, g, strict=True)], seed=seed + st)
        print(f"| {st} | {_ci(sum(g), n)} | {_ci(sum(raw), n)} | {_ci(sum(maj), n)} | "
              f"{100 * d:+.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {100 * e:+.1f} [{100 * elo:.1f}, {100 * ehi:.1f}] |")


if __name__ == "__main__":
    main_guarded(main)
