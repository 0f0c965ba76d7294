"""`ttcl run --resume --retry-failed`: run again the items an earlier run recorded as failed.

An item fails when a node of it raises (a server unreachable after its
retries, a user's checker that raises): `--resume` alone keeps it failed,
like every item that has an item record. With `--retry-failed` such an item
runs again: its nodes that finished (ok or shrunk, with replayable outputs)
are replayed from the trace like a partly run item's (not run or paid for
again), and its failed node and everything after it run anew.

A `retry` record naming the kept nodes is written before the item runs
again. `read_trace` then withdraws the failed item record, counts the kept
node records towards the item's next record and retires the others, so the
new record wins on a later `--resume` and the item's nodes are the kept and
the new ones. What the failed attempt spent stays in the trace's `spend`
records, so a pooled budget is still charged for it.
"""

from __future__ import annotations

from ttcl.runtime.trace import NodeRecord, RetryRecord, Trace
from ttcl.runtime.values import replayable


def failed_items(old: Trace, wanted: set[int]) -> list[int]:
    """The items of this run that the trace holds as failed."""
    return sorted(i for i, rec in old.items.items() if i in wanted and rec.status == "failed")


def kept_nodes(recs: list[NodeRecord]) -> list[NodeRecord]:
    """The node records a rerun replays: finished (ok or shrunk) with outputs that can be read back."""
    return [r for r in recs if r.status in ("ok", "shrunk") and replayable(r.outputs)]


def retry_records(replay: dict[int, list[tuple[str, object, object, object]]], retry: list[int]) -> list[dict]:
    """The `retry` records of the items about to run again, each naming the nodes it replays."""
    return [RetryRecord(item=i, kept=[entry[0] for entry in replay.get(i, [])]).model_dump(mode="json") for i in retry]


def resume_note(old: Trace, wanted: set[int], retry: bool) -> str | None:
    """The stderr line `--resume` prints when the trace holds failed items (None: it holds none)."""
    failed = failed_items(old, wanted)
    if not failed:
        return None
    if retry:
        steps = sum(len(kept_nodes(old.nodes.get(i, []))) for i in failed)
        return f"rerunning the {len(failed)} items that failed in the earlier run ({steps} finished steps replayed)"
    return (f"{len(failed)} items failed in the earlier run and are kept as failed; "
            "add --retry-failed to run them again")


__all__ = ["failed_items", "kept_nodes", "resume_note", "retry_records"]
