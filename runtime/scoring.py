"""Verifiers as the scheduler sees them: batched scoring with a worst case and per-item results.

A `Scorer` scores many (question, candidates) groups in one call, one group
per item, so a verify node of 64 items is one batch. A group that fails (a
checker that raises, say) comes back as its exception, and the other groups
keep their scores: one bad item never costs the others their results.

`check(...)` verifiers are registered Python checkers, run here directly.
Model-based verifiers (reward, PRM, judge) come from `ttcl.runtime.verifiers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ttcl.compiler.costmodel import Cost
from ttcl.compiler.dag import VerifierRef
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.values import Candidates
from ttcl.runtime.verifiers import aggregate


@dataclass
class Scored:
    """Scores for one group: one per candidate, step scores where the verifier has them, and the cost."""

    scores: list[float]
    steps: list[tuple[float, ...] | None]
    cost: Cost


class Scorer(Protocol):
    def worst_case(self, question: str, cands: Candidates) -> Cost: ...

    def score(self, groups: list[tuple[str, Candidates]]) -> list[Scored | Exception]: ...


# A checker pass reads no model: like the static bound (compiler/budget.py), it costs nothing.
def check_cost(n_cands: int) -> Cost:
    return Cost()


class CheckScorer:
    """A registered Python checker (`check("arith")`): exact outcome and step scores.

    The score is the outcome, or with `agg` (last | min | prod) the step scores aggregated,
    which scores a partial solution by whether it is right so far (an oracle PRM)."""

    def __init__(self, name: str, agg: str | None = None) -> None:
        from ttcl.runtime.tasks import get_checker

        self.name = name
        self.agg = agg
        self.checker = get_checker(name)

    def worst_case(self, question: str, cands: Candidates) -> Cost:
        return check_cost(len(cands))

    def score(self, groups: list[tuple[str, Candidates]]) -> list[Scored | Exception]:
        out: list[Scored | Exception] = []
        for question, cands in groups:
            try:
                scores: list[float] = []
                steps: list[tuple[float, ...] | None] = []
                for c in cands.items:
                    st = tuple(float(x) for x in self.checker.steps(question, c.text))
                    if self.agg is None:
                        scores.append(float(self.checker.outcome(question, c.text)))
                    else:
                        scores.append(aggregate(list(st), self.agg))
                    steps.append(st)
                out.append(Scored(scores, steps, check_cost(len(cands))))
            except Exception as e:  # a plugin checker may raise anything; it fails this item only
                out.append(TtclRuntimeError(f"checker {self.name!r} raised {type(e).__name__}: {e}"))
        return out


ScorerFactory = Callable[[VerifierRef], Scorer]


def make_scorer(ref: VerifierRef, model_scorer: ScorerFactory | None = None) -> Scorer:
    """The scorer for a verifier declaration."""
    if ref.kind == "check":
        if not ref.checker:
            raise TtclRuntimeError(f"verifier {ref.name!r}: check() names no checker")
        return CheckScorer(ref.checker, ref.agg)
    if model_scorer is None:
        raise TtclRuntimeError(f"verifier {ref.name!r}: {ref.kind} verifiers need a model backend")
    return model_scorer(ref)
