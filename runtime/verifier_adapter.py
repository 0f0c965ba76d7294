"""Model verifiers (reward, PRM, judge) as scheduler `Scorer`s.

`ttcl.runtime.verifiers` scores a flat batch of (question, completion) pairs
and reports one Usage for the whole batch. The scheduler needs one cost per
item (so each item's ledger is honest), so the batch's usage is split over
the groups in proportion to each group's worst case, unit by unit. The
worst case of a group is exact for reward models and PRMs (every token is
computed, nothing cached), so the split gives each item exactly its own
cost. A judge on a local model reads through the policy's prefix cache, so
there each item is charged its worst case, its whole pass as if it ran
alone, and what the cache saved is counted as prefill served across items.
"""

from __future__ import annotations

import math
from typing import Any

from ttcl.compiler.costmodel import Cost, forward_flops
from ttcl.compiler.dag import VerifierRef
from ttcl.compiler.endpoints import is_endpoint
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.backends.base import Usage
from ttcl.runtime.ops import render
from ttcl.runtime.scoring import Scored, Scorer
from ttcl.runtime.values import Candidates

_UNITS = ("calls", "prompt_tokens", "gen_tokens", "flops", "seconds")


def split_usage(total: Cost, worsts: list[Cost]) -> list[Cost]:
    """`total` shared out in proportion to each part's worst case, per unit (seconds: by FLOPs)."""
    out: list[dict[str, float]] = [{} for _ in worsts]
    for unit in _UNITS:
        key = "flops" if unit == "seconds" else unit
        weights = [getattr(w, key) for w in worsts]
        s = sum(weights)
        amount = getattr(total, unit)
        for i, w in enumerate(weights):
            out[i][unit] = amount * w / s if s > 0 else (amount / len(worsts) if unit == "seconds" else 0.0)
    return [Cost(**d) for d in out]


class _PairScorer:
    """A verifier over (question, completion) pairs; one batched `score` call for every group."""

    def __init__(self, name: str, verifier: Any) -> None:
        self.name = name
        self.v = verifier

    def pairs(self, question: str, cands: Candidates) -> list[tuple[str, str]]:
        return [(question, c.text) for c in cands.items]

    def item_worst(self, q: str, c: str) -> Cost:
        L = self.v.item_tokens(q, c)
        return Cost(calls=1, prompt_tokens=L, flops=forward_flops(self.v.spec, 0, L))

    def worst_case(self, question: str, cands: Candidates) -> Cost:
        return sum((self.item_worst(q, c) for q, c in self.pairs(question, cands)), Cost())

    def score(self, groups: list[tuple[str, Candidates]]) -> list[Scored | Exception]:
        flat: list[tuple[str, str]] = []
        spans: list[tuple[int, int]] = []
        for q, cands in groups:
            p = self.pairs(q, cands)
            spans.append((len(flat), len(flat) + len(p)))
            flat.extend(p)
        steps: list[list[float]] | None = None
        try:
            if hasattr(self.v, "score_steps"):  # a PRM: keep its step scores for the trace
                scores, steps, usage = self.v.score_steps(flat)
            else:
                scores, usage = self.v.score(flat)
            failed: dict[int, BaseException] = {}
        except TtclRuntimeError as e:
            charged = getattr(e, "usage", None)
            if charged is not None and not hasattr(e, "failures"):  # a server call that failed as a whole
                scores, usage, failed = [math.nan] * len(flat), charged, dict.fromkeys(range(len(flat)), e)
            elif not hasattr(e, "failures"):
                raise
            scores, usage, failed = e.scores, e.usage, e.failures  # type: ignore[attr-defined]
        costs = self.charges(usage, [self.worst_case(q, c) for q, c in groups])
        out: list[Scored | Exception] = []
        for (lo, hi), cost in zip(spans, costs, strict=True):
            bad = [i for i in range(lo, hi) if i in failed]
            if bad:
                err = TtclRuntimeError(f"verifier {self.name!r}: {failed[bad[0]]}")
                err.usage = Usage(calls=cost.calls, prompt_tokens=cost.prompt_tokens, gen_tokens=cost.gen_tokens,  # type: ignore[attr-defined]
                                  flops=cost.flops, seconds=cost.seconds)  # what its share of the batch was charged
                out.append(err)
            else:
                st = [tuple(float(x) for x in steps[i]) for i in range(lo, hi)] if steps is not None else [None] * (hi - lo)
                out.append(Scored([float(s) for s in scores[lo:hi]], st, cost))
        return out


    def charges(self, usage: Usage, worsts: list[Cost]) -> list[Cost]:
        """Each group's cost: the batch's usage shared out in proportion to the groups' worst cases."""
        return split_usage(usage.to_cost(), worsts)


class _JudgeScorer(_PairScorer):
    """A judge: the rubric is filled per candidate here; the candidate is appended when it names none."""

    def __init__(self, name: str, verifier: Any, backend: Any, ref: VerifierRef) -> None:
        super().__init__(name, verifier)
        self.backend = backend
        self.rubric = ref.rubric or []
        self.names_candidate = any(p.source is None and p.path[:1] == ["c"] for p in self.rubric)

    def pairs(self, question: str, cands: Candidates) -> list[tuple[str, str]]:
        out = []
        for c in cands.items:
            text = render(self.rubric, {}, {"c": c, "question": question})
            if not self.names_candidate:
                text = text + c.prompt + c.text
            out.append((question, text))
        return out

    def item_worst(self, q: str, c: str) -> Cost:
        L = self.backend.count_tokens(c)
        return Cost(calls=1, prompt_tokens=L, flops=forward_flops(self.backend.spec, 0, L))

    def charges(self, usage: Usage, worsts: list[Cost]) -> list[Cost]:
        """On a local model, each item pays its whole pass, as if it ran alone: the judge reads through
        the policy's prefix cache, where another item's prompt must not make this one's cheaper. What the
        cache saved goes to the backend's count of prefill served across items. (A server reports each
        call's own prompt tokens: its usage is shared out as for any verifier.)"""
        be = self.backend
        if not hasattr(be, "shared_prompt_tokens"):
            return super().charges(usage, worsts)
        flops = sum(w.flops for w in worsts)
        be.shared_prompt_tokens += sum(w.prompt_tokens for w in worsts) - usage.prompt_tokens
        be.shared_flops += flops - usage.flops
        return [Cost(calls=w.calls, prompt_tokens=w.prompt_tokens, flops=w.flops,
                     seconds=usage.seconds * w.flops / flops if flops > 0 else usage.seconds / len(worsts))
                for w in worsts]


def model_scorer(ref: VerifierRef, backends: dict[str, Any], *, device: str, dtype: str) -> Scorer:
    from ttcl.runtime import verifiers as V

    if ref.model is None:
        raise TtclRuntimeError(f"verifier {ref.name!r}: no model")
    if is_endpoint(ref.model.ref) and ref.kind == "judge":  # next-token log-probabilities on vLLM
        from ttcl.runtime.runner import load_backend

        base = None if ref.model.base_dir is None else str(ref.model.base_dir)
        be = backends.get(ref.model.ref) or load_backend(ref.model.ref, device, dtype, dict(ref.model.options), base)
        try:
            be.require_logprobs()
        except TtclRuntimeError as e:
            raise TtclRuntimeError(f"verifier {ref.name!r}: {e}") from None
        return _JudgeScorer(ref.name, V.JudgeVerifier(be, "{completion}"), be, ref)
    if is_endpoint(ref.model.ref):
        if ref.kind != "reward":
            raise TtclRuntimeError(f"verifier {ref.name!r}: a {ref.kind} verifier on a server is not supported "
                                   "(reward models on vLLM's /classify and judges on vLLM's logprobs are); "
                                   "use a local model")
        from ttcl.runtime.endpoint_reward import reward_on_endpoint

        return _PairScorer(ref.name, reward_on_endpoint(ref.model))
    meta = V.model_meta(ref.model.ref) if ref.kind in ("reward", "prm") else {}
    if str(meta.get("verifier", "")).lower() == "likelihood":
        raise TtclRuntimeError(f"verifier {ref.name!r}: {ref.model.ref} is read by its likelihood, not as a "
                               f"{'reward model' if ref.kind == 'reward' else 'PRM'}\n  hint: "
                               f"likelihood(\"{ref.model.ref}\")")
    if ref.kind == "reward":
        return _PairScorer(ref.name, V.RewardModelVerifier(ref.model.ref, device=device, dtype=dtype))
    if ref.kind == "prm":
        from ttcl.runtime.verifier_gen import GenerativeStepVerifier, is_generative

        cls = GenerativeStepVerifier if is_generative(meta) else V.ProcessRewardVerifier
        return _PairScorer(ref.name, cls(ref.model.ref, agg=ref.agg or "last", device=device, dtype=dtype))
    if ref.kind == "likelihood":
        from ttcl.runtime.verifier_gen import likelihood_verifier

        return _PairScorer(ref.name, likelihood_verifier(ref.model.ref, device=device, dtype=dtype))
    if ref.kind == "judge":
        from ttcl.runtime.runner import load_backend

        be = backends.get(ref.model.ref) or load_backend(ref.model.ref, device, dtype)
        return _JudgeScorer(ref.name, V.JudgeVerifier(be, "{completion}"), be, ref)
    raise TtclRuntimeError(f"verifier {ref.name!r}: unknown kind {ref.kind!r}")
