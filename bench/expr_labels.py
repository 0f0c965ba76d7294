"""How many of the shipped expr verifiers' training labels the checker's ambiguous-line rule changes.

    python bench/expr_labels.py [--policy expr-s]

Draws the expr verifiers' sample pool exactly as `ttcl zoo train` draws it (`family.EXPR_SAMPLES`, the
shipped expr-s and expr-m: 64,000 samples, about 5 minutes on 2 cores), labels every sample with the
checker (`expr.checker`: a line two ready operations read alike may reduce either) and with the labeller
the builds keep (`expr.labeller`: the first of them, the rule the shipped labels were made with), and
prints how many samples' step labels, outcomes and strict verdicts differ, with the first few. The
builds label with `expr.labeller` so that they give the shipped weights back. `--policy` draws one
policy's share only. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cli import main_guarded  # noqa: E402

from ttcl.runtime.tasks import expr  # noqa: E402
from ttcl.zoo.family import EXPR_SAMPLES  # noqa: E402
from ttcl.zoo.registry import MODELS_DIR  # noqa: E402
from ttcl.zoo.verifiers import sample_verifier_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", choices=EXPR_SAMPLES.policies, help="draw this policy's share only")
    args = ap.parse_args()
    t0 = time.time()
    rows = sample_verifier_data(EXPR_SAMPLES, {p: MODELS_DIR / p for p in EXPR_SAMPLES.policies}, only=args.policy)
    differ = []
    outcome = strict = 0
    for r in rows:
        q, c = r["question"], r["completion"]
        labelled, checked = expr.labeller.steps(q, c), expr.checker.steps(q, c)
        outcome += expr.labeller.outcome(q, c) != expr.checker.outcome(q, c)
        strict += expr.labeller.strict(q, c) != expr.checker.strict(q, c)
        if labelled != checked:
            differ.append({"question": q, "completion": c, "labeller": labelled, "checker": checked})
    print(json.dumps({"samples": len(rows), "step_labels_differ": len(differ), "outcome_differs": outcome,
                      "strict_differs": strict, "seconds": round(time.time() - t0)}))
    for d in differ[:5]:
        print(json.dumps(d))


if __name__ == "__main__":
    main_guarded(main)
