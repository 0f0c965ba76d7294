"""Read one-pool data back from a run trace: per item, its dataset fields and its pool of candidates.

The pool is the output of one `sample` node; every `verify` node over that
node adds one score per candidate (reward models and PRMs become selection
signals; an exact `check(...)` verifier gives the step scores behind strict
pass@k). Each candidate's extracted answer is judged right by the run's own
judge, named in the trace header: equality with the item's gold answer by
default, or a registered checker's outcome (`--judge countdown`, on a task
with several right answers), the same test the run applied to its final answer.
An item some candidate of which the judge cannot grade (a user's checker
raised, or no gold answer) carries `judge_error`: `ttcl eval` leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttcl.runtime.analysis.pool import Pool, signal_names
from ttcl.runtime.judge import GOLD, Judge, JudgeError, make_judge
from ttcl.runtime.trace import Trace


@dataclass
class PoolNodes:
    """Where the pool lives in a program: the sample node and the verify nodes over it."""

    sample: str
    verifiers: dict[str, tuple[str, str]]  # verify node id -> (verifier name, kind: check | reward | prm | judge)
    model: str | None = None  # the sample node's model's name (the trace header maps it to its ref)


@dataclass
class PooledItem:
    index: int
    fields: dict[str, Any]
    correct: bool | None  # the program's own answer
    pool: Pool
    judge_error: str | None = None  # why the judge could not grade some candidate: the item is ungraded


def find_pool_nodes(dag: Any) -> PoolNodes:
    """The sample node most verify nodes read (the first sample node when none is verified)."""
    samples = [n for n in dag if n.op == "sample"]
    if not samples:
        raise ValueError("the program has no sample node to draw a pool from")
    readers: dict[str, dict[str, tuple[str, str]]] = {s.id: {} for s in samples}
    for n in dag:
        if n.op == "verify" and n.args.verifier is not None:
            src = n.input_nodes("cands")
            if src and src[0] in readers:
                readers[src[0]][n.id] = (n.args.verifier.name, n.args.verifier.kind)
    best = max(samples, key=lambda s: len(readers[s.id]))
    return PoolNodes(best.id, readers[best.id], best.args.model.name if best.args.model is not None else None)


def pool_signals(nodes: PoolNodes) -> tuple[list[str], list[str]]:
    """What a pool of these nodes will offer, before any run: (its signals, the verifiers that score it)."""
    scorers = list(dict.fromkeys(name for name, kind in nodes.verifiers.values() if kind != "check"))
    return signal_names(any(kind == "check" for _, kind in nodes.verifiers.values()), scorers), scorers


def pools_from_trace(trace: Trace, nodes: PoolNodes, only: set[int] | None = None,
                     judge: Judge | None = None) -> list[PooledItem]:
    """One pooled item per finished item of the trace (only the items in `only`, when given).

    Candidates are judged by `judge`, by default the one the trace header names (the run's own)."""
    if judge is None:
        judge = make_judge(getattr(trace.header, "judge", GOLD))
    # on a server every sample prefills its own prompt (docs/endpoints.md): no prefill is shared, and each
    # candidate's cost is its share of the node's (QA pass: k = 1 was charged all N prefills, 3x its FLOPs)
    ref = (trace.header.models or {}).get(nodes.model or "")
    own_prefill = ref is not None and ref in (getattr(trace.header, "engines", None) or {})
    out: list[PooledItem] = []
    for idx in sorted(trace.items):
        if only is not None and idx not in only:
            continue
        rec = trace.items[idx]
        by_id = {r.node_id: r for r in trace.nodes.get(idx, [])}
        src = by_id.get(nodes.sample)
        cands = src.outputs if src is not None and isinstance(src.outputs, list) else []
        answers = [c.get("answer") for c in cands]
        verdicts: dict[str | None, bool | None] = {}  # a pool repeats answers: each distinct one is judged once
        error = None
        for a in answers:
            if a not in verdicts:
                try:
                    verdicts[a] = judge(rec.question, rec.gold, a)
                except JudgeError as e:  # a user's checker raised: ungraded, never counted wrong
                    verdicts[a], error = None, error or str(e)
        if error is None and None in verdicts.values():
            error = "no gold answer to judge by"
        correct = [bool(verdicts[a]) for a in answers]
        gen = [float(c.get("flops", 0.0)) for c in cands]
        shared = float(src.cost.get("flops", 0.0)) - sum(gen) if src is not None else 0.0
        decode = gen  # what a verify node's per-candidate FLOPs add to (its outputs carry the candidate's)
        if own_prefill and cands and shared > 0:
            gen, shared = [g + shared / len(cands) for g in gen], 0.0
        ids: dict[tuple[object, object], int] = {}  # the runtime scores each distinct (prompt, text) once
        texts = [ids.setdefault((c.get("prompt"), c.get("text")), len(ids)) for c in cands]
        pool = Pool(answers=answers, correct=correct, gen_flops=gen, shared_flops=max(0.0, shared), texts=texts,
                    tokens=float(src.cost.get("tokens", 0.0)) if src is not None else 0.0)
        for node_id, (name, kind) in nodes.verifiers.items():
            r = by_id.get(node_id)
            if r is None or not isinstance(r.outputs, list) or len(r.outputs) != len(cands):
                continue
            if kind == "check":
                steps = [c.get("step_scores") or [] for c in r.outputs]
                pool.strict = [ok and bool(st) and all(x == 1.0 for x in st) for ok, st in zip(correct, steps, strict=True)]
                continue
            pool.scores[name] = [float(c["score"]) if c.get("score") is not None else float("nan") for c in r.outputs]
            # the node's cost: each distinct text's share once (a duplicate carries its twin's share, not charged again)
            share: dict[int, float] = {}
            for t, v, g in zip(texts, r.outputs, decode, strict=True):
                share.setdefault(t, float(v.get("flops", 0.0)) - g)
            pool.verifier_flops[name] = sum(share.values())
        out.append(PooledItem(idx, dict(rec.fields), rec.correct, pool, judge_error=error))
    return out
