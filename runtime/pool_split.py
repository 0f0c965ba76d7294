"""Shares of a pooled budget: `budget pooled { ...; split = even | need }`.

Under `split = first_come` (the default) every item draws on one pool, so
what an item may spend depends on how much the items before it (in dataset
order, or in the same batch) already spent. The two allocating splits give
every item its own cap instead, and the accountant enforces that cap as it
enforces a per-item budget:

  * `even`: each of the run's N items may spend pool / N, per unit.
  * `need`: the same even caps hold until the program's `allot(need)` call.
    The scheduler parks each item there until every item of the run has
    reached it (or finished without it). Then the rest of the pool,
    R = pool - everything spent so far, is shared out: an item that reached
    `allot` with need w may spend R * w / W more (W the sum of the needs; an
    even share each if W is 0), and an item that finished keeps what it
    spent and gives the rest back.

The caps add up to the pool, so the pooled promise holds item by item; and
an item's cap depends only on the multiset of items (their needs and their
spend before `allot`), never on their order or on batching. The price: a
share an item does not use is not lent to another item afterwards, and
every item waits at `allot` for the slowest one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ttcl.compiler.costmodel import Cost, Unit
from ttcl.runtime.accountant import Limits

SPLITS = ("first_come", "even", "need")


def _val(cost: Cost, unit: Unit) -> float:
    if unit is Unit.tokens:
        return cost.prompt_tokens + cost.gen_tokens
    return float(getattr(cost, unit.value))


def fractions(needs: dict[int, float]) -> dict[int, float]:
    """Each item's share of the whole: need / total needs (NaN and negatives claim nothing; all zero: even)."""
    clean = {i: (w if w == w and w > 0 else 0.0) for i, w in needs.items()}
    total = sum(clean.values())
    return {i: (w / total if total > 0 else 1.0 / len(clean)) for i, w in clean.items()}


def even_share(pooled: Limits, n: int) -> Limits:
    """Each of `n` items' share of the pool under `split = even` (and before `allot` under `need`)."""
    return Limits(**{u: v / max(1, n) for u, v in pooled.as_dict().items()})


class PoolShares:
    """Each item's cap on the pool, and the pool's balance as of the last allotment."""

    def __init__(self, pooled: Limits, split: str) -> None:
        if split not in ("even", "need"):
            raise ValueError(f"pool split {split!r}: expected even or need")
        self.pooled = pooled
        self.split = split
        self.units = [u for u in Unit if pooled.get(u) is not None]
        self.caps: dict[int, Limits] = {}
        self.balance: dict[str, float] = pooled.as_dict()  # `budget.pool.<unit>`: before allot, the whole pool
        self.allotted = False

    def begin(self, items: Iterable[int], per_item: Limits | None = None) -> None:
        """Even caps over the run's items (all of them, including any a resumed trace already finished); a
        shard of a wide run gives `per_item`, the whole run's pool / N, since its own items may be a rerun's rest."""
        ids = sorted(set(items))
        even = per_item if per_item is not None else even_share(self.pooled, len(ids))
        self.caps = {i: even for i in ids}

    def cap(self, item: int) -> Limits:
        got = self.caps.get(item)
        if got is None:  # an item the run did not announce: it has no share, so it may spend nothing
            return Limits(**{u.value: 0.0 for u in self.units})
        return got

    def allot(self, needs: dict[int, float], used: Callable[[int], Cost]) -> dict[int, float]:
        """Share out what is left. `needs`: the parked items' needs; `used(i)`: item i's spend so far.

        Returns each parked item's fraction of the remainder.
        """
        frac = fractions(needs)
        spent = {i: used(i) for i in self.caps}
        rest = {u: self.pooled.get(u) - sum(_val(c, u) for c in spent.values()) for u in self.units}  # type: ignore[operator]
        rest = {u: max(0.0, v) for u, v in rest.items()}
        caps: dict[int, Limits] = {}
        for i, c in spent.items():
            f = frac.get(i, 0.0)
            caps[i] = Limits(**{u.value: _val(c, u) + rest[u] * f for u in self.units})
        self.caps = caps
        self.balance = {u.value: v for u, v in rest.items()}
        self.allotted = True
        return frac


def other_item_count(split: str, written: int | None, now: int) -> str | None:
    """Why a trace of a `split = even | need` run written for `written` items cannot be resumed with `now`: each
    item's even cap is the pool / N of the whole run, so a resume with more items (`--limit 5`, then all 40) gave
    the new ones their share of a pool the first ones had already been dealt (QA pass: 90 calls of an 80-call
    pool). None: it can (first_come, or the same N)."""
    if split == "first_come" or not written or written == now:  # 0: a header without the count
        return None
    return (f"--resume: `split = {split}` gives each of the run's N items pool / N, and this trace was written for "
            f"{written} items, now {now}; resume with the same items (the same --limit), or rerun with --overwrite")


__all__ = ["SPLITS", "PoolShares", "even_share", "other_item_count"]
