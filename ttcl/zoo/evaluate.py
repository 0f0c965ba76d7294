"""Accuracy of zoo models by difficulty and method: greedy, maj@n, verifier-weighted@n, pass@n.

From k samples per problem, a metric at n < k is averaged over the k/n disjoint
groups of n samples, which is less noisy than one group.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ttcl.runtime.tasks.arith import Problem, checker, make_problems

EVAL_SEED = 1234  # the fixed evaluation set, disjoint in practice from training draws
EVAL_STEPS = tuple(range(1, 9))


def eval_problems(per_level: int, steps: Sequence[int] = EVAL_STEPS, seed: int = EVAL_SEED) -> list[Problem]:
    return make_problems(per_level * len(steps), steps, seed)


def max_new_tokens(steps: int) -> int:
    """Room for `steps` lines of up to 12 chars, the answer line and some slack."""
    return 12 * steps + 16


@dataclass
class Record:
    """One problem with its greedy completion, samples and (optional) verifier scores."""

    problem: Problem
    greedy: str | None = None
    samples: list[str] = field(default_factory=list)
    scores: list[float] | None = None

    def outcomes(self) -> list[float]:
        return [checker.outcome(self.problem.question, s) for s in self.samples]


def vote(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> str | None:
    """The answer with the largest total weight (count when unweighted); None answers abstain.
    Ties go to the answer seen first."""
    tally: Counter[str] = Counter()
    for i, a in enumerate(answers):
        if a is not None:
            tally[a] += 1.0 if weights is None else weights[i]
    if not tally:
        return None
    best = max(tally.values())
    return next(a for a in tally if tally[a] == best)


def _norm(ans: str | None) -> str | None:
    if ans is None:
        return None
    try:
        return str(int(ans))
    except ValueError:
        return ans


def group_metric(rec: Record, n: int, method: str) -> float:
    """Mean over disjoint groups of n samples of one method's correctness."""
    k = len(rec.samples)
    groups = max(1, k // n)
    truth = str(rec.problem.answer)
    answers = [_norm(checker.extract(s)) for s in rec.samples]
    total = 0.0
    for g in range(groups):
        sl = slice(g * n, (g + 1) * n)
        if method == "pass":
            total += float(any(a == truth for a in answers[sl]))
        elif method == "maj":
            total += float(vote(answers[sl]) == truth)
        elif method == "weighted":
            if rec.scores is None:
                raise ValueError("weighted vote needs verifier scores")
            total += float(vote(answers[sl], rec.scores[sl]) == truth)
        elif method == "best":
            if rec.scores is None:
                raise ValueError("best-of-n needs verifier scores")
            sc = rec.scores[sl]
            total += float(answers[sl][sc.index(max(sc))] == truth)
        else:
            raise ValueError(f"unknown method {method!r}")
    return total / groups


def greedy_acc(recs: Sequence[Record]) -> float:
    return sum(checker.outcome(r.problem.question, r.greedy or "") for r in recs) / max(1, len(recs))


def by_level(recs: Sequence[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in recs:
        out.setdefault(r.problem.steps, []).append(r)
    return dict(sorted(out.items()))


def mean_metric(recs: Sequence[Record], n: int, method: str) -> float:
    return sum(group_metric(r, n, method) for r in recs) / max(1, len(recs))


def run_policy(model, tok, problems: Sequence[Problem], k: int, temperature: float, seed: int = 0,
               prompt_fn=None, batch_size: int = 512) -> list[Record]:
    """Greedy plus k samples per problem, batched per difficulty level."""
    from ttcl.zoo.sampling import generate

    prompt_fn = prompt_fn or (lambda p: p.prompt)
    recs = [Record(p) for p in problems]
    levels: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        levels.setdefault(p.steps, []).append(i)
    for steps, idx in sorted(levels.items()):
        prompts = [prompt_fn(problems[i]) for i in idx]
        mnt = max_new_tokens(steps)
        greedy = generate(model, tok, prompts, n=1, max_new_tokens=mnt, batch_size=batch_size)
        for i, g in zip(idx, greedy, strict=True):
            recs[i].greedy = g[0]
        if k:
            samples = generate(model, tok, prompts, n=k, temperature=temperature, max_new_tokens=mnt,
                               batch_size=batch_size, seed=seed + 1000 * steps)
            for i, s in zip(idx, samples, strict=True):
                recs[i].samples = s
    return recs


def card_table(recs: Sequence[Record], k: int) -> list[dict[str, float]]:
    """Rows per difficulty: greedy, maj@k, pass@k (fractions)."""
    rows = []
    for steps, rs in by_level(recs).items():
        row = {"steps": steps, "n": len(rs), "greedy": greedy_acc(rs)}
        if k and rs[0].samples:
            row[f"maj@{k}"] = mean_metric(rs, k, "maj")
            row[f"pass@{k}"] = mean_metric(rs, k, "pass")
        rows.append(row)
    return rows


def auroc(scores: Sequence[float], labels: Sequence[float]) -> float:
    """Area under the ROC curve (probability a random positive outscores a random negative)."""
    pairs = sorted(zip(scores, labels, strict=True))
    pos = sum(1 for _, y in pairs if y > 0.5)
    neg = len(pairs) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    # rank-sum with ties averaged
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2
        rank_sum += avg_rank * sum(1 for t in range(i, j) if pairs[t][1] > 0.5)
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
