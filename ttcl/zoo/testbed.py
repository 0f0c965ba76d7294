"""Testbed v2 measurements on the `expr` task: what test-time compute buys a policy.

Per difficulty bin (number of operations) on held-out items: greedy, maj@n,
verifier-weighted@n, verifier-best@n, pass@n, strict coverage (a sample
right with every step right), distinct correct chains among the samples,
pooled and within-question AUROC of a verifier, revision flips, and the
FLOPs each method spends (`ttcl.compiler.costmodel.forward_flops`, the same
cost model as `ttcl check` and the runtime ledger). Intervals are 95%:
Wilson for a proportion, a paired percentile bootstrap over items for a
difference.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ttcl.runtime.analysis import intervals
from ttcl.runtime.tasks import countdown, expr
from ttcl.runtime.tasks.expr import Problem, checker, make_problems

EVAL_SEED = 777001  # held-out items: never drawn by training (the recipes draw from their own seeds)
EVAL_STEPS = tuple(range(2, 9))
MIDDLE = (4, 5, 6)


@dataclass(frozen=True)
class Bed:
    """What the measurements need of one task: its module (generator, parser, checker), the
    difficulty bins of the card set, the middle bins, and room for a solution's tokens."""

    name: str
    module: ModuleType
    steps: tuple[int, ...]
    middle: tuple[int, ...]
    tokens_per_step: int
    tokens_extra: int
    # expr's `state` and `trace` chains rewrite the question on every line: their own budgets
    style_tokens_per_step: tuple[tuple[str, int], ...] = ()

    @property
    def checker(self) -> Any:
        return self.module.checker

    def max_new_tokens(self, steps: int, style: str = "ops") -> int:
        per_step = dict(self.style_tokens_per_step).get(style, self.tokens_per_step)
        return per_step * steps + self.tokens_extra

    def problems(self, per_level: int, seed: int = EVAL_SEED) -> list:
        return self.module.make_problems(per_level * len(self.steps), self.steps, seed)


BEDS = {
    # expr: lines of up to 9 characters and the answer line, with slack; `state` and `trace` lines
    # rewrite the question: the longest gold solutions of 3000 per bin are 27 / 42 / 79 / 108 / 138 /
    # 175 / 211 tokens at 2..8 operations (state) and 51 / 78 / 127 / 167 / 212 / 257 / 305 (trace)
    "expr": Bed("expr", expr, EVAL_STEPS, MIDDLE, 10, 20, style_tokens_per_step=(("state", 28), ("trace", 40), ("subst", 20))),
    # countdown: `a op b = v [numbers left]` lines of up to ~20 characters, then the expression: the
    # longest gold solutions of 3000 per bin are 47 / 70 / 92 / 122 tokens at 2 / 3 / 4 / 5 combinations
    # (`search` traces run until they succeed or fill the context: the model's n_positions bounds them)
    "countdown": Bed("countdown", countdown, (2, 3, 4, 5), (3, 4), 20, 30, style_tokens_per_step=(("search", 120), ("search-target", 150), ("search-retry", 150))),
}


def seed_list(text: str) -> list[int]:
    """Evaluation-set seeds from a comma-separated list ("777001,20261203"); ValueError names what is wrong:
    not an integer, an empty element (`1,,2`, `1,`), or a seed given twice (its items would be pooled as
    though they were another, independent set: QA pass)."""
    parts = [x.strip() for x in text.split(",")]
    if not any(parts):
        raise ValueError("name at least one evaluation seed")
    if not all(parts):
        raise ValueError(f"an empty element in {text!r}: expected an integer or comma-separated integers")
    try:
        seeds = [int(x) for x in parts]
    except ValueError:
        raise ValueError(f"expected an integer or comma-separated integers, got {text!r}") from None
    for i, s in enumerate(seeds):
        if s in seeds[:i]:
            raise ValueError(f"seed {s} is given twice: a repeated seed would pool the same items as if independent")
    return seeds


def chain_style(meta: dict) -> str:
    """How a policy writes its chain of thought (`expr`: ops, state or trace), from its ttcl_meta.json."""
    return str(meta.get("recipe", {}).get("data", {}).get("style", "ops"))


def bed_of(problem: object) -> Bed:
    return BEDS["countdown"] if isinstance(problem, countdown.Problem) else BEDS["expr"]


def eval_problems(per_level: int, seed: int = EVAL_SEED, steps: Sequence[int] = EVAL_STEPS) -> list[Problem]:
    return make_problems(per_level * len(steps), steps, seed)


def max_new_tokens(steps: int) -> int:
    """Room for `steps` lines of up to 9 characters and the answer line, with slack."""
    return BEDS["expr"].max_new_tokens(steps)


@dataclass
class Item:
    """One question with a policy's greedy completion, k samples, and verifier scores."""

    problem: Any  # an expr or countdown Problem
    greedy: str = ""
    samples: list[str] = field(default_factory=list)
    scores: list[float] | None = None  # verifier score per sample
    greedy_tokens: int = 0
    sample_tokens: list[int] = field(default_factory=list)

    @property
    def checker(self) -> Any:
        return bed_of(self.problem).checker

    def right(self) -> list[bool]:
        return [self.checker.outcome(self.problem.question, s) == 1.0 for s in self.samples]

    def strictly_right(self) -> list[bool]:
        """Right with every step right (the answer follows from a right derivation)."""
        return [self.checker.strict(self.problem.question, s) for s in self.samples]

    def answer_right(self, answer: str | None) -> bool:
        """Whether a (voted) final answer is right: checked, so that countdown's many right
        expressions all count."""
        return answer is not None and self.checker.outcome(self.problem.question, f"#### {answer}") == 1.0


def answer_of(text: str, check: Any = checker) -> str | None:
    """The final answer, normalised for voting (no spaces; expr's `+` signs dropped)."""
    got = check.extract(text)
    if got is None:
        return None
    return ",".join(x.strip().lstrip("+") for x in got.split(",")).replace(" ", "")


def vote(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> str | None:
    tally: Counter[str] = Counter()
    for i, a in enumerate(answers):
        if a is not None:
            tally[a] += 1.0 if weights is None else weights[i]
    if not tally:
        return None
    best = max(tally.values())
    return next(a for a in tally if tally[a] == best)


def method_right(item: Item, method: str, n: int) -> float:
    """Correctness of one method on the first n samples (mean over the k // n disjoint groups)."""
    k = len(item.samples)
    groups = max(1, k // n)
    answers = [answer_of(s, item.checker) for s in item.samples]
    right = item.right()
    total = 0.0
    for g in range(groups):
        sl = slice(g * n, (g + 1) * n)
        if method == "pass":
            total += float(any(right[sl]))
        elif method == "strict":
            total += float(any(item.checker.strict(item.problem.question, s) for s in item.samples[sl]))
        elif method == "maj":
            total += float(item.answer_right(vote(answers[sl])))
        elif method == "weighted":
            assert item.scores is not None
            total += float(item.answer_right(vote(answers[sl], item.scores[sl])))
        elif method == "best":
            assert item.scores is not None
            sc = item.scores[sl]
            total += float(right[sl][sc.index(max(sc))])
        else:
            raise ValueError(f"unknown method {method!r}")
    return total / groups


def greedy_right(item: Item) -> float:
    return item.checker.outcome(item.problem.question, item.greedy)


def distinct_correct_chains(item: Item) -> int:
    """Distinct step sequences among the samples that are strictly right."""
    check = item.checker
    return len({tuple(check.split_steps(s)) for s in item.samples if check.strict(item.problem.question, s)})


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """`runtime.analysis.intervals.wilson` at z = 1.96 (the figures the benches print), nan without items."""
    if n == 0:
        return (float("nan"), float("nan"))
    return intervals.wilson(successes, n, z)


def pct(x: float) -> str:
    """A share as the benches print it: percent, one decimal."""
    return f"{100 * x:.1f}"


def mean_ci(values: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a 95% percentile-bootstrap interval (items resampled)."""
    n = len(values)
    if n == 0:
        return (float("nan"),) * 3
    m = sum(values) / n
    rng = random.Random(seed)
    boots = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    return (m, boots[int(0.025 * reps)], boots[int(0.975 * reps) - 1])


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(a random positive outscores a random negative), ties counted half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    order = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j < len(order) and order[j][0] == order[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(1 for t in range(i, j) if order[t][1])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def within_question_aurocs(items: Sequence[Item], strict: bool = False) -> list[tuple[str, float]]:
    """(question, AUROC inside it) for each item whose samples are both right and wrong. `strict`:
    a sample counts as right only when every step is right too (a right answer after a broken
    derivation counts as wrong)."""
    out = []
    for it in items:
        assert it.scores is not None
        r = it.strictly_right() if strict else it.right()
        if any(r) and not all(r):
            out.append((it.problem.question, auroc(it.scores, r)))
    return out


def within_question_auroc(items: Sequence[Item], strict: bool = False) -> tuple[float, int]:
    """Mean over questions that have both right and wrong samples of the AUROC inside the
    question, and how many such questions there are (see within_question_aurocs)."""
    vals = [v for _, v in within_question_aurocs(items, strict)]
    return (sum(vals) / len(vals) if vals else float("nan"), len(vals))


def pooled_auroc(items: Sequence[Item]) -> float:
    scores = [s for it in items for s in (it.scores or [])]
    labels = [y for it in items for y in it.right()]
    return auroc(scores, labels)


def by_steps(items: Sequence[Item]) -> dict[int, list[Item]]:
    out: dict[int, list[Item]] = {}
    for it in items:
        out.setdefault(it.problem.steps, []).append(it)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- running models


def run_policy(model, tok, problems: Sequence[Problem], k: int, temperature: float = 1.0, seed: int = 0,
               batch_size: int = 512, prompt_fn: Callable[[Problem], str] | None = None,
               style: str = "ops") -> list[Item]:
    """Greedy plus k samples per problem, batched per difficulty, with generated token counts
    (`style`: the policy's chain style, `chain_style(meta)`, which sets the token budget)."""
    from ttcl.zoo.sampling import generate

    prompt_fn = prompt_fn or (lambda p: p.prompt)
    items = [Item(p) for p in problems]
    levels: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        levels.setdefault(p.steps, []).append(i)
    for steps, idx in sorted(levels.items()):
        prompts = [prompt_fn(problems[i]) for i in idx]
        mnt = bed_of(problems[idx[0]]).max_new_tokens(steps, style)
        for i, g in zip(idx, generate(model, tok, prompts, n=1, max_new_tokens=mnt, batch_size=batch_size),
                        strict=True):
            items[i].greedy = g[0]
        if k:
            outs = generate(model, tok, prompts, n=k, temperature=temperature, max_new_tokens=mnt,
                            batch_size=batch_size, seed=seed + 1000 * steps)
            for i, s in zip(idx, outs, strict=True):
                items[i].samples = s
    return items


def run_sets(model, tok, bed: Bed, seeds: Sequence[int], per_level: int, k: int, temperature: float,
             style: str = "ops") -> tuple[list[Problem], list[Item]]:
    """`run_policy` on the evaluation set of each seed, pooled in seed order; each set is sampled
    with its own seed, as when it is run alone."""
    problems: list[Problem] = []
    items: list[Item] = []
    for s in seeds:
        ps = bed.problems(per_level, seed=s)
        problems += ps
        items += run_policy(model, tok, ps, k=k, temperature=temperature, seed=s, style=style)
    return problems, items


def sets_label(seeds: Sequence[int]) -> str:
    """How a table names its evaluation sets: `seed=S`, or the pooled list."""
    return f"seed={seeds[0]}" if len(seeds) == 1 else f"seed in {list(seeds)}, pooled"


def gen_tokens(text: str) -> int:
    """Generated tokens of a completion under the character tokenizer, with its <eos>."""
    return len(text) + 1


def policy_flops(meta: dict, prompt: str, completions: Sequence[str]) -> float:
    """FLOPs to prefill the prompt once and decode every completion (the runtime shares the prefix)."""
    from ttcl.compiler.costmodel import ModelSpec, forward_flops

    spec = ModelSpec(non_embedding_params=meta["params_non_embedding"], n_layer=meta["n_layer"],
                     d_model=meta["d_model"])
    p = len(prompt)
    total = forward_flops(spec, 0, p)
    for c in completions:
        total += forward_flops(spec, p, p + gen_tokens(c) - 1)
    return total


def verifier_flops(meta: dict, question: str, completions: Sequence[str]) -> float:
    """FLOPs of one verifier pass over each completion (`{question}\\n{steps}`, nothing cached)."""
    from ttcl.compiler.costmodel import ModelSpec, forward_flops
    from ttcl.zoo.sampling import prm_completion

    spec = ModelSpec(non_embedding_params=meta["params_non_embedding"], n_layer=meta["n_layer"],
                     d_model=meta["d_model"])
    return sum(forward_flops(spec, 0, len(question) + 1 + len(prm_completion(c))) for c in completions)
