"""The pooled ledger of a wide run (runtime/pool.py) and one shard's link to it (runtime/shard.py).

No Ray here: the ledger is driven directly, and shards run in this process on
the real engine with a client that calls the ledger (what the accountant
actor does over Ray, tested in test_distributed.py). A worker "dies" by its
client raising at a chosen call, before or after the ledger applied it (a
timed-out call whose outcome is unknown): whatever it had not sent is lost,
exactly as with a killed process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ttcl.compiler.costmodel import STATIC_UNITS, Cost
from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclSemanticError
from ttcl.runtime.accountant import Limits
from ttcl.runtime.dataset import Item
from ttcl.runtime.pool import PoolError, PoolLedger, split_quota
from ttcl.runtime.runner import Runner, RunOptions
from ttcl.runtime.shard import run_shard

sys.path.insert(0, str(Path(__file__).parent))
from gen_budget_programs import budget_programs  # noqa: E402

MODEL_DIR = Path("/tmp/ttcl-test-models/rand512")


def _c(**kw: float) -> dict[str, float]:
    return Cost(**kw).as_dict()


def test_reserve_charge_release_and_idempotent_keys() -> None:
    led = PoolLedger(Limits(calls=10, gen_tokens=100))
    k1 = ("w0", 0, "main/s", 0, 0)
    assert led.step("w0", [("reserve", k1, 0, _c(calls=4, gen_tokens=60))]) == [True]
    # The same batch again (a retried call) books nothing twice and gets the same answer.
    assert led.step("w0", [("reserve", k1, 0, _c(calls=4, gen_tokens=60))]) == [True]
    assert led.held.calls == 4
    k2 = ("w0", 1, "main/s", 0, 0)
    assert led.step("w0", [("reserve", k2, 0, _c(calls=4, gen_tokens=60))]) == [False]  # 120 > 100 tokens held
    led.step("w0", [("charge", k1, 0, _c(calls=4, gen_tokens=20)), ("charge", k1, 0, _c(calls=4, gen_tokens=20))])
    assert led.spent.gen_tokens == 20 and led.held.gen_tokens == 0  # the rest released, charged once
    assert led.step("w0", [("reserve", ("w0", 1, "main/s", 0, 1), 0, _c(calls=4, gen_tokens=60))]) == [True]


def test_unknown_outcome_is_charged_in_full_and_the_worker_fenced() -> None:
    led = PoolLedger(Limits(calls=10))
    led.step("w0", [("reserve", ("w0", 0, "n", 0, 0), 0, _c(calls=3)), ("reserve", ("w0", 1, "n", 0, 0), 0, _c(calls=2))])
    led.step("w0", [("charge", ("w0", 0, "n", 0, 0), 0, _c(calls=1))])
    lost = led.settle_worker("w0", finished={0})
    assert led.spent.calls == 1 + 2 and led.held.calls == 0
    assert set(lost) == {1} and lost[1].calls == 2  # item 0 finished: its spend is in its record, not lost
    with pytest.raises(PoolError, match="declared lost"):
        led.step("w0", [("charge", ("w0", 1, "n", 0, 0), 0, _c(calls=1))])


def test_shard_quotas_never_sum_above_the_pool() -> None:
    quotas = split_quota(Limits(calls=10, flops=1e6), {0: 3, 1: 3, 2: 1})
    assert sum(q.calls for q in quotas.values()) <= 10  # type: ignore[misc]
    assert sum(q.flops for q in quotas.values()) <= 1e6 * (1 + 1e-12)  # type: ignore[misc]
    led = PoolLedger(Limits(calls=10), quotas)
    assert led.step("a", [("reserve", ("a", 0, "n", 0, 0), 2, _c(calls=2))]) == [False]  # shard 2's quota is 1
    assert led.step("a", [("reserve", ("a", 0, "n", 0, 1), 0, _c(calls=4))]) == [True]


def test_a_key_from_another_worker_is_refused() -> None:
    with pytest.raises(PoolError, match="key of worker"):
        PoolLedger(Limits()).step("a", [("reserve", ("b", 0, "n", 0, 0), 0, _c(calls=1))])


# ---------------------------------------------------------------- shards on the real engine


class Died(Exception):
    """The simulated death of a worker process."""


def run_wide(compiled, items: list[Item], *, shards: int, kill_at: int | None, after: bool,
             seed: int = 0) -> tuple[PoolLedger, dict[int, dict], int]:
    """The driver's loop in miniature: shards in turn, shard 0's first worker dying at its `kill_at`-th pool call."""
    runner = Runner(compiled, RunOptions(device="cpu", seed=seed))
    pool = runner.pooled
    weights = {s: len(items[s::shards]) for s in range(shards)}
    led = PoolLedger(pool, split_quota(pool, weights) if not pool.is_empty() else {})
    done: dict[int, dict] = {}
    restarts = 0
    log: list[list] = []  # every batch the ledger received, in order
    for s in range(shards):
        todo, attempt = list(items[s::shards]), 0
        while todo:
            name, calls, first = f"w{s}.{attempt}", [0], s == 0 and attempt == 0  # shard 0's first worker dies

            def client(w: str, ops: list, finished: list, nodes: int, calls: list[int] = calls,
                       first: bool = first) -> list[bool]:
                calls[0] += 1
                dies = first and calls[0] == kill_at
                if dies and not after:
                    raise Died
                granted = led.step(w, ops)
                log.append(ops)
                for _nodes, item in finished:
                    done[item["item"]] = item
                if dies and after:
                    raise Died  # applied, but the worker never heard back
                return granted

            try:
                run_shard(runner, todo, client=client, worker=name, shard=s, attempt=attempt, quota=led.shard_left(s))
            except Died:
                led.settle_worker(name, set(done))
                restarts += 1
            todo = [it for it in todo if it.index not in done]
            attempt += 1
    run_wide.log = log  # type: ignore[attr-defined]
    return led, done, restarts


def reserved_before_spent(log: list[list]) -> bool:
    """Every charge arrives in a later call than its reservation: nothing was spent before the ledger agreed."""
    seen: set = set()
    for ops in log:
        for kind, key, _shard, cost in ops:
            if kind == "charge" and any(cost[u] for u in ("calls", "prompt_tokens", "gen_tokens", "flops")):
                if key not in seen:
                    return False
        seen |= {key for kind, key, _s, _c in ops if kind == "reserve"}
    return True


@pytest.fixture(scope="module")
def arith_items() -> list[Item]:
    from ttcl.runtime.tasks.arith import make_problems

    return [Item(index=i, question=p.question, gold=str(p.answer)) for i, p in enumerate(make_problems(6, [1, 2, 3], 5))]


def test_a_shard_reports_its_node_steps_before_its_items_finish(arith_items: list[Item]) -> None:
    """The driver's progress bar reads these: with a shard's items all in flight they finish together, so a bar
    of finished items stood at 0% until the end under --ray. Every node of every item is counted once."""
    compiled = compile_program(Path(__file__).parent.parent / "programs" / "revision.ttc", overrides={"threshold": "1.0"})
    runner = Runner(compiled, RunOptions(device="cpu"))
    led = PoolLedger(runner.pooled)
    calls: list[tuple[int, int]] = []  # (node steps reported, items finished) per pool call

    def client(w: str, ops: list, finished: list, nodes: int) -> list[bool]:
        calls.append((nodes, len(finished)))
        return led.step(w, ops)

    run_shard(runner, arith_items, client=client, worker="w0", shard=0, attempt=0, quota=runner.pooled)
    assert sum(n for n, _ in calls) == len(arith_items) * len(compiled.dag)
    first_finished = next(k for k, (_, f) in enumerate(calls) if f)
    assert sum(n for n, _ in calls[:first_finished]) > 0


def test_two_shards_in_process_match_one_runner(arith_items: list[Item]) -> None:
    compiled = compile_program(Path(__file__).parent.parent / "programs" / "self_consistency.ttc")
    ref = Runner(compiled, RunOptions(device="cpu")).run(arith_items)
    led, done, restarts = run_wide(compiled, arith_items, shards=2, kill_at=2, after=False)
    assert restarts == 1 and set(done) == {it.index for it in arith_items}
    assert [done[i]["answer"] for i in range(len(arith_items))] == [r["answer"] for r in ref.results]
    assert led.stats()["open"] == 0
    assert reserved_before_spent(run_wide.log)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def rand_model() -> Path:
    from ttcl.runtime.backends.random_model import save_random_gpt2

    if not (MODEL_DIR / "config.json").exists():
        save_random_gpt2(MODEL_DIR, n_positions=512)
    return MODEL_DIR


@st.composite
def budgets(draw: st.DrawFn) -> tuple[str, str]:
    item, pooled = [], []
    for unit, hi in (("calls", 80), ("gen_tokens", 600), ("flops", 4e8)):
        if draw(st.booleans()):
            item.append(f"{unit} <= {draw(st.integers(1, int(hi)))}")
        if draw(st.booleans()):
            pooled.append(f"{unit} <= {draw(st.integers(1, int(hi) * 3))}")
    if not pooled:
        pooled.append(f"calls <= {draw(st.integers(1, 200))}")
    policy = draw(st.sampled_from(["shrink", "stop"]))
    per_item = ("budget per item { " + "; ".join(item) + f"; on_exhaust = {policy} }}\n") if item else ""
    return per_item, "budget pooled { " + "; ".join(pooled) + (f"; on_exhaust = {policy}" if not item else "") + " }\n"


def check_pooled_property(prog, budget: tuple[str, str], kill_at: int, after: bool, tmp: Path) -> None:
    src = prog.source.replace('model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)',
                              f'model policy = "{MODEL_DIR}"').replace("verifier orm = reward(rm)",
                                                                       'verifier orm = check("arith")')
    src = src.replace("\nstrategy main", "\n" + budget[0] + budget[1] + "strategy main", 1)
    path = tmp / "prog.ttc"
    path.write_text(src)
    try:
        compiled = compile_program(path)
    except TtclSemanticError:  # e.g. a generated program too long for the random model's 512 positions
        reject()
    items = [Item(index=i, question=q) for i, q in enumerate(["12 +7 *2", "5 -3", "9 *2", "40 -1 +3"])]
    led, done, _ = run_wide(compiled, items, shards=2, kill_at=kill_at, after=after)
    assert set(done) == {0, 1, 2, 3}  # no item lost, whoever died
    assert led.stats()["open"] == 0
    assert reserved_before_spent(run_wide.log)  # type: ignore[attr-defined]
    pooled = Runner(compiled, RunOptions(device="cpu"), load_models=False).pooled
    per_item = Runner(compiled, RunOptions(device="cpu"), load_models=False).per_item
    for unit in STATIC_UNITS:  # every attempt counts, the lost ones in full
        lim = pooled.get(unit)
        spent = led.spent.prompt_tokens + led.spent.gen_tokens if unit.value == "tokens" else led.spent.get(unit)
        assert lim is None or spent <= lim * (1 + 1e-9) + 1e-9, (unit, spent, lim)
        for rec in done.values():
            ilim = per_item.get(unit)
            assert ilim is None or rec["cost"][unit.value] <= ilim * (1 + 1e-9) + 1e-9, (unit, rec)


PROPERTY = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=3, **PROPERTY)
@given(prog=budget_programs(), budget=budgets(), kill_at=st.integers(1, 4), after=st.booleans())
def test_pooled_budget_holds_under_worker_deaths(rand_model: Path, tmp_path_factory: pytest.TempPathFactory,
                                                 prog, budget: tuple[str, str], kill_at: int, after: bool) -> None:
    check_pooled_property(prog, budget, kill_at, after, tmp_path_factory.mktemp("p"))


@pytest.mark.slow
@settings(max_examples=40, **PROPERTY)
@given(prog=budget_programs(), budget=budgets(), kill_at=st.integers(1, 6), after=st.booleans())
def test_pooled_budget_holds_under_worker_deaths_many(rand_model: Path, tmp_path_factory: pytest.TempPathFactory,
                                                      prog, budget: tuple[str, str], kill_at: int,
                                                      after: bool) -> None:
    check_pooled_property(prog, budget, kill_at, after, tmp_path_factory.mktemp("p"))
