"""The accountant: the run-time half of the budget guarantee.

`ttcl check` proves a worst case fits; the accountant makes sure the actual
run never spends more. Before a node runs the scheduler asks for an
*allowance* sized to the node's worst case (computed from the real prompt
lengths, so it is usually far below the static bound). The allowance is
reserved until the node is charged, so nodes of one item (or items of one
pooled budget) that run in the same batch can never jointly overspend.
After the node runs its actual spend is charged and the unused part of the
reservation goes back.

Limits come from three places, all enforced the same way:
  * the per-item budget (`budget per item { ... }`);
  * the pooled budget over the whole run (`budget pooled { ... }`);
  * the node's static bound from `ttcl check`, so "actual <= bound" holds
    per node, hence per item, even for inputs longer than declared.

Seconds cannot be known before a node runs: they are checked before each
node (is there time left?) and charged after. A node that starts with time
left may overrun by at most its own duration; every other unit is hard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ttcl.compiler.costmodel import Cost, Unit
from ttcl.compiler.dag import DagNode
from ttcl.errors import TtclRuntimeError
from ttcl.runtime.hooks import NodeHook
from ttcl.runtime.input_bound import INPUT_IS

if TYPE_CHECKING:
    from ttcl.runtime.pool_split import PoolShares

OnExhaust = Literal["shrink", "stop"]

# Recomputes a node's worst case for a smaller (n, max_tokens): how `shrink` finds what fits.
Resize = Callable[[int, int], Cost]

# Float slack for FLOPs sums (exact integers below 2**53, but sums of floats may round).
INPUT_OVER_BOUND = "input longer than its declared bound"  # how a refusal for an over-long input begins
_EPS = 1e-9


class AccountingError(TtclRuntimeError):
    """A node spent more than its allowance: a bug in cost reporting, never user error."""


def input_over_bound(result: Mapping[str, Any], given_as: str) -> str | None:
    """Why one input given on its own (`ttcl run --input`, `ttcl.run(inputs="...")`, named by `given_as`) is bad
    input: it is longer than the strategy's declared `text[<=N]`, so its item was stopped before the node that
    reads it. None when it was not. (In a dataset such an item is stopped and counted like any other.)"""
    over = {node: why for node, why in (result.get("failures") or {}).items() if why.startswith(INPUT_OVER_BOUND)}
    if result.get("status") != "stopped" or not over:
        return None
    node, why = next(iter(over.items()))
    why = why.removeprefix(INPUT_OVER_BOUND + ": ")
    said = (f"{why}, so {node} did not run" if why.startswith(INPUT_IS) else  # counted (runtime/input_bound.py)
            f"the input is longer than the strategy's declared bound (`text[<=N]`), so {node} did not run: {why}")
    return f"{given_as}: {said}\n  hint: shorten the input, or raise N in the program's `text[<=N]` and `ttcl check` it"


class Limits(BaseModel):
    """Upper limits per unit; None means unlimited."""

    model_config = ConfigDict(frozen=True)

    calls: float | None = None
    prompt_tokens: float | None = None
    gen_tokens: float | None = None
    tokens: float | None = None
    flops: float | None = None
    seconds: float | None = None

    def get(self, unit: Unit | str) -> float | None:
        return getattr(self, Unit(unit).value)

    def is_empty(self) -> bool:
        return all(self.get(u) is None for u in Unit)

    def as_dict(self) -> dict[str, float]:
        return {u.value: v for u in Unit if (v := self.get(u)) is not None}

    @classmethod
    def from_cost(cls, cost: Cost, *, units: tuple[Unit, ...] | None = None) -> Limits:
        """A cost (e.g. a static bound) used as a limit on the given units (all static ones by default)."""
        chosen = units or (Unit.calls, Unit.prompt_tokens, Unit.gen_tokens, Unit.tokens, Unit.flops)
        return cls(**{u.value: cost.get(u) for u in chosen})


@dataclass(frozen=True)
class Allowance:
    """What the accountant granted one node of one item.

    `granted` False means the node must not run (the `stop` policy, or
    nothing fits). `n`/`max_tokens` are what the node may use; under
    `shrink` they may be smaller than requested.
    """

    item: int
    node_id: str
    granted: bool
    worst_case: Cost
    n: int | None = None
    max_tokens: int | None = None
    shrunk: bool = False
    reason: str = ""
    ticket: int = 0


@dataclass
class LedgerEntry:
    """One node of one item: what was allowed and what was actually spent."""

    item: int
    node_id: str
    allowance: Cost
    actual: Cost = field(default_factory=Cost)
    status: str = "reserved"  # reserved | charged | refused | skipped
    n: int | None = None
    max_tokens: int | None = None
    shrunk: bool = False
    reason: str = ""
    reused: int = 0  # verify: candidates whose score was reused from earlier in the item, uncharged


_ZERO = Cost()


def _zero() -> Cost:
    return _ZERO


def _sub(a: Cost, b: Cost) -> Cost:
    return a + b.scale(-1)


def _val(cost: Cost, unit: Unit) -> float:
    if unit is Unit.tokens:
        return cost.prompt_tokens + cost.gen_tokens
    return getattr(cost, unit.value)


def _spends(cost: Cost) -> bool:
    return cost.calls > 0 or cost.prompt_tokens > 0 or cost.gen_tokens > 0 or cost.flops > 0


_STATIC = (Unit.calls, Unit.prompt_tokens, Unit.gen_tokens, Unit.tokens, Unit.flops)


def _exceeds(amount: Cost, limit: Cost) -> list[str]:
    """Static units in which `amount` is above `limit` (a bound or an allowance)."""
    return [u.value for u in _STATIC if _val(amount, u) > _val(limit, u) * (1 + _EPS) + _EPS]


def over_units(have: Cost, need: Cost, limits: Limits) -> list[Unit]:
    """Units where `have + need` would break `limits` (seconds: only whether time is already up)."""
    out: list[Unit] = []
    for unit in Unit:
        limit = getattr(limits, unit.value)
        if limit is None:
            continue
        if unit is Unit.seconds:
            # Only a node that spends compute is stopped by the clock: a free vote may still run.
            if have.seconds >= limit and _spends(need):
                out.append(unit)
        elif _val(have, unit) + _val(need, unit) > limit * (1 + _EPS) + _EPS:
            out.append(unit)
    return out


class Accountant:
    """Per-item and pooled budgets, node static bounds, reservations and a ledger.

    `static_bounds` maps node ids to their bound from `ttcl check`; a node
    with no entry is limited by the budgets alone.
    """

    def __init__(
        self,
        *,
        per_item: Limits | None = None,
        pooled: Limits | None = None,
        on_exhaust: OnExhaust = "stop",
        static_bounds: dict[str, Cost] | None = None,
        sub_budgets: dict[str, Limits] | None = None,
    ) -> None:
        self.per_item = per_item or Limits()
        # A called strategy's own `budget per item`: limits on the nodes under its namespace (`main/bon.main#1/`).
        self.sub_budgets = {ns.rstrip("/") + "/": lim for ns, lim in (sub_budgets or {}).items()}
        self.pool_share = ""  # what `pooled` is, when a part of a larger pool (a wide run's shard says which)
        self._sub: dict[tuple[int, str], Cost] = {}
        self.pooled = pooled or Limits()
        self.on_exhaust: OnExhaust = on_exhaust
        self.static_bounds = dict(static_bounds or {})
        self.ledger: dict[tuple[int, str], LedgerEntry] = {}
        self._spent: dict[int, Cost] = {}
        self._reserved: dict[int, Cost] = {}
        self._pool_spent = _zero()
        self._pool_reserved = _zero()
        self._node: dict[tuple[int, str], Cost] = {}  # spent + reserved per node (a node may request per round)
        self._tickets = 0
        self._open: dict[int, Cost] = {}  # ticket -> reservation not yet charged
        # `split = even | need`: each item's own cap on the pool replaces the first-come pool (runtime/pool_split.py).
        self.shares: PoolShares | None = None
        self._share_extra: dict[int, Cost] = {}  # what an item's attempts a kill cut short took from the pool
        # items whose input is longer than its declared `text[<=N]` (runtime/input_bound.py): each model call refused
        self.over_long: dict[int, str] = {}
        self.input_check: Callable[[str], str | None] | None = None  # why an input is over its bound (or None)

    def admit(self, item: int, question: str) -> None:
        """An item starts: one whose input is longer than its declared `text[<=N]` in any model's tokens has each
        model call refused, and so stops before its first (a node's bound holds a token of slack; QA pass)."""
        why = self.input_check(question) if self.input_check is not None else None
        if why is not None:
            self.over_long[item] = why

    # ------------------------------------------------------------ queries

    def spent(self, item: int) -> Cost:
        return self._spent.get(item, _zero())

    def pool_spent(self) -> Cost:
        return self._pool_spent

    def remaining(self, item: int) -> dict[str, float]:
        """What `item` may still spend per limited unit (`budget.left`): the tighter of its per-item budget
        and its share of the pool (under `first_come`, what is left of the whole pool)."""
        out: dict[str, float] = {}
        have_item = self.spent(item) + self._reserved.get(item, _zero())
        have_pool = self._pool_spent + self._pool_reserved
        share = self.shares.cap(item) if self.shares is not None else None
        have_share = have_item + self._share_extra.get(item, _zero())
        for unit in Unit:
            lefts = []
            if (lim := self.per_item.get(unit)) is not None:
                lefts.append(lim - have_item.get(unit))
            if share is not None and (lim := share.get(unit)) is not None:
                lefts.append(lim - have_share.get(unit))
            elif share is None and (lim := self.pooled.get(unit)) is not None:
                lefts.append(lim - have_pool.get(unit))
            if lefts:
                out[unit.value] = max(0.0, min(lefts))
        return out

    def pool_left(self) -> dict[str, float]:
        """`budget.pool`: the pooled budget's balance. Under a split, as of the last allotment (the whole
        pool before `allot`, the remainder it shared out after), so no item reads another's progress."""
        if self.shares is not None:
            return dict(self.shares.balance)
        have = self._pool_spent + self._pool_reserved
        return {u.value: max(0.0, lim - have.get(u)) for u in Unit if (lim := self.pooled.get(u)) is not None}

    def used(self, item: int) -> Cost:
        """Spent plus reserved, plus what its attempts a kill cut short took from the pool (what an allotment
        counts as used)."""
        return self.spent(item) + self._reserved.get(item, _zero()) + self._share_extra.get(item, _zero())

    def entries(self, item: int) -> list[LedgerEntry]:
        return [e for (i, _), e in self.ledger.items() if i == item]

    # ------------------------------------------------------------ protocol

    def _subs_of(self, node_id: str) -> list[str]:
        return [ns for ns in self.sub_budgets if node_id.startswith(ns)]

    def _blocked(self, item: int, node_id: str, need: Cost) -> list[str]:
        reasons: list[str] = []
        have_item = self.spent(item) + self._reserved.get(item, _zero())
        for u in over_units(have_item, need, self.per_item):
            reasons.append(f"per-item {u.value}")
        have_pool = self._pool_spent + self._pool_reserved
        if self.shares is not None:  # the item's own share of the pool; the shares add up to the pool
            for u in over_units(have_item + self._share_extra.get(item, _zero()), need, self.shares.cap(item)):
                reasons.append(f"pooled {u.value} (this item's share)")
        # the pool itself, under a split too: there the shares keep within it, so this binds only if they did not
        for u in over_units(have_pool, need, self.pooled):
            if not any(r.startswith(f"pooled {u.value}") for r in reasons):
                # what is only reserved comes back when the items in flight finish (QA pass: "budget exhausted"
                # beside a pool 23% spent read as a bug; their worst cases held the rest)
                spent_only = u in over_units(self._pool_spent, need, self.pooled)  # only on a refusal
                held = "" if spent_only or self.pool_share else " (the rest is reserved for the worst case of items in flight)"
                reasons.append(f"pooled {u.value}{held}{self.pool_share}")
        for ns, lim in self.sub_budgets.items():
            if node_id.startswith(ns):
                for u in over_units(self._sub.get((item, ns), _zero()), need, lim):
                    reasons.append(f"sub-budget of {ns.rstrip('/')} {u.value}")
        bound = self.static_bounds.get(node_id)
        if bound is not None:
            have_node = self._node.get((item, node_id), _zero())
            for u in _exceeds(have_node + need, bound):
                reasons.append(f"static bound {u}")
        return reasons

    def request(
        self,
        item: int,
        node_id: str,
        worst_case: Cost,
        *,
        n: int | None = None,
        max_tokens: int | None = None,
        resize: Resize | None = None,
        op: str = "",
    ) -> Allowance:
        """Grant `worst_case` if it fits everything left; otherwise apply `on_exhaust`.

        Under `shrink` (and with a `resize` callback) the largest n that fits
        is chosen, and failing that n=1 with the largest max_tokens that fits.
        """
        if not _spends(worst_case):  # a free node (vote, compare, a checker): nothing to reserve or refuse
            if node_id in self.static_bounds and (item, node_id) not in self.ledger:  # a row of the cost table
                self.ledger[(item, node_id)] = LedgerEntry(item, node_id, _ZERO, _ZERO, status="charged")
            return Allowance(item, node_id, True, _ZERO, n, max_tokens)
        if item in self.over_long:  # stopped whatever room is left, as `ttcl serve` refuses it (shrink or not)
            return self._refuse(item, node_id, n, max_tokens, f"{INPUT_OVER_BOUND}: {self.over_long[item]}")
        reasons = self._blocked(item, node_id, worst_case)
        if not reasons:
            return self._reserve(item, node_id, worst_case, n, max_tokens, shrunk=False, reason="")
        if self.on_exhaust == "shrink" and resize is not None and max_tokens is not None:
            fit = self._shrink(item, node_id, n or 1, max_tokens, resize)
            if fit is not None:
                n2, m2, cost = fit
                what = f"n={n2}, max_tokens={m2}" if n is not None else f"max_tokens={m2}"
                why = f"shrunk to {what} ({', '.join(reasons)})"
                return self._reserve(item, node_id, cost, n2 if n is not None else None, m2, shrunk=True, reason=why)
        return self._refuse(item, node_id, n, max_tokens, self._refusal(item, node_id, worst_case, reasons, op))

    def _refuse(self, item: int, node_id: str, n: int | None, max_tokens: int | None, why: str) -> Allowance:
        entry = self.ledger.get((item, node_id))
        if entry is None:
            self.ledger[(item, node_id)] = LedgerEntry(item, node_id, _zero(), status="refused", reason=why)
        else:  # a later round of a node that already ran: what it spent stands
            entry.status, entry.reason = "refused", why
        return Allowance(item, node_id, False, _zero(), n, max_tokens, reason=why)

    def _refusal(self, item: int, node_id: str, need: Cost, reasons: list[str], op: str) -> str:
        """Why a node may not run, naming the real cause.

        A budget that ran out is "budget exhausted". A call over its node's
        static bound while every budget still has room is not: its input is
        longer than `ttcl check` assumed (an input over its declared
        `text[<=N]`, or a verifier whose template and tokenizer count more
        tokens than the bound did), and it says so with the numbers.
        """
        budget = [r for r in reasons if not r.startswith("static bound ")]
        if budget:
            return "budget exhausted: " + ", ".join(reasons)
        bound = self.static_bounds.get(node_id, _zero())
        have = self._node.get((item, node_id), _zero())
        units = [r.removeprefix("static bound ") for r in reasons]
        if need.prompt_tokens + have.prompt_tokens > bound.prompt_tokens * (1 + _EPS) + _EPS:
            where = ("the verifier's input (its own template, through its own tokenizer)" if op == "verify"
                     else "its prompt (the input with the node's template)")
            return (f"{INPUT_OVER_BOUND}: {where} is {need.prompt_tokens:g} tokens, "
                    f"over the {bound.prompt_tokens - have.prompt_tokens:g} prompt tokens `ttcl check` bounded "
                    f"this node at (over in {', '.join(units)}); the budget itself was not exhausted")
        parts = [f"{u} needs {_val(have + need, Unit(u)):g} > bound {_val(bound, Unit(u)):g}" for u in units]
        return "over the node's static bound from `ttcl check`: " + "; ".join(parts) + " (the budget itself was not exhausted)"

    def _shrink(self, item: int, node_id: str, n: int, max_tokens: int, resize: Resize) -> tuple[int, int, Cost] | None:
        def fits(nn: int, mm: int) -> Cost | None:
            cost = resize(nn, mm)
            return None if self._blocked(item, node_id, cost) else cost

        best_n = _largest(1, n - 1, lambda k: fits(k, max_tokens) is not None)
        if best_n is not None:
            return best_n, max_tokens, fits(best_n, max_tokens)  # type: ignore[return-value]
        best_m = _largest(1, max_tokens - 1, lambda m: fits(1, m) is not None)
        if best_m is not None:
            return 1, best_m, fits(1, best_m)  # type: ignore[return-value]
        return None

    def _reserve(
        self, item: int, node_id: str, cost: Cost, n: int | None, max_tokens: int | None, *, shrunk: bool, reason: str
    ) -> Allowance:
        held = Cost(calls=cost.calls, prompt_tokens=cost.prompt_tokens, gen_tokens=cost.gen_tokens, flops=cost.flops)
        key = (item, node_id)
        self._reserved[item] = self._reserved.get(item, _zero()) + held
        self._pool_reserved = self._pool_reserved + held
        self._node[key] = self._node.get(key, _zero()) + held
        for ns in self._subs_of(node_id):
            self._sub[(item, ns)] = self._sub.get((item, ns), _zero()) + held
        self._tickets += 1
        entry = self.ledger.get(key)
        if entry is None:
            entry = self.ledger[key] = LedgerEntry(item, node_id, _zero())
        entry.allowance = entry.allowance + held
        entry.status, entry.n, entry.max_tokens = "reserved", n, max_tokens
        entry.shrunk = entry.shrunk or shrunk
        entry.reason = reason or entry.reason
        self._open[self._tickets] = held
        return Allowance(item, node_id, True, held, n, max_tokens, shrunk, reason, self._tickets)

    def charge(self, allowance: Allowance, actual: Cost) -> None:
        """Book what a granted node spent and release the rest of its reservation.

        Spend above the allowance is a cost-reporting bug: it is still booked
        (the ledger stays honest) and then raised as AccountingError.
        """
        if not allowance.granted:
            raise AccountingError(f"node {allowance.node_id!r} (item {allowance.item}) was charged without an allowance")
        if allowance.ticket == 0:  # a free node's allowance: it must have spent nothing but time
            if _spends(actual):
                raise AccountingError(f"node {allowance.node_id!r} (item {allowance.item}) spent {actual.as_dict()} "
                                      "on a zero allowance")
            self._free(allowance, actual)
            return
        if self._open.pop(allowance.ticket, None) is None:
            raise AccountingError(f"node {allowance.node_id!r} (item {allowance.item}) charged twice")
        item, key = allowance.item, (allowance.item, allowance.node_id)
        entry = self.ledger[key]
        self._reserved[item] = _sub(self._reserved[item], allowance.worst_case)
        self._pool_reserved = _sub(self._pool_reserved, allowance.worst_case)
        self._node[key] = _sub(self._node[key], allowance.worst_case) + actual
        for ns in self._subs_of(allowance.node_id):
            self._sub[(item, ns)] = _sub(self._sub[(item, ns)], allowance.worst_case) + actual
        self._spent[item] = self.spent(item) + actual
        self._pool_spent = self._pool_spent + actual
        entry.actual = entry.actual + actual
        entry.status = "charged"
        over = _exceeds(actual, allowance.worst_case)
        if over:
            raise AccountingError(
                f"node {allowance.node_id!r} (item {item}) spent more than its allowance in {', '.join(over)}: "
                f"actual {actual.as_dict()} > allowance {allowance.worst_case.as_dict()}"
            )

    def _free(self, allowance: Allowance, actual: Cost) -> None:
        if actual.seconds:
            item = allowance.item
            self._spent[item] = self.spent(item) + actual
            self._pool_spent = self._pool_spent + actual
            key = (item, allowance.node_id)
            entry = self.ledger.setdefault(key, LedgerEntry(item, allowance.node_id, _zero()))
            entry.actual, entry.status = entry.actual + actual, "charged"

    def release(self, allowance: Allowance, actual: Cost | None = None) -> None:
        """A granted node failed: charge whatever it spent (zero if nothing ran)."""
        if allowance.granted and (allowance.ticket in self._open or allowance.ticket == 0):
            self.charge(allowance, actual or _zero())

    def skip(self, item: int, node_id: str, reason: str) -> None:
        """Record a node that never ran (untaken arm, after `until`/`break`): charged nothing."""
        self.ledger[(item, node_id)] = LedgerEntry(item, node_id, _zero(), status="skipped", reason=reason)

    def restore(self, item: int, entries: list[LedgerEntry], *, pool: bool = True) -> None:
        """Re-book finished nodes read back from a trace (`--resume`); `pool=False` when `restore_pooled` books the pool."""
        for e in entries:
            self.ledger[(item, e.node_id)] = e
            self._node[(item, e.node_id)] = e.actual
            for ns in self._subs_of(e.node_id):
                self._sub[(item, ns)] = self._sub.get((item, ns), _zero()) + e.actual
            self._spent[item] = self.spent(item) + e.actual
            if pool:
                self._pool_spent = self._pool_spent + e.actual


    def restore_pooled(self, cost: Cost) -> None:
        """Book spend that belongs to no finished item (a lost attempt of a wide run) into the pool."""
        self._pool_spent = self._pool_spent + cost

    def restore_share_use(self, item: int, cost: Cost) -> None:
        """What `item`'s attempts took from the pool beyond its restored nodes (steps a kill cut short, charged at
        their worst case): under a split it comes out of the item's own share, not the last items' (QA pass:
        after three kills under `even`, the 27 items never started got nothing). Negative parts count as 0."""
        extra = Cost(**{u: max(0.0, cost.get(u)) for u in ("calls", "prompt_tokens", "gen_tokens", "flops")})
        if _spends(extra):
            self._share_extra[item] = self._share_extra.get(item, _zero()) + extra

def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """Largest k in [lo, hi] with ok(k), for ok monotone (true then false); None if none."""
    if hi < lo or not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


class AccountantHook(NodeHook):
    """Puts an Accountant in the scheduler's lifecycle: request before a node, charge after, record skips."""

    wants_io = False  # its after_node reads the spend, not the values

    def __init__(self, accountant: Accountant) -> None:
        self.accountant = accountant

    def before_node(
        self,
        *,
        item: int,
        node_id: str,
        op: str,
        worst_case: Cost,
        n: int | None,
        max_tokens: int | None,
        resize: Resize | None,
        **future: object,
    ) -> Allowance:
        return self.accountant.request(item, node_id, worst_case, n=n, max_tokens=max_tokens, resize=resize, op=op)

    def after_phase(
        self,
        *,
        item: int,
        node_id: str,
        allowance: Allowance,
        actual: Cost,
        error: str | None,
        **future: object,
    ) -> None:
        if not allowance.granted:
            return
        if error is None:
            self.accountant.charge(allowance, actual)
        else:
            self.accountant.release(allowance, actual)

    def after_node(self, *, item: int, node: DagNode, reused: int = 0, **future: object) -> None:
        if reused:
            entry = self.accountant.ledger.get((item, node.id))
            if entry is None:
                entry = self.accountant.ledger[(item, node.id)] = LedgerEntry(item, node.id, _zero(), status="charged")
            entry.reused += reused

    def skip_node(self, *, item: int, node: DagNode, reason: str, **future: object) -> None:
        self.accountant.skip(item, node.id, reason)
