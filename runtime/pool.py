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
from ttcl.runtime.accountant import Limits

# (worker, item, node, attempt, round): round counts a node's reservations within one attempt of an item.
Key = tuple[str, int, str, int, int]


class PoolError(TtclRuntimeError):
    """A pooled-budget protocol violation: a fenced worker, a reservation over quota, a bad key."""


# Inside the ledger a cost is a plain list of floats in this order: building a pydantic Cost per
# operation made the actor's work per op about 2-3x slower (bench/bench_ray.py, part 3).
_UNITS = ("calls", "prompt_tokens", "gen_tokens", "flops", "seconds")
_SECONDS = 4
_EPS = 1e-9
Vec = list[float]


def _vec(d: dict[str, float]) -> Vec:
    return [float(d.get(u, 0.0)) for u in _UNITS]


def _cost(v: Vec) -> Cost:
    return Cost(**dict(zip(_UNITS, v, strict=True)))


def _add(a: Vec, b: Vec, k: float = 1.0) -> None:
    for i in range(5):
        a[i] += k * b[i]


def _checks(limits: Limits) -> list[tuple[tuple[int, ...], float]]:
    """Each limited unit as (the vector positions it sums, its limit); `tokens` is prompt + gen."""
    pos = {"calls": (0,), "prompt_tokens": (1,), "gen_tokens": (2,), "tokens": (1, 2), "flops": (3,),
           "seconds": (_SECONDS,)}
    return [(pos[u.value], float(v)) for u in Unit if (v := limits.get(u)) is not None]


def _over(have: Vec, need: Vec, checks: list[tuple[tuple[int, ...], float]]) -> bool:
    """As accountant.over_units: static units are hard; time only stops spending once it is up."""
    for idx, lim in checks:
        if idx == (_SECONDS,):
            if have[_SECONDS] >= lim and (need[0] > 0 or need[1] > 0 or need[2] > 0 or need[3] > 0):
                return True
        elif sum(have[i] + need[i] for i in idx) > lim * (1 + _EPS) + _EPS:
            return True
    return False


@dataclass
class Reservation:
    shard: int
    held: Vec
    actual: Vec | None = None  # None while open
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
        self._checks = _checks(limits)
        self.quotas: dict[int, Limits] = {}
        self._quota_checks: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        self.set_quotas(quotas or {})
        self.reservations: dict[Key, Reservation] = {}
        self.decisions: dict[Key, bool] = {}  # every reserve ever answered (a retried batch gets the same answer)
        self._spent: Vec = [0.0] * 5  # charged, settled-in-full and restored spend
        self._held: Vec = [0.0] * 5  # open reservations
        self._shard_spent: dict[int, Vec] = {}
        self._shard_held: dict[int, Vec] = {}
        self.fenced: set[str] = set()
        self.calls = 0  # batched calls served
        self.ops = 0  # reserve/charge operations in them

    @property
    def spent(self) -> Cost:
        return _cost(self._spent)

    @property
    def held(self) -> Cost:
        return _cost(self._held)

    def _shard(self, table: dict[int, Vec], shard: int) -> Vec:
        v = table.get(shard)
        if v is None:
            v = table[shard] = [0.0] * 5
        return v

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
            if kind == "reserve":
                out.append(self._reserve(key, shard, _vec(cost)))
            elif kind == "charge":
                self._charge(key, shard, _vec(cost))
            else:
                raise PoolError(f"unknown pool operation {kind!r}")
        return out

    def _fits(self, shard: int, need: Vec) -> bool:
        have = [a + b for a, b in zip(self._spent, self._held, strict=True)]
        if _over(have, need, self._checks):
            return False
        checks = self._quota_checks.get(shard)
        if checks is None:
            return True
        sp, hd = self._shard(self._shard_spent, shard), self._shard(self._shard_held, shard)
        return not _over([a + b for a, b in zip(sp, hd, strict=True)], need, checks)

    def _reserve(self, key: Key, shard: int, cost: Vec) -> bool:
        if key in self.decisions:
            return self.decisions[key]
        ok = self._fits(shard, cost)
        self.decisions[key] = ok
        if ok:
            self.reservations[key] = Reservation(shard, cost)
            _add(self._held, cost)
            _add(self._shard(self._shard_held, shard), cost)
        return ok

    def _book(self, shard: int, cost: Vec) -> None:
        _add(self._spent, cost)
        _add(self._shard(self._shard_spent, shard), cost)

    def _release(self, res: Reservation) -> None:
        _add(self._held, res.held, -1.0)
        _add(self._shard(self._shard_held, res.shard), res.held, -1.0)

    def _charge(self, key: Key, shard: int, actual: Vec) -> None:
        res = self.reservations.get(key)
        if res is None:
            if key in self.decisions:  # a charge of a refused reservation: nothing ran
                return
            # Spend with no reservation: only time (a free node's seconds) may be booked this way.
            if any(actual[:_SECONDS]):
                raise PoolError(f"charge without a reservation: {key} {_cost(actual).as_dict()}")
            self.reservations[key] = Reservation(shard, [0.0] * 5, actual)
            self._book(shard, actual)
            return
        if res.actual is not None:  # already charged: a retried batch
            return
        res.actual = actual
        self._release(res)
        self._book(res.shard, actual)

    # ------------------------------------------------------------ faults and resume

    def settle_worker(self, worker: str, finished: set[int]) -> dict[int, Cost]:
        """A worker died or timed out: fence it, charge its open reservations in full.

        Returns, per item it did NOT finish (so the item will run again), what the
        lost attempt spent: this is written to the trace, so `--resume` counts it.
        """
        self.fenced.add(worker)
        lost: dict[int, Vec] = {}
        for key, res in self.reservations.items():
            if key[0] != worker:
                continue
            if res.actual is None:
                res.actual, res.lost = list(res.held), True
                self._release(res)
                self._book(res.shard, res.held)
            if key[1] not in finished:
                _add(lost.setdefault(key[1], [0.0] * 5), res.actual)
        return {i: _cost(v) for i, v in lost.items()}

    def restore(self, shard: int | None, cost: Cost) -> None:
        """Book spend read back from a trace (a finished item, or a lost attempt) on `--resume`."""
        v = _vec(cost.as_dict())
        _add(self._spent, v)
        if shard is not None:
            _add(self._shard(self._shard_spent, shard), v)

    def set_quotas(self, quotas: dict[int, Limits]) -> None:
        self.quotas.update(quotas)
        self._quota_checks.update({s: _checks(q) for s, q in quotas.items()})

    def shard_spent(self, shard: int) -> Cost:
        return _cost(self._shard_spent.get(shard, [0.0] * 5))

    def shard_left(self, shard: int) -> Limits:
        """What shard `shard` may still reserve: its quota less its spent and held."""
        quota = self.quotas.get(shard, self.limits)
        used = [a + b for a, b in zip(self._shard(self._shard_spent, shard), self._shard(self._shard_held, shard),
                                      strict=True)]
        return left_of(quota, _cost(used))

    def pool_left(self) -> Limits:
        return left_of(self.limits, _cost([a + b for a, b in zip(self._spent, self._held, strict=True)]))

    def stats(self) -> dict[str, Any]:
        open_ = sum(1 for r in self.reservations.values() if r.actual is None)
        return {"calls": self.calls, "ops": self.ops, "open": open_, "spent": self.spent.as_dict(),
                "held": self.held.as_dict(), "lost": sum(1 for r in self.reservations.values() if r.lost)}


__all__ = ["Key", "PoolError", "PoolLedger", "Reservation", "left_of", "split_quota"]
