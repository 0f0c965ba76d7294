"""Where an expr policy's samples first go wrong, by kind, per difficulty bin.

    python bench/expr_errors.py --policy ttcl:expr-s [--per-level 40] [--seed 555] [--k 16]

The checker (`check("expr")`) finds each sample's first wrong line; the line is then
classified against the operations still to reduce:

- illegal reduction, right arithmetic: `a op b = v` with v = a op b, but no operation of
  the question that is ready (both operands known) has operands a and b: a copied wrong
  operand, a precedence slip (7*3 inside (12+7)*3), a value not computed yet;
- illegal reduction, wrong value: neither;
- arithmetic: a ready operation with operands a and b, and a wrong v;
- answer line: every operation reduced and the `####` tuple wrong; `answer too early`:
  `####` before every operation is reduced; malformed: anything else.

Samples at T=0.7, the testbed's temperature. The dataset is
`ttcl.zoo.testbed.BEDS["expr"].problems(per_level, seed)`; the default seed is the dev
seed 555. Not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int, temperature  # noqa: E402

from ttcl.runtime.tasks import expr as E  # noqa: E402
from ttcl.zoo import testbed as T  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402

KINDS = ("right", "illegal reduction, right arithmetic", "illegal reduction, wrong value", "arithmetic",
         "answer line", "answer too early", "malformed")


def first_failure(p: E.Problem, sample: str, check: E.ExprChecker) -> str:
    lines = check.split_steps(sample)
    at = check.first_error(p.question, sample)
    if at is None:
        return "right" if check.outcome(p.question, sample) == 1.0 else "malformed"
    nodes, done = p.ops(), set()
    for line in lines[:at]:
        hit = E._match_step(line, nodes, done, p)
        if hit is not None:
            done.add(hit)
    line = lines[at]
    if line.startswith(E.ANSWER_MARKER):
        return "answer line" if len(done) == len(nodes) else "answer too early"
    m = E._STEP_RE.match(line)  # the checker's own reading of `a op b = v`
    if m is None:
        return "malformed"
    a, op, b, v = E._op_of(m)
    ready = [n for i, n in enumerate(nodes) if i not in done and n.op == op and E._ready(n, nodes, done)
             and n.left is not None and n.right is not None and (n.left.value, n.right.value) == (a, b)]
    if ready:
        return "arithmetic"
    right_value = {"+": a + b, "-": a - b, "*": a * b}[op] == v
    return "illegal reduction, right arithmetic" if right_value else "illegal reduction, wrong value"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="ttcl:expr-s", help="ttcl:NAME or a model directory")
    ap.add_argument("--per-level", type=positive_int, default=40, help="items per difficulty bin")
    ap.add_argument("--seed", type=nonnegative_int, default=555, help="the dataset seed (555 is the dev seed)")
    ap.add_argument("--k", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--temperature", type=temperature, default=0.7, help="sampling temperature")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pdir = resolve_model(a.policy)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(str(pdir), local_files_only=True).eval()
    items = T.run_policy(model, AutoTokenizer.from_pretrained(str(pdir), local_files_only=True),
                         T.BEDS["expr"].problems(a.per_level, seed=a.seed), k=a.k, temperature=a.temperature,
                         seed=a.seed)
    print(f"[sampled {a.policy}: {len(items)} items x {a.k} in {time.time() - t0:.0f}s]", file=sys.stderr)
    print(f"dataset: expr BEDS['expr'].problems({a.per_level}, seed={a.seed}); policy {a.policy}, {a.k} samples "
          f"at T={a.temperature}; share of samples by their first failure, in %\n")
    print("| steps | samples | " + " | ".join(KINDS) + " |")
    print("|---|---|" + "---|" * len(KINDS))
    check = E.ExprChecker()
    for st, its in T.by_steps(items).items():
        kinds = Counter(first_failure(it.problem, s, check) for it in its for s in it.samples)
        n = sum(kinds.values())
        print(f"| {st} | {n} | " + " | ".join(f"{100 * kinds[k] / n:.1f}" for k in KINDS) + " |")
    return 0


if __name__ == "__main__":
    main_guarded(main)
