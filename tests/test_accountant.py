"""The accountant: reservations, shrink/stop, static bounds, and the never-overspend invariant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttcl.compiler.costmodel import Cost, Unit
from ttcl.runtime.accountant import Accountant, AccountantHook, AccountingError, Limits


def gen_cost(n: int, max_tokens: int, prompt: int = 10) -> Cost:
    return Cost(calls=n, prompt_tokens=prompt, gen_tokens=n * max_tokens, flops=2.0 * 1000 * (prompt + n * max_tokens))


def test_grants_when_it_fits_and_charges_actual() -> None:
    acc = Accountant(per_item=Limits(calls=10, gen_tokens=100))
    a = acc.request(0, "drafts", gen_cost(4, 20), n=4, max_tokens=20)
    assert a.granted and not a.shrunk and a.n == 4
    assert acc.remaining(0) == {"calls": 6.0, "gen_tokens": 20.0}
    acc.charge(a, Cost(calls=4, gen_tokens=37))
    assert acc.spent(0).gen_tokens == 37
    assert acc.remaining(0) == {"calls": 6.0, "gen_tokens": 63.0}
    assert acc.ledger[(0, "drafts")].status == "charged"


def test_stop_refuses_and_records() -> None:
    acc = Accountant(per_item=Limits(gen_tokens=50), on_exhaust="stop")
    a = acc.request(0, "drafts", gen_cost(4, 20), n=4, max_tokens=20, resize=lambda n, m: gen_cost(n, m))
    assert not a.granted
    assert a.reason == "budget exhausted: per-item gen_tokens"
    assert acc.ledger[(0, "drafts")].status == "refused"
    assert acc.spent(0) == Cost()


def test_shrink_picks_largest_n_then_max_tokens() -> None:
    acc = Accountant(per_item=Limits(gen_tokens=50), on_exhaust="shrink")
    a = acc.request(0, "d", gen_cost(4, 20), n=4, max_tokens=20, resize=lambda n, m: gen_cost(n, m))
    assert (a.granted, a.n, a.max_tokens, a.shrunk) == (True, 2, 20, True)
    assert a.reason == "shrunk to n=2, max_tokens=20 (per-item gen_tokens)"
    acc.charge(a, Cost(calls=2, gen_tokens=40))
    b = acc.request(0, "e", gen_cost(4, 20), n=4, max_tokens=20, resize=lambda n, m: gen_cost(n, m))
    assert (b.granted, b.n, b.max_tokens) == (True, 1, 10)
    acc.charge(b, Cost(calls=1, gen_tokens=10))
    c = acc.request(0, "f", gen_cost(1, 1), n=1, max_tokens=1, resize=lambda n, m: gen_cost(n, m))
    assert not c.granted


def test_reservations_stop_parallel_overspend() -> None:
    acc = Accountant(per_item=Limits(calls=5))
    a = acc.request(0, "a", Cost(calls=3))
    b = acc.request(0, "b", Cost(calls=3))
    assert a.granted and not b.granted
    acc.charge(a, Cost(calls=1))
    assert acc.request(0, "c", Cost(calls=3)).granted


def test_pooled_budget_spans_items() -> None:
    acc = Accountant(pooled=Limits(tokens=100))
    a = acc.request(0, "x", Cost(prompt_tokens=30, gen_tokens=30))
    b = acc.request(1, "x", Cost(prompt_tokens=30, gen_tokens=30))
    assert a.granted and not b.granted
    assert b.reason == "budget exhausted: pooled tokens (the rest is reserved for the worst case of items in flight)"
    acc.charge(a, Cost(prompt_tokens=30, gen_tokens=5))
    assert acc.request(1, "x", Cost(prompt_tokens=30, gen_tokens=30)).granted


def test_static_bound_caps_each_node() -> None:
    acc = Accountant(static_bounds={"d": gen_cost(3, 20)}, on_exhaust="shrink")
    a = acc.request(0, "d", gen_cost(4, 20), n=4, max_tokens=20, resize=lambda n, m: gen_cost(n, m))
    assert a.granted and a.shrunk and (a.n, a.max_tokens) == (3, 20)
    # a prompt longer than the declared input bound cannot be shrunk away
    b = acc.request(1, "d", gen_cost(1, 1, prompt=11), n=1, max_tokens=1, resize=lambda n, m: gen_cost(n, m, prompt=11))
    assert not b.granted
    assert b.reason == ("input longer than its declared bound: its prompt (the input with the node's template) is 11 "
                        "tokens, over the 10 prompt tokens `ttcl check` bounded this node at (over in prompt_tokens); "
                        "the budget itself was not exhausted")


def test_seconds_checked_before_and_charged_after() -> None:
    acc = Accountant(per_item=Limits(seconds=1.0))
    a = acc.request(0, "a", Cost(calls=1))
    assert a.granted
    acc.charge(a, Cost(calls=1, seconds=1.5))
    b = acc.request(0, "b", Cost(calls=1))
    assert not b.granted and b.reason == "budget exhausted: per-item seconds"


def test_overspend_is_booked_then_raised() -> None:
    acc = Accountant(per_item=Limits(calls=10))
    a = acc.request(0, "a", Cost(calls=2))
    with pytest.raises(AccountingError, match="spent more than its allowance in calls"):
        acc.charge(a, Cost(calls=3))
    assert acc.spent(0).calls == 3
    with pytest.raises(AccountingError, match="charged twice"):
        acc.charge(a, Cost(calls=1))


def test_hook_charges_and_skips() -> None:
    acc = Accountant(per_item=Limits(calls=4))
    hook = AccountantHook(acc)
    allow = hook.before_node(item=3, node_id="n", op="sample", worst_case=Cost(calls=2), n=2, max_tokens=5, resize=None)
    hook.after_phase(item=3, node_id="n", allowance=allow, actual=Cost(calls=2), error=None)
    hook.accountant.skip(3, "m", "untaken arm")
    assert acc.spent(3).calls == 2
    assert acc.ledger[(3, "m")].status == "skipped"
    assert acc.ledger[(3, "m")].actual == Cost()


UNITS = [Unit.calls, Unit.prompt_tokens, Unit.gen_tokens, Unit.tokens, Unit.flops]


@settings(max_examples=100, deadline=None)
@given(
    budget=st.dictionaries(st.sampled_from(UNITS), st.integers(0, 3000), min_size=1),
    pooled=st.dictionaries(st.sampled_from(UNITS), st.integers(0, 8000)),
    policy=st.sampled_from(["shrink", "stop"]),
    nodes=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 8), st.integers(1, 64), st.integers(1, 40), st.floats(0.0, 1.0)),
        min_size=1,
        max_size=25,
    ),
)
def test_actual_never_exceeds_budget_or_bound(budget, pooled, policy, nodes) -> None:
    """For random budgets and random node sequences, spend stays within every limit, per item and pooled."""
    bounds = {f"n{i}": gen_cost(n, m, p) for i, (_, n, m, p, _) in enumerate(nodes)}
    per = Limits(**{u.value: v for u, v in budget.items()})
    pool = Limits(**{u.value: v for u, v in pooled.items()})
    acc = Accountant(per_item=per, pooled=pool, on_exhaust=policy, static_bounds=bounds)
    for i, (item, n, m, p, frac) in enumerate(nodes):
        node = f"n{i}"
        a = acc.request(item, node, gen_cost(n, m, p), n=n, max_tokens=m, resize=lambda nn, mm, p=p: gen_cost(nn, mm, p))
        if a.granted:
            used = max(1, round(a.max_tokens * frac))
            acc.charge(a, gen_cost(a.n, used, p) if used <= a.max_tokens else a.worst_case)
    for item in range(4):
        spent = acc.spent(item)
        total_bound = sum((b for k, b in bounds.items() if (item, k) in acc.ledger), Cost())
        for u in UNITS:
            if per.get(u) is not None:
                assert spent.get(u) <= per.get(u) + 1e-6
            assert spent.get(u) <= total_bound.get(u) + 1e-6
    for u in UNITS:
        if pool.get(u) is not None:
            assert acc.pool_spent().get(u) <= pool.get(u) + 1e-6


def test_sub_budget_limits_the_nodes_of_one_call() -> None:
    acc = Accountant(per_item=Limits(calls=100), sub_budgets={"main/bon.main#1": Limits(calls=5)})
    a = acc.request(0, "main/bon.main#1/drafts", Cost(calls=4))
    assert a.granted
    acc.charge(a, Cost(calls=4))
    b = acc.request(0, "main/bon.main#1/more", Cost(calls=2))
    assert not b.granted and b.reason == "budget exhausted: sub-budget of main/bon.main#1 calls"
    assert acc.request(0, "main/other", Cost(calls=2)).granted
