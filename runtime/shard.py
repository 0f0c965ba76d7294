"""One shard of a wide run, on one worker: today's Runner and Scheduler, linked to the pooled ledger.

The worker runs its items exactly as `ttcl run` does on one machine (one
scheduler, cross-item batching, the same Accountant for per-item budgets,
static bounds and `shrink`), with two differences:

  * its local accountant's pooled limit is the shard's fixed quota, and every
    reservation and charge it makes is also queued for the pooled ledger;
  * once per scheduler step, before the step's model calls go out, the
    queued operations and the items finished since the last step travel to
    the ledger in ONE call (`ShardLink.sync`). A reservation the ledger does
    not confirm is never spent; an item counts as finished only once the
    ledger has its charges, so a worker that dies loses nothing it reported.

No Ray here: `client` is any callable with the ledger's `step` signature
(the Ray actor in runtime/distributed.py, or a PoolLedger in tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ttcl.compiler.costmodel import Cost
from ttcl.runtime.accountant import Accountant, AccountantHook, Allowance, Limits
from ttcl.runtime.dataset import Item
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.pool import Key, PoolError
from ttcl.runtime.run_trace import TraceHook
from ttcl.runtime.runner import Runner, content_seeded, shared_across_items
from ttcl.runtime.scheduler import RunInterrupted
from ttcl.runtime.trace import ItemRecord, NodeRecord

Op = tuple[str, Key, int, dict[str, float]]
# (worker, ops, finished items as (node record dicts, item record dict), node steps finished since the last call)
# -> one grant flag per reserve op
Client = Callable[[str, list[Op], list[tuple[list[dict[str, Any]], dict[str, Any]]], int], list[bool]]


@dataclass
class ShardLink(NodeHook):
    """Queues a shard's pool operations and finished items; sends them once per scheduler step."""

    client: Client
    worker: str
    shard: int
    attempt: int
    ops: list[Op] = field(default_factory=list)
    finished: list[tuple[list[dict[str, Any]], dict[str, Any]]] = field(default_factory=list)
    unconfirmed: set[Key] = field(default_factory=set)  # reserved here, not yet sent to the ledger
    calls: int = 0
    seconds: float = 0.0  # wall time spent in pool calls (the accountant's cost, for BENCHMARKS.md)
    nodes: int = 0  # node steps finished (run, refused or skipped) since the last sync: the driver's progress

    # TraceHook's writer interface: a finished item waits here for the next sync.
    def write_item(self, nodes: list[NodeRecord], item: ItemRecord) -> None:
        self.finished.append(([n.model_dump(mode="json") for n in nodes], item.model_dump(mode="json")))

    def sync(self) -> None:
        if not self.ops and not self.finished:
            return
        ops, done, nodes = self.ops, self.finished, self.nodes
        self.ops, self.finished, self.nodes = [], [], 0
        self.unconfirmed.clear()
        t = time.perf_counter()
        granted = self.client(self.worker, ops, done, nodes)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        if not all(granted):
            # The local accountant enforces the shard's quota, which the ledger set aside for it:
            # a refusal here means the two disagree, and spending anyway would break the pooled promise.
            refused = [op[1] for op, ok in zip([o for o in ops if o[0] == "reserve"], granted, strict=True) if not ok]
            raise PoolError(f"the pooled ledger refused reservations the shard's quota allowed: {refused[:3]}")

    def before_calls(self, *, step: int, **future: Any) -> None:
        self.sync()

    def after_node(self, **_: Any) -> None:
        self.nodes += 1

    def skip_node(self, **_: Any) -> None:
        self.nodes += 1

    def after_run(self, *, results: list[Any], **future: Any) -> None:
        self.sync()


class ShardAccountant(Accountant):
    """The local Accountant, with every reservation and charge also queued for the pooled ledger."""

    def __init__(self, *, link: ShardLink, **kw: Any) -> None:
        super().__init__(**kw)
        self.link = link
        # its `pooled` is the shard's fixed share, and a refusal says so (QA pass: "budget exhausted: pooled calls"
        # beside a pool line of 6 / 7, the last call half in each of two shards' 3.5)
        self.pool_share = f" (shard {link.shard}'s share of the pool)"
        self._keys: dict[int, Key] = {}
        self._rounds: dict[tuple[int, str], int] = {}
        self._free_rounds = 0

    def _key(self, item: int, node_id: str) -> Key:
        k = self._rounds.get((item, node_id), 0)
        self._rounds[(item, node_id)] = k + 1
        return (self.link.worker, item, node_id, self.link.attempt, k)

    def _reserve(self, item: int, node_id: str, cost: Cost, n: int | None, max_tokens: int | None, *,
                 shrunk: bool, reason: str) -> Allowance:
        a = super()._reserve(item, node_id, cost, n, max_tokens, shrunk=shrunk, reason=reason)
        key = self._key(item, node_id)
        self._keys[a.ticket] = key
        self.link.ops.append(("reserve", key, self.link.shard, a.worst_case.as_dict()))
        self.link.unconfirmed.add(key)
        return a

    def charge(self, allowance: Allowance, actual: Cost) -> None:
        if allowance.granted:
            if allowance.ticket:
                key = self._keys.pop(allowance.ticket, None)
                if key in self.link.unconfirmed and (actual.calls or actual.gen_tokens or actual.prompt_tokens
                                                     or actual.flops):
                    # The scheduler must call `before_calls` before model calls go out; spending on a
                    # reservation the ledger never saw would let the shards jointly overspend the pool.
                    raise PoolError(f"{key}: spent before the pooled ledger confirmed the reservation")
                if key is not None:
                    self.link.ops.append(("charge", key, self.link.shard, actual.as_dict()))
            elif actual.seconds:  # a free node's time: booked without a reservation
                self._free_rounds += 1
                key = (self.link.worker, allowance.item, allowance.node_id, self.link.attempt, -self._free_rounds)
                self.link.ops.append(("charge", key, self.link.shard, actual.as_dict()))
        super().charge(allowance, actual)


def run_shard(runner: Runner, items: list[Item], *, client: Client, worker: str, shard: int, attempt: int,
              quota: Limits, per_item: Limits | None = None,
              should_drain: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run `items` with the shard's pooled `quota`; finished items reach the ledger through `client`. Under
    `split = even | need`, `per_item` is each item's even cap (the run's pool / N) and the items come seeded
    by their content over the whole run (`content_seeded`, in the driver). `should_drain`: once True, no
    more items start; the ones started finish and reach the ledger (the driver's first Ctrl-C)."""
    link = ShardLink(client, worker, shard, attempt)
    for be in runner.backends.values():
        be.clear_cache()
    acc = runner.accountant(pooled=quota, cls=ShardAccountant, link=link)
    if runner.split != "first_come":
        # `split = even | need` shares the SHARD's fixed quota among the shard's items, exactly as one machine
        # shares the whole pool: `even` gives each item pool/N either way; `need` ranks items within a shard.
        from ttcl.runtime.pool_split import PoolShares

        acc.shares = PoolShares(quota, runner.split)
        # a rerun's rest (a fault, a wide --resume) split its shard's leftover among fewer items: bigger caps, other
        # answers (QA pass); and repeats of a question counted within a shard drew alike across shards
        acc.shares.begin((it.index for it in items), per_item)
        items = content_seeded(items, runner.options.seed)  # keeps the driver's seeds; seeds a direct call's items
    trace = TraceHook(link)  # type: ignore[arg-type]  # the link is the writer: items go to the ledger
    trace.ledger = acc
    sched = runner.scheduler(acc, [AccountantHook(acc), trace, link])
    sched.isolate_items = runner.split != "first_come"
    t0 = time.perf_counter()
    try:
        sched.run(items, should_drain=should_drain)
    except RunInterrupted:  # drained: the items it finished are sent now (a full run sends them in after_run)
        link.sync()
    return {"worker": worker, "shard": shard, "items": len(items), "batches": len(sched.batches),
            "steps": sched.steps, "pool_calls": link.calls, "pool_seconds": link.seconds,
            "wall": time.perf_counter() - t0, "shared": shared_across_items(runner.backends.values())}


__all__ = ["Client", "ShardAccountant", "ShardLink", "run_shard"]
