"""What `on_exhaust` took from an item: the plain-words list a run reports for every degraded item.

An item is degraded when the accountant shrank one of its nodes (fewer
samples or shorter ones than the program asked for) or refused one (the
item stopped, so later nodes never ran and the answer came from whatever had
finished). Spend stays within the budget either way; what changed is the
strategy, and a run must say so rather than report that all was well.
"""

from __future__ import annotations

from collections.abc import Mapping

from ttcl.compiler.dag import Dag
from ttcl.runtime.values import Answer, Candidates, Value


def fallback_source(completed: list[str], values: Mapping[str, Value]) -> str:
    """Which finished node an early answer came from, and how (mirrors `values.fallback_answer`)."""
    for node_id in reversed(completed):
        v = values.get(node_id)
        if isinstance(v, Answer) and v.value is not None:
            return f"the answer is {node_id}'s"
    for node_id in reversed(completed):
        v = values.get(node_id)
        if isinstance(v, Candidates) and len(v):
            scored = any(c.score is not None for c in v.items)
            return f"the answer is a {'score-weighted' if scored else 'plain (unweighted)'} vote over {node_id}"
    return "no answer had finished"


def describe(dag: Dag, *, shrunk: Mapping[str, str], refused: Mapping[str, str], skipped: Mapping[str, str],
             output_done: bool, completed: list[str], values: Mapping[str, Value]) -> list[str]:
    """One line per change: each shrunk node, each refused node with what did not run, and the fallback."""
    out = [f"{node}: {why}" for node, why in shrunk.items()]
    for node, why in refused.items():
        out.append(f"{node} ({dag[node].op}) did not run: {why}")
    dropped = [n for n, why in skipped.items() if why.startswith("item ")]
    if dropped:
        ops = ", ".join(dict.fromkeys(f"{dag[n].op}" for n in dropped))
        out.append(f"dropped after the stop: {len(dropped)} nodes ({ops})")
    if refused and not output_done:
        out.append(fallback_source(completed, values) + ", not the strategy's own result")
    return out


__all__ = ["describe", "fallback_source"]
