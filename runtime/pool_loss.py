"""What a wide run does when its accountant actor dies (`ray::PoolService`: killed, out of memory).

The accountant holds the pooled ledger and writes the merged trace, so a
worker's death is written down by it (`lost` records, runtime/shard_failure.py)
but its own death was not: the run ended as "a bug in ttcl" (exit 70), the
grants of the attempts in flight went unrecorded, and a `--resume` dealt the
pool out again as if they had spent nothing (QA pass: up to 1.0e9 FLOPs
computed against a pool of 8e8).

Now the driver writes the `lost` records itself. What an attempt in flight
spent is unknown, so it is charged its worst case: the quota its shard was
given when the attempt started, less what the attempt's finished items
(already in the trace) were charged; in all, never more than the pool less
what the trace holds (the accountant granted no more). A `--resume` then
counts it, as it counts a dead worker's attempt, and the pool holds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ttcl.runtime.accountant import Limits
from ttcl.runtime.ray_cluster import DistributedError, _ray
from ttcl.runtime.trace import LostRecord, RunHeader, TraceWriter, read_trace


def pool_alive(pool: Any) -> bool:
    """Whether the accountant actor still answers. A dead one raises at once; one that does not answer in 10 s is
    as good as dead, and is killed, so that it lets go of the trace (its writer holds the file's lock)."""
    ray = _ray()
    try:
        ray.get(pool.pid.remote(), timeout=10)
        return True
    except ray.exceptions.RayActorError:
        return False
    except ray.exceptions.GetTimeoutError:
        ray.kill(pool, no_restart=True)
        with contextlib.suppress(ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            ray.get(pool.pid.remote(), timeout=5)  # returns, or raises, once the kill has taken
        return False


def charge_attempts_in_flight(trace: Path | None, header: RunHeader, pooled: Limits,
                              in_flight: list[tuple[str, int, list[int], Limits]]) -> tuple[int, int]:
    """Write a `lost` record for each attempt in flight (`(worker, shard, item indices, quota at its start)`),
    charged its worst case in the pooled units. Returns (items the trace holds finished, records written)."""
    if trace is None or not trace.exists():
        return 0, 0
    old = read_trace(trace)
    if pooled.is_empty():
        return len(old.items), 0
    limits = pooled.as_dict()
    recorded = {u: sum(rec.cost.get(u, 0.0) for rec in old.items.values())
                + sum(rec.cost.get(u, 0.0) for rec in old.lost) for u in limits}
    room = {u: max(0.0, limits[u] - recorded[u]) for u in limits}
    records = []
    for worker, shard, indices, quota in in_flight:
        left = [i for i in indices if i not in old.items]
        if not left:
            continue
        done = {u: sum(old.items[i].cost.get(u, 0.0) for i in indices if i in old.items) for u in limits}
        cost, share = {}, quota.as_dict()
        for u in limits:
            granted = share.get(u, room[u])
            cost[u] = min(room[u], max(0.0, granted - done[u]))
            room[u] -= cost[u]
        records.append(LostRecord(item=left[0], worker=worker, shard=shard, cost=cost).model_dump())
    if records:
        writer = TraceWriter(trace, header, resume=True)
        try:
            writer.write_raw(records)
        finally:
            writer.close()
    return len(old.items), len(records)


def accountant_died(trace: Path | None, finished: int, lost: int) -> DistributedError:
    where = (f"{finished} finished item{' is' if finished == 1 else 's are'} kept in {trace}"
             + (f", and the {lost} attempt{'' if lost == 1 else 's'} in flight are charged to the pooled budget at "
                "their worst case" if lost else "") + "; rerun with --resume to continue"
             if trace is not None else "nothing was kept (no --trace)")
    return DistributedError(f"the run's accountant (the Ray actor ray::PoolService) died: {where}")


__all__ = ["accountant_died", "charge_attempts_in_flight", "pool_alive"]
