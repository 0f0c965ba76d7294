"""Runtime values and the cheap operations on them.

A strategy's values are text, numbers, bools, answers and candidates. A
candidate is one generated sequence plus what the runtime learned about it
(its extracted answer, its verifier score). The selection and statistics
built-ins (`vote`, `best`, `top`, `filter`, `agreement`, ...) are pure
functions here: they cost no model call, so the scheduler runs them inline.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """One sequence. `text` is everything generated after `prompt` (all steps, for `extend`)."""

    prompt: str
    text: str
    answer: str | None = None
    score: float | None = None
    step_scores: tuple[float, ...] | None = None
    tokens: int = 0
    finish: str = ""
    uid: str = ""  # who made it: "<node id>#<index>"; kept by selection, scoring and carrying over
    ancestors: tuple[str, ...] = ()  # uids of the candidates it continues (extend) or rewrites (revise)

    @property
    def finished(self) -> bool:
        """The model ended this sequence (end-of-sequence): nothing is left to continue."""
        return self.finish == "eos"

    def descends_from(self, other: Candidate) -> bool:
        return bool(other.uid) and (self.uid == other.uid or other.uid in self.ancestors)
    # FLOPs this candidate alone caused: its decode (and, for extend/revise, its own context),
    # plus its share of each verifier pass over it. A prompt prefilled once for many samples
    # is not in any candidate's share; the node record's cost minus the shares is that prefix.
    flops: float = 0.0

    def with_score(self, score: float | None, steps: tuple[float, ...] | None = None,
                   flops: float = 0.0) -> Candidate:
        return replace(self, score=score, step_scores=steps if steps is not None else self.step_scores,
                       flops=self.flops + flops)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": self.prompt, "text": self.text, "answer": self.answer}
        if self.score is not None:
            out["score"] = self.score
        if self.step_scores is not None:
            out["step_scores"] = list(self.step_scores)
        out["tokens"] = self.tokens
        out["flops"] = self.flops
        if self.finish:
            out["finish"] = self.finish
        if self.uid:  # lineage: what `backup` and carrying over read after a --resume replays this node
            out["uid"] = self.uid
        if self.ancestors:
            out["ancestors"] = list(self.ancestors)
        return out


@dataclass(frozen=True)
class Candidates:
    """An ordered list of candidates (the `candidates` type)."""

    items: tuple[Candidate, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def __add__(self, other: Candidates) -> Candidates:
        return Candidates(self.items + other.items)

    def first(self) -> Candidate | None:
        return self.items[0] if self.items else None

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.items]


@dataclass(frozen=True)
class Answer:
    """A final answer (`answer` type); None when no candidate gave one."""

    value: str | None
    support: float = 0.0  # votes or summed score behind it
    of: int = 0  # candidates it was chosen from


Value = str | float | int | bool | Answer | Candidates | None


def to_json(value: Value) -> Any:
    """What the trace records for a value."""
    if isinstance(value, Candidates):
        return value.to_json()
    if isinstance(value, Answer):
        return {"answer": value.value, "support": value.support, "of": value.of}
    return value


def from_json(data: Any) -> Value:
    """A value back from its trace form (`to_json`): what `--resume` replays for a finished node."""
    if isinstance(data, list):
        return Candidates(tuple(
            Candidate(prompt=c.get("prompt", ""), text=c.get("text", ""), answer=c.get("answer"), score=c.get("score"),
                      step_scores=tuple(c["step_scores"]) if c.get("step_scores") is not None else None,
                      tokens=int(c.get("tokens", 0)), finish=c.get("finish", ""), uid=str(c.get("uid", "")),
                      ancestors=tuple(c.get("ancestors", ())), flops=float(c.get("flops", 0.0)))
            for c in data
        ))
    if isinstance(data, dict) and set(data) == {"answer", "support", "of"}:
        return Answer(data["answer"], float(data["support"]), int(data["of"]))
    return data  # type: ignore[no-any-return]


def replayable(data: Any) -> bool:
    """Whether a recorded output holds everything `from_json` needs (candidates written before 0.1 lack prompts)."""
    return not (isinstance(data, list) and any(not isinstance(c, dict) or "prompt" not in c for c in data))


@dataclass
class _Tally:
    weight: float = 0.0
    first: int = 0
    votes: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def vote(cands: Candidates, *, weighted: bool = False) -> Answer:
    """Majority vote over extracted answers (score-weighted when `weighted`); ties go to the earliest answer."""
    tally: dict[str, _Tally] = {}
    for i, c in enumerate(cands.items):
        if c.answer is None:
            continue
        t = tally.setdefault(c.answer, _Tally(first=i))
        t.weight += (c.score or 0.0) if weighted else 1.0
        t.votes += 1
    if not tally:
        return Answer(None, 0.0, len(cands))
    ans, t = max(tally.items(), key=lambda kv: (kv[1].weight, kv[1].votes, -kv[1].first))
    return Answer(ans, t.weight, len(cands))


def _ranked(cands: Candidates) -> list[Candidate]:
    """Highest score first; unscored last; stable, so ties keep generation order."""
    return sorted(cands.items, key=lambda c: -(c.score if c.score is not None else -math.inf))


def best(cands: Candidates) -> Answer:
    """The answer of the highest-scored candidate that has one."""
    for c in _ranked(cands):
        if c.answer is not None:
            return Answer(c.answer, c.score or 0.0, len(cands))
    return Answer(None, 0.0, len(cands))


def top(cands: Candidates, k: int) -> Candidates:
    return Candidates(tuple(_ranked(cands)[: max(0, int(k))]))


def filter_cands(cands: Candidates, pred: Callable[[Candidate], bool]) -> Candidates:
    return Candidates(tuple(c for c in cands.items if pred(c)))


def agreement(cands: Candidates) -> float:
    """Share of all candidates whose answer is the most common one (no answer never agrees)."""
    if not cands.items:
        return 0.0
    counts = Counter(c.answer for c in cands.items if c.answer is not None)
    if not counts:
        return 0.0
    return max(counts.values()) / len(cands.items)


def best_score(cands: Candidates) -> float:
    scores = [c.score for c in cands.items if c.score is not None]
    return max(scores) if scores else 0.0


def mean_score(cands: Candidates) -> float:
    scores = [c.score for c in cands.items if c.score is not None]
    return sum(scores) / len(scores) if scores else 0.0


def all_finished(cands: Candidates) -> bool:
    """Every candidate has ended; vacuously true for none."""
    return all(c.finished for c in cands.items)


def backup(cands: Candidates, rollouts: Candidates) -> Candidates:
    """Each candidate scored by the best-scored rollout that continues it (lookahead search).

    Lineage is exact (candidate uids, not text prefixes). A candidate with no
    scored rollout keeps its own score.
    """
    out: list[Candidate] = []
    for c in cands.items:
        below = [d for d in rollouts.items if d.score is not None and d.descends_from(c)]
        if not below:
            out.append(c)
            continue
        top_d = max(below, key=lambda d: d.score)  # type: ignore[arg-type,return-value]
        out.append(c.with_score(top_d.score, top_d.step_scores))
    return Candidates(tuple(out))


def balance(cands: Candidates, total: int, temperature: float) -> Candidates:
    """`total` copies of the candidates, shared in proportion to softmax(score / temperature).

    REBASE's expansion widths (Wu et al. 2024). Shares are rounded by the
    largest-remainder rule, so they add up to exactly `total`; ties go to the
    earlier candidate. An unscored candidate counts as score 0; temperature 0
    gives everything to the best. Copies keep their candidate's position.
    """
    items = cands.items
    if not items or total <= 0:
        return Candidates()
    scores = [c.score if c.score is not None else 0.0 for c in items]
    hi = max(scores)
    if temperature <= 0:
        best_i = scores.index(hi)
        weights = [1.0 if i == best_i else 0.0 for i in range(len(items))]
    else:
        weights = [math.exp((s - hi) / temperature) for s in scores]
    z = sum(weights)
    exact = [total * w / z for w in weights]
    counts = [math.floor(x) for x in exact]
    spare = total - sum(counts)
    order = sorted(range(len(items)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:spare]:
        counts[i] += 1
    return Candidates(tuple(c for c, k in zip(items, counts, strict=True) for _ in range(k)))


def count(cands: Candidates) -> float:
    return float(len(cands.items))


def entropy(cands: Candidates) -> float:
    """Entropy (nats) of the answer distribution; a missing answer counts as its own outcome."""
    if not cands.items:
        return 0.0
    counts = Counter(c.answer for c in cands.items)
    n = len(cands.items)
    return -sum((k / n) * math.log(k / n) for k in counts.values())


STATS: dict[str, Callable[[Candidates], float]] = {
    "agreement": agreement,
    "best_score": best_score,
    "mean_score": mean_score,
    "count": count,
    "entropy": entropy,
}


def fallback_answer(values: list[Value]) -> Answer:
    """The best answer so far for an item stopped early: the latest answer, else a vote over the latest candidates."""
    for v in reversed(values):
        if isinstance(v, Answer) and v.value is not None:
            return v
    for v in reversed(values):
        if isinstance(v, Candidates) and len(v):
            scored = any(c.score is not None for c in v.items)
            return vote(v, weighted=scored)
    return Answer(None)
