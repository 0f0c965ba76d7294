"""One-pool estimators: every k <= N from one pool of N samples per item.

For an item with a pool of N candidates (answer, correct, verifier scores)
the estimators give the *expected* accuracy of a rule that draws k of the N
uniformly without replacement:

- pass@k: some drawn candidate is right. Unbiased closed form of Chen et al.
  2021: 1 - C(N-c, k) / C(N, k) with c right candidates.
- strict pass@k: the same with c counting candidates whose every step the
  task's step checker accepts (and whose answer is right).
- best@k (per verifier): the answer of the highest-scored drawn candidate that
  has one. Exact: the drawn top score level is L with probability
  [C(N-A_L, k) - C(N-A_L-s_L, k)] / C(N, k) (A_L answered candidates score
  above L, s_L score exactly L), and a tie within L is a uniform draw.
- maj@k and weighted@k: the majority (score-weighted) answer of the drawn k
  (Wang et al. 2022). Exact by enumerating the C(N, k) subsets when there are
  at most `ENUMERATE` of them, else a Monte Carlo mean over `SAMPLES` subsets
  from a seeded generator. As the runtime's `vote`, a weight tie goes to the
  answer with more votes (all weights 0 is a plain majority); a tie left
  between t answers credits 1/t to each (a uniform tie break where the
  runtime takes the earliest), so the estimate does not depend on order.

A rule that continues from a probe (the pool's first M samples, already
drawn and scored to estimate the item's difficulty) draws k >= M that keep
those M: `estimate_keeping` averages the rule over every such draw (or
SAMPLES seeded ones when there are more than ENUMERATE), and
`flops_keeping` charges the M decodes actually made plus k - M more.

FLOPs at k (expected over the draw) come from the ledger: the prompt
prefill shared by the pool is paid once, each drawn candidate pays its own
decode, and a verifier scores each distinct text among the drawn once, as
the runtime does (a duplicate reuses its twin's score, uncharged): text t,
m_t times in the pool, is scored with probability 1 - C(N-m_t, k)/C(N, k)
at its share of the verify node's FLOPs. At k = N this is the node's cost.
shared + k * mean(gen) + sum_t P(t drawn) * share_t.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

ENUMERATE = 5000
SAMPLES = 2000
RULES = ("pass", "strict", "maj", "weighted", "best")


@dataclass
class Pool:
    """One item's pool: per candidate its answer, correctness, own FLOPs; per verifier its scores and cost."""

    answers: list[str | None]
    correct: list[bool]
    gen_flops: list[float]  # each candidate's own decode FLOPs
    shared_flops: float = 0.0  # the prefill the whole pool shared (paid once)
    scores: dict[str, list[float]] = field(default_factory=dict)  # verifier name -> score per candidate
    verifier_flops: dict[str, float] = field(default_factory=dict)  # verifier name -> FLOPs over the pool
    strict: list[bool] | None = None  # every step right (a task step checker), where there is one
    texts: list[int] | None = None  # per candidate, which distinct text it is (equal ids: one text); None: all distinct
    tokens: float = 0.0  # the sample node's tokens, prompt and generated (a greedy pool's: one query's decode)

    @property
    def n(self) -> int:
        return len(self.answers)


def comb(n: int, k: int) -> int:
    return math.comb(n, k) if 0 <= k <= n else 0


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. 2021's unbiased pass@k from n samples with c correct."""
    if k > n:
        raise ValueError(f"k = {k} > n = {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def best_at_k(scores: Sequence[float], answers: Sequence[str | None], correct: Sequence[bool], k: int) -> float:
    """Expected correctness of the top-scored answered candidate among k drawn (exact, ties uniform)."""
    n = len(scores)
    total = comb(n, k)
    levels: dict[float, list[bool]] = {}
    for s, a, ok in zip(scores, answers, correct, strict=True):
        if a is not None and not math.isnan(s):
            levels.setdefault(float(s), []).append(bool(ok))
    above, out = 0, 0.0
    for s in sorted(levels, reverse=True):
        group = levels[s]
        p_top = (comb(n - above, k) - comb(n - above - len(group), k)) / total
        out += p_top * (sum(group) / len(group))
        above += len(group)
    return out


def _vote_credit(subsets: np.ndarray, ids: np.ndarray, right: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Credit of each subset (rows of candidate indices) as the runtime's `vote` picks: the answer of the largest
    weight among those drawn, a weight tie going to more votes (so zero weights everywhere is a plain majority);
    a tie left after that credits the right winners' share (uniform, where the runtime takes the earliest)."""
    a = right.size
    rows = np.arange(subsets.shape[0])[:, None]
    picked, w = ids[subsets], weights[subsets]  # [M, k]
    col = np.where(picked < 0, a, picked)  # column a collects candidates without an answer
    tally = np.zeros((subsets.shape[0], a + 1))
    votes = np.zeros((subsets.shape[0], a + 1))
    np.add.at(tally, (rows, col), w)
    np.add.at(votes, (rows, col), 1.0)
    tally, votes = tally[:, :a], votes[:, :a]
    drawn = votes > 0
    top = np.where(drawn, tally, -np.inf).max(axis=1, keepdims=True)
    win = drawn & (tally == top)
    most = np.where(win, votes, -1.0).max(axis=1, keepdims=True)
    win &= votes == most
    n_win = win.sum(axis=1)
    return np.where(n_win > 0, (win & right[None, :]).sum(axis=1) / np.maximum(n_win, 1), 0.0)


def _draws(n: int, k: int, first: int = 0, seed: int = 0) -> np.ndarray:
    """Candidate subsets of size k (rows of indices) that hold the first `first` candidates and k - first
    of the others: every such subset when there are at most ENUMERATE, else SAMPLES seeded uniform draws."""
    extra, rest = k - first, n - first
    if comb(rest, extra) <= ENUMERATE:
        combos = list(itertools.combinations(range(first, n), extra))
        tails = np.array(combos, dtype=int).reshape(len(combos), extra)
    else:
        tails = first + np.argsort(np.random.default_rng(seed).random((SAMPLES, rest)), axis=1)[:, :extra]
    return np.concatenate([np.broadcast_to(np.arange(first), (tails.shape[0], first)), tails], axis=1)


def _vote_on(subsets: np.ndarray, answers: Sequence[str | None], correct: Sequence[bool],
             weights: Sequence[float] | None) -> float:
    """Mean credit of the (weighted) majority answer over the given subsets."""
    keys = list(dict.fromkeys(a for a in answers if a is not None))
    right = np.array([any(ok for a2, ok in zip(answers, correct, strict=True) if a2 == a) for a in keys], dtype=bool)
    if not right.any():
        return 0.0
    ids = np.array([keys.index(a) if a is not None else -1 for a in answers])
    w = np.ones(len(answers)) if weights is None else np.nan_to_num(np.asarray(weights, dtype=float), nan=0.0)
    return float(_vote_credit(subsets, ids, right, w).mean())


def vote_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int,
              weights: Sequence[float] | None = None, seed: int = 0) -> float:
    """Expected correctness of the (weighted) majority answer of k drawn candidates."""
    n = len(answers)
    if k > n:
        raise ValueError(f"k = {k} > n = {n}")
    return _vote_on(_draws(n, k, 0, seed), answers, correct, weights)


def _best_on(subsets: np.ndarray, scores: Sequence[float], answers: Sequence[str | None],
             correct: Sequence[bool]) -> float:
    """Mean correctness of the top-scored answered candidate of each subset (ties uniform)."""
    s = np.asarray(scores, dtype=float)
    usable = np.array([a is not None for a in answers]) & ~np.isnan(s)
    valid, got = usable[subsets], np.where(usable, s, -np.inf)[subsets]
    top = got.max(axis=1, keepdims=True)
    tie = valid & (got == top)
    n_tie = tie.sum(axis=1)
    ok = (tie & np.asarray(correct, dtype=bool)[subsets]).sum(axis=1)
    return float(np.where(n_tie > 0, ok / np.maximum(n_tie, 1), 0.0).mean())


def rule_verifier(signal: str) -> tuple[str, str | None]:
    """`maj` -> ("maj", None); `orm_w` -> ("weighted", "orm"); `orm_best` -> ("best", "orm")."""
    if signal in ("pass", "strict", "maj"):
        return signal, None
    if signal.endswith("_w"):
        return "weighted", signal[:-2]
    if signal.endswith("_best"):
        return "best", signal[:-5]
    raise ValueError(f"unknown signal {signal!r}")


def signal_names(strict: bool, verifiers: Iterable[str]) -> list[str]:
    """The rules of a pool: pass, strict (with a step checker), maj, and per scoring verifier _w and _best."""
    return ["pass", *(["strict"] if strict else []), "maj", *(f"{v}{suffix}" for v in verifiers for suffix in ("_w", "_best"))]


def signals_of(pool: Pool) -> list[str]:
    """Every rule this pool supports."""
    return signal_names(pool.strict is not None, pool.scores)


def estimate(pool: Pool, signal: str, k: int, seed: int = 0) -> float:
    """Expected accuracy of `signal` at k for this item."""
    rule, v = rule_verifier(signal)
    if rule == "pass":
        return pass_at_k(pool.n, sum(pool.correct), k)
    if rule == "strict":
        if pool.strict is None:
            raise ValueError("strict pass@k needs a step checker")
        return pass_at_k(pool.n, sum(pool.strict), k)
    if rule == "maj":
        return vote_at_k(pool.answers, pool.correct, k, seed=seed)
    assert v is not None
    scores = pool.scores[v]
    if rule == "weighted":
        return vote_at_k(pool.answers, pool.correct, k, weights=scores, seed=seed)
    return best_at_k(scores, pool.answers, pool.correct, k)


def pass_flops(pool: Pool, verifier: str | None, k: int, first: int = 0) -> float:
    """Expected FLOPs of `verifier` scoring a draw of k candidates that keeps the pool's first `first` and draws
    the rest uniformly from the others: each distinct text drawn is scored once, at its share of the pool's
    verifier FLOPs (verifier_flops / the number of distinct texts); 0 without a verifier."""
    n = pool.n
    if verifier is None or not n or verifier not in pool.verifier_flops:
        return 0.0
    if not 0 <= first <= k <= n:
        raise ValueError(f"need 0 <= first ({first}) <= k ({k}) <= n ({n})")
    ids = pool.texts if pool.texts is not None else list(range(n))
    kept = set(ids[:first])
    rest: dict[int, int] = {}
    for t in ids[first:]:
        rest[t] = rest.get(t, 0) + 1
    texts = kept | set(rest)
    r, draw = n - first, k - first
    drawn = len(kept) + sum(1.0 - comb(r - m, draw) / comb(r, draw) for t, m in rest.items() if t not in kept)
    return pool.verifier_flops[verifier] * drawn / len(texts)


def flops_at_k(pool: Pool, signal: str, k: int) -> float:
    """Expected FLOPs of drawing k (prefill once) and, for verifier rules, scoring the k drawn."""
    n = pool.n
    gen = pool.shared_flops + k * (sum(pool.gen_flops) / n if n else 0.0)
    return gen + pass_flops(pool, rule_verifier(signal)[1], k)


def estimate_keeping(pool: Pool, signal: str, k: int, first: int, seed: int = 0) -> float:
    """Expected accuracy of `signal` over k candidates that keep the pool's first `first` (a probe's
    samples) and draw the other k - first uniformly from the rest: a rule that continues from a probe."""
    if not 0 <= first <= k <= pool.n:
        raise ValueError(f"need 0 <= first ({first}) <= k ({k}) <= n ({pool.n})")
    subsets = _draws(pool.n, k, first, seed)
    rule, v = rule_verifier(signal)
    if rule in ("pass", "strict"):
        ok = pool.correct if rule == "pass" else pool.strict
        if ok is None:
            raise ValueError("strict pass@k needs a step checker")
        return float(np.asarray(ok, dtype=bool)[subsets].any(axis=1).mean())
    if rule == "maj":
        return _vote_on(subsets, pool.answers, pool.correct, None)
    assert v is not None
    if rule == "weighted":
        return _vote_on(subsets, pool.answers, pool.correct, pool.scores[v])
    return _best_on(subsets, pool.scores[v], pool.answers, pool.correct)


def flops_keeping(pool: Pool, signal: str, k: int, first: int, probe_verifier: str | None = None) -> float:
    """FLOPs of `estimate_keeping`'s rule: the shared prefill, the first `first` decodes, k - first more at
    the mean decode cost of the rest, k passes of the rule's verifier, and `probe_verifier`'s passes over
    the first `first` when the rule does not use that verifier."""
    rest = pool.gen_flops[first:]
    gen = pool.shared_flops + sum(pool.gen_flops[:first]) + (k - first) * (sum(rest) / len(rest) if rest else 0.0)
    _, v = rule_verifier(signal)
    return gen + pass_flops(pool, v, k, first) + (pass_flops(pool, probe_verifier, first, first)
                                                  if probe_verifier != v else 0.0)


def default_ks(n: int) -> list[int]:
    """Powers of two up to n, and n."""
    ks = [1 << i for i in range(max(1, n).bit_length()) if 1 << i <= n]
    return ks if ks and ks[-1] == n else [*ks, n]


__all__ = ["Pool", "RULES", "best_at_k", "default_ks", "estimate", "estimate_keeping", "flops_at_k", "flops_keeping",
           "pass_at_k", "pass_flops", "rule_verifier", "signal_names", "signals_of", "vote_at_k"]
