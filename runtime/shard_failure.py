"""What a wide run does when a shard's worker fails: run its rest again, then find the item that kills it.

A worker that dies (killed, out of memory, a crash in native code or in a
`--verifier`) or raises loses the attempt in flight; its unfinished items
run again on a fresh worker, up to `MAX_ATTEMPTS` times per shard. A shard
that fails that often usually holds one "poison" item, and ending the run
there left every other unfinished item of the shard undone (QA pass: 6 of
12 items saved because of one). So the shard's rest is then split in
halves, each run on its own; a half that fails is split again, and an item
that fails when it runs alone is recorded as failed (answer none, cost
none: what its attempts spent is in the trace's `lost` records, counted
against a pooled budget), and the rest of the shard finishes.

When nothing in the shard finishes while items keep failing alone, the
fault is not in an item (a bug, a model that cannot run at all): after
`CONDEMNED_MAX` such items the run ends with `ShardFailedError`, naming the
items left, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ttcl.runtime.dataset import Item
from ttcl.runtime.ray_cluster import ShardFailedError, _ray
from ttcl.runtime.trace import ItemRecord

MAX_ATTEMPTS = 3  # per shard: a worker may die twice; then its rest is split to find the item that kills it
CONDEMNED_MAX = 3  # items failed alone, with nothing else of the shard finished: the fault is not in one item


@dataclass
class Task:
    """Items of one shard handed to one worker: the shard's whole rest, or (`isolating`) a part of it."""

    shard: int
    items: list[Item]
    attempt: int = 0
    isolating: bool = False


@dataclass
class Isolation:
    """The driver's memory of shards being split. An item that failed alone waits in `pending` until another
    item of its shard finishes in the splitting (`proved`): only then is the fault surely the item's, and its
    failed record written; at `CONDEMNED_MAX` with none proved, the run ends instead and no record is written
    (a resume runs them again)."""

    shard_items: dict[int, list[int]]
    pending: dict[int, list[tuple[Item, str]]] = field(default_factory=dict)
    proved: set[int] = field(default_factory=set)

    def after(self, task: Task, rest: list[Item], finished: set[int], e: BaseException) -> tuple[list[Task], str]:
        """A failed attempt of `task` whose `rest` is unfinished (`finished`: every item of the run finished so
        far): the tasks to run next, first first, and the note to say (empty: none)."""
        why = why_failed(e, short=True)
        if not rest:
            return [], ""
        if not task.isolating and task.attempt + 1 < MAX_ATTEMPTS:
            return ([Task(task.shard, rest, task.attempt + 1)],
                    f"ray: shard {task.shard}'s worker failed ({why}); its {len(rest)} unfinished items run again on "
                    f"a fresh worker (attempt {task.attempt + 2} of {MAX_ATTEMPTS})")
        if len(rest) == 1 and len(task.items) > 1:  # the others finished: let it show that it fails alone
            return ([Task(task.shard, rest, isolating=True)],
                    f"ray: shard {task.shard}'s worker failed again ({why}); its one unfinished item, {rest[0].index}, "
                    f"runs alone")
        if len(rest) > 1:
            half = (len(rest) + 1) // 2
            lead = "failed again" if task.isolating else "failed for the last time"
            return ([Task(task.shard, rest[:half], isolating=True), Task(task.shard, rest[half:], isolating=True)],
                    f"ray: shard {task.shard}'s worker {lead} ({why}); its {len(rest)} unfinished items run in two "
                    f"parts of {half} and {len(rest) - half} to find the item it fails on")
        item = rest[0]
        pending = self.pending.setdefault(task.shard, [])
        pending.append((item, why_failed(e)))
        if task.shard not in self.proved and len(pending) >= CONDEMNED_MAX:
            left = [i for i in self.shard_items[task.shard] if i not in finished]
            raise ShardFailedError(task.shard, MAX_ATTEMPTS, left, why_failed(e), alone=len(pending))
        return [], (f"ray: item {item.index} fails its worker when it runs alone ({why}): it is recorded as failed; "
                    f"the rest of shard {task.shard} runs on")

    def succeeded(self, task: Task) -> list[tuple[Item, str]]:
        """A task of a shard being split finished its items: the items that failed alone are surely at fault."""
        if not task.isolating or not task.items:
            return []
        self.proved.add(task.shard)
        return self.ready(task.shard)

    def ready(self, shard: int) -> list[tuple[Item, str]]:
        """The items of `shard` that failed alone, to record as failed now (none while the shard is unproved)."""
        return self.pending.pop(shard, []) if shard in self.proved else []

    def at_end(self) -> list[tuple[Item, str]]:
        """Every task is done: the items still pending failed alone, and nothing else of their shard was left."""
        out = [entry for entries in self.pending.values() for entry in entries]
        self.pending.clear()
        return out


def condemned_record(item: Item, gold: str | None, why: str) -> dict[str, Any]:
    """The trace's record of an item that failed its worker alone: failed, unanswered (wrong where a gold answer
    is known, as a failed item on one machine), costing nothing itself (its attempts' spend is `lost`)."""
    return ItemRecord(item=item.index, question=item.question, gold=gold, answer=None,
                      correct=False if gold is not None else None, status="failed",
                      error=f"its worker failed each time it ran this item, the last time alone: {why}",
                      fields=dict(item.extra)).model_dump(mode="json")


def why_failed(e: BaseException, *, short: bool = False) -> str:
    """One line for why a shard's attempt failed: the exception a worker raised, or its process's death (`short`:
    without the likely causes, for the note said at each restart)."""
    ray = _ray()
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        lines = str(cause).strip().splitlines()
        text = lines[-1] if lines else ""
        return f"the worker raised {type(cause).__name__}" + (f": {_clip(text)}" if text else "")
    if isinstance(e, ray.exceptions.RayActorError):
        return "its worker process died" + ("" if short else (
            " (killed, out of memory, or a crash in native code or in a --verifier, e.g. os._exit); the workers' "
            "own output above may say more"))
    return _clip(_first_line(e))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


__all__ = ["CONDEMNED_MAX", "MAX_ATTEMPTS", "Isolation", "Task", "condemned_record", "why_failed"]
