"""Where a countdown policy's samples go wrong: the first failure of each sample, by kind.

    python bench/countdown_errors.py --policy ttcl:countdown-s [--per-level 40] [--seed 777001] [--k 16]

Each sample's derivation is replayed line by line against the question (not the
checker's reachability search: a dead end with valid lines counts as "valid, final
value is not the target"). Kinds, first failure wins:

- malformed: a derivation line that is not `a op b = v [...]`;
- unavailable: an operand that is not among the numbers left;
- arithmetic, claims the target: a wrong value that equals the target (the policy
  fabricates the last step to hit the target);
- arithmetic: any other wrong value;
- incomplete: no line ever made the target;
- right derivation, wrong expression: the lines made the target, the `####` expression is wrong;
- right: the outcome checker accepts the expression.

For a search trace (chain styles `search*`), only its last attempt, the one after the last line
marked DEAD_MARK, is replayed: abandoned attempts do not make the answer.

Samples at T=1.0 (`--temperature`). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from cli import main_guarded, nonnegative_int, positive_int, temperature  # noqa: E402

from ttcl.runtime.tasks import countdown as C  # noqa: E402
from ttcl.zoo.registry import resolve_model  # noqa: E402

KINDS = ("right", "arithmetic, claims the target", "arithmetic", "unavailable", "malformed", "incomplete",
         "right derivation, wrong expression")


def first_failure(problem: C.Problem, completion: str) -> str:
    pool = list(problem.numbers)
    made = False
    lines = C.checker.split_steps(completion)
    dead = [i for i, line in enumerate(lines) if line.endswith(C.DEAD_MARK) and not line.startswith(C.ANSWER_MARKER)]
    for line in lines[dead[-1] + 1 if dead else 0 :]:  # a search trace: the attempt the answer comes from
        if line.startswith(C.ANSWER_MARKER):
            break
        m = C._STEP_RE.match(line)
        if m is None:
            return "malformed"
        a, op, b, v = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        rest = list(pool)
        for x in (a, b):
            if x not in rest:
                return "unavailable"
            rest.remove(x)
        if C.combine(a, op, b) != v:
            return "arithmetic, claims the target" if v == problem.target else "arithmetic"
        pool = [*rest, v]
        made = v == problem.target
    if C.checker.outcome(problem.question, completion) == 1.0:
        return "right"
    return "right derivation, wrong expression" if made else "incomplete"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="ttcl:countdown-s", help="ttcl:NAME or a model directory")
    ap.add_argument("--per-level", type=positive_int, default=40, help="items per difficulty bin")
    ap.add_argument("--seed", type=nonnegative_int, default=777001, help="the dataset seed")
    ap.add_argument("--k", type=positive_int, default=16, help="samples per item")
    ap.add_argument("--temperature", type=temperature, default=1.0, help="sampling temperature")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttcl.zoo.sampling import generate
    from ttcl.zoo.testbed import BEDS, chain_style

    bed = BEDS["countdown"]
    path = resolve_model(a.policy)
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    style = chain_style(json.loads((path / "ttcl_meta.json").read_text()))
    print(f"{a.policy}: {a.k} samples at T={a.temperature} per item, {a.per_level} items per bin, "
          f"countdown make_problems seed {a.seed}; share of samples by first failure, in %\n")
    print("| steps | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for steps in bed.steps:
        problems = C.make_problems(a.per_level, steps, a.seed + steps)
        outs = generate(model, tok, [p.prompt for p in problems], n=a.k, temperature=a.temperature,
                        max_new_tokens=bed.max_new_tokens(steps, style), seed=a.seed)
        tally = Counter(first_failure(p, o) for p, row in zip(problems, outs, strict=True) for o in row)
        n = sum(tally.values())
        print(f"| {steps} | " + " | ".join(f"{100 * tally[k] / n:.1f}" for k in KINDS) + " |")
    return 0


if __name__ == "__main__":
    main_guarded(main)
