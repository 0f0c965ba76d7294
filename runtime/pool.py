"""The pooled budget of a run spread over workers: one ledger, keyed reservations, fixed shard quotas.

A `budget pooled { ... }` is a promise about the whole run. When the items
are sharded over workers (`ttcl run --ray`), each worker keeps its own
`Accountant` for everything local (per-item budgets, static bounds,
sub-budgets, `shrink`), and this ledger, held by one accountant actor,
keeps the pooled promise across them:

  * a worker *reserves* the worst case of every node before the node's
    model calls go out, *charges* the actual spend afterwards, and the rest
    is released; all of one scheduler step travels in ONE batched call;
  * every reservation has an idempotent key (worker, item, node, attempt,
    round): sending a batch twice (a retried call) books nothing twice;
  * a reservation whose outcome is unknown (its worker died, or was fenced
    after a call timed out) is charged in full, its worst case;
  * reproducibility: each shard gets a FIXED quota of the pool, in
    proportion to its items, before any worker starts. A worker's local
    accountant enforces its quota, so what a shard may spend never depends
    on how fast another shard runs. The cost: budget a shard leaves unused
    is not lent to another shard (DESIGN: docs/runtime.md, "Running wide").

This module knows nothing of Ray: the actor (runtime/distributed.py) wraps
it, and tests and benchmarks drive it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttcl.compiler.costmodel import Cost, Unit
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.accountant import Limits, over_units

# (worker, item, node, attempt, round): round counts a node's reservations within one attempt of an item.
Key = tuple[str, int, str, int, int]


class PoolError(TtclRuntimeError):
    """A pooled-budget protocol violation: a fenced worker, a reservation over quota, a bad key."""


@dataclass
class Reservation:
    shard: int
    held: Cost
    actual: Cost | None = None  # None while open
    lost: bool = False  # settled in full because its outcome is unknown


def _limited(limits: Limits) -> list[Unit]:
    return [u for u in Unit if limits.get(u) is not None]


def split_quota(left: Limits, weights: dict[int, int]) -> dict[int, Limits]:
    """Each shard's fixed share of what is left of the pool, in proportion to its items."""
    total = sum(weights.values())
    out: dict[int, Limits] = {}
    for shard, w in weights.items():
        vals: dict[str, float] = {}
        for u in _limited(left):
            v = float(left.get(u)) * w / total if total else 0.0  # type: ignore[arg-type]
            if u in (Unit.calls, Unit.prompt_tokens, Unit.gen_tokens, Unit.tokens):
                v = float(int(v))  # whole calls and tokens: flooring keeps the shares' sum within the pool
            vals[u.value] = v
        out[shard] = Limits(**vals)
    return out


def _amount(cost: Cost, unit: Unit) -> float:
    return cost.prompt_tokens + cost.gen_tokens if unit is Unit.tokens else cost.get(unit)


def left_of(limits: Limits, spent: Cost) -> Limits:
    """What `limits` leave after `spent` (never negative), on the limited units only."""
    return Limits(**{u.value: max(0.0, float(limits.get(u)) - _amount(spent, u))  # type: ignore[arg-type]
                     for u in _limited(limits)})


class PoolLedger:
    """The pooled budget across workers: spent, open reservations, and each shard's quota."""

    def __init__(self, limits: Limits, quotas: dict[int, Limits] | None = None) -> None:
        self.limits = limits
        self.quotas = dict(quotas or {})
        self.reservations: dict[Key, Reservation] = {}
        self.decisions: dict[Key, bool] = {}  # every reserve ever answered (a retried batch gets the same answer)
        self.spent = Cost()  # charged, settled-in-full and restored spend
        self.held = Cost()  # open reservations
        self.shard_spent: dict[int, Cost] = {}
        self.shard_held: dict[int, Cost] = {}
        self.fenced: set[str] = set()
        self.calls = 0  # batched calls served
        self.ops = 0  # reserve/charge operations in them

    # ------------------------------------------------------------ the batched call

    def step(self, worker: str, ops: list[tuple[str, Key, int, dict[str, float]]]) -> list[bool]:
        """Apply one scheduler step of a worker: `("reserve"|"charge", key, shard, cost)` in order.

        Returns, per reserve op, whether it was granted. A fenced worker (declared
        dead, its reservations settled in full) is refused everything.
        """
        if worker in self.fenced:
            raise PoolError(f"worker {worker} was declared lost; its reservations are settled and it may not spend")
        self.calls += 1
        self.ops += len(ops)
        out: list[bool] = []
        for kind, key, shard, cost in ops:
            if key[0] != worker:
                raise PoolError(f"worker {worker} sent a key of worker {key[0]}: {key}")
            c = Cost(**cost)
            if kind == "reserve":
                out.append(self._reserve(key, shard, c))
            elif kind == "charge":
                self._charge(key, shard, c)
            else:
                raise PoolError(f"unknown pool operation {kind!r}")
        return out

    def _fits(self, shard: int, need: Cost) -> bool:
        if over_units(self.spent + self.held, need, self.limits):
            return False
        quota = self.quotas.get(shard)
        if quota is None:
            return True
        have = self.shard_spent.get(shard, Cost()) + self.shard_held.get(shard, Cost())
        return not over_units(have, need, quota)

    def _reserve(self, key: Key, shard: int, cost: Cost) -> bool:
        if key in self.decisions:
            return self.decisions[key]
        ok = self._fits(shard, cost)
        self.decisions[key] = ok
        if ok:
            self.reservations[key] = Reservation(shard, cost)
            self.held = self.held + cost
            self.shard_held[shard] = self.shard_held.get(shard, Cost()) + cost
        return ok

    def _book(self, shard: int, cost: Cost) -> None:
        self.spent = self.spent + cost
        self.shard_spent[shard] = self.shard_spent.get(shard, Cost()) + cost

    def _charge(self, key: Key, shard: int, actual: Cost) -> None:
        res = self.reservations.get(key)
        if res is None:
            if key in self.decisions:  # a charge of a refused reservation: nothing ran
                return
            # Spend with no reservation: only time (a free node's seconds) may be booked this way.
            if actual.calls or actual.prompt_tokens or actual.gen_tokens or actual.flops:
                raise PoolError(f"charge without a reservation: {key} {actual.as_dict()}")
            self.reservations[key] = Reservation(shard, Cost(), actual)
            self._book(shard, actual)
            return
        if res.actual is not None:  # already charged: a retried batch
            return
        res.actual = actual
        self.held = self.held + res.held.scale(-1)
        self.shard_held[res.shard] = self.shard_held[res.shard] + res.held.scale(-1)
        self._book(res.shard, actual)

    # ------------------------------------------------------------ faults and resume

    def settle_worker(self, worker: str, finished: set[int]) -> dict[int, Cost]:
        """A worker died or timed out: fence it, charge its open reservations in full.

        Returns, per item it did NOT finish (so the item will run again), what the
        lost attempt spent: this is written to the trace, so `--resume` counts it.
        """
        self.fenced.add(worker)
        lost: dict[int, Cost] = {}
        for key, res in self.reservations.items():
            if key[0] != worker:
                continue
            if res.actual is None:
                res.actual, res.lost = res.held, True
                self.held = self.held + res.held.scale(-1)
                self.shard_held[res.shard] = self.shard_held[res.shard] + res.held.scale(-1)
                self._book(res.shard, res.held)
            if key[1] not in finished:
                lost[key[1]] = lost.get(key[1], Cost()) + res.actual
        return lost

    def restore(self, shard: int | None, cost: Cost) -> None:
        """Book spend read back from a trace (a finished item, or a lost attempt) on `--resume`."""
        self.spent = self.spent + cost
        if shard is not None:
            self.shard_spent[shard] = self.shard_spent.get(shard, Cost()) + cost

    def set_quotas(self, quotas: dict[int, Limits]) -> None:
        self.quotas.update(quotas)

    def shard_left(self, shard: int) -> Limits:
        """What shard `shard` may still reserve: its quota less its spent and held."""
        quota = self.quotas.get(shard, self.limits)
        return left_of(quota, self.shard_spent.get(shard, Cost()) + self.shard_held.get(shard, Cost()))

    def pool_left(self) -> Limits:
        return left_of(self.limits, self.spent + self.held)

    def stats(self) -> dict[str, Any]:
        open_ = sum(1 for r in self.reservations.values() if r.actual is None)
        return {"calls": self.calls, "ops": self.ops, "open": open_, "spent": self.spent.as_dict(),
                "held": self.held.as_dict(), "lost": sum(1 for r in self.reservations.values() if r.lost)}


__all__ = ["Key", "PoolError", "PoolLedger", "Reservation", "left_of", "split_quota"]
