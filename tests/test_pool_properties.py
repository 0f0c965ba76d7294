"""Property: under a pooled budget that allocates (`split = need` with an `allot`, or `split = even`), on
random programs and budgets run on a real (random-weight) model, the whole run never spends more than the
pool, and no item more than its per-item budget or the static bound, in any unit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ttcl.compiler.costmodel import STATIC_UNITS
from ttcl.compiler.pipeline import compile_program
from ttcl.errors import TtclError
from ttcl.runtime.dataset import Item
from ttcl.runtime.runner import Runner, RunOptions

sys.path.insert(0, str(Path(__file__).parent))
from gen_budget_programs import budget_programs  # noqa: E402

MODEL_DIR = Path("/tmp/ttcl-test-models/rand512")
QUESTIONS = ["12 +7 *2", "5 -3", "40 *2 -9"]


@pytest.fixture(scope="module", autouse=True)
def model_dir():
    import torch

    from ttcl.runtime.backends.random_model import save_random_gpt2

    if not (MODEL_DIR / "config.json").exists():
        save_random_gpt2(MODEL_DIR, n_positions=512)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield MODEL_DIR
    torch.set_num_threads(before)


@st.composite
def pools(draw: st.DrawFn) -> tuple[str, str]:
    """A pooled budget with a split, and optionally a per-item budget beside it."""
    limits = []
    for unit, hi in (("calls", 150), ("gen_tokens", 1500), ("tokens", 2400), ("flops", 1e9)):
        if draw(st.booleans()):
            limits.append(f"{unit} <= {draw(st.integers(1, int(hi)))}")
    if not limits:
        limits.append(f"calls <= {draw(st.integers(1, 150))}")
    split = draw(st.sampled_from(["need", "even"]))
    policy = draw(st.sampled_from(["shrink", "stop"]))
    pooled = "budget pooled { " + "; ".join(limits) + f"; split = {split}; on_exhaust = {policy} }}"
    if draw(st.booleans()):
        pooled += f"\nbudget per item {{ calls <= {draw(st.integers(1, 60))} }}"
    need = draw(st.sampled_from(["count(c0)", "1 - agreement(c0)", "2", "best_score(c0) + budget.left.calls"]))
    return pooled, (f"    share = allot({need})\n" if split == "need" else "")


def _source(src: str, pooled: str, allot: str) -> str:
    src = src.replace('model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)',
                      f'model policy = "{MODEL_DIR}"')
    src = src.replace("verifier orm = reward(rm)", 'verifier orm = check("arith")')
    src = src.replace("\nstrategy main", "\n" + pooled + "\nstrategy main", 1)
    head, sep, rest = src.partition("    c0 = ")
    first, nl, tail = rest.partition("\n")
    return head + sep + first + nl + allot + tail


def check_pool(source: str, tmp: Path, seed: int, batch: int | None) -> None:
    path = tmp / "prog.ttc"
    path.write_text(source)
    try:
        compiled = compile_program(path)
    except TtclError as e:
        # a worst case past the model's context (a long revise chain): the compiler rightly refuses it
        assume("tokens of context" not in str(e))
        assume("for one value" not in str(e))  # a list doubled in a loop: refused (over 65,536 candidates)
        raise
    summary = Runner(compiled, RunOptions(device="cpu", seed=seed, max_batch_items=batch)).run(
        [Item(index=i, question=q) for i, q in enumerate(QUESTIONS)])
    for unit, limit in summary.budget_pooled.items():
        assert summary.actual_total[unit] <= limit * (1 + 1e-9) + 1e-9, (unit, summary.actual_total, limit)
    for r in summary.results:
        for unit in STATIC_UNITS:
            spent = r["cost"][unit.value]
            assert spent <= summary.bound_total[unit.value] + 1e-6, (unit, r)
            if unit.value in summary.budget_item:
                assert spent <= summary.budget_item[unit.value] + 1e-6, (unit, r)
    for row in summary.rows:
        for unit in STATIC_UNITS:
            assert row.actual_max[unit.value] <= row.bound[unit.value] + 1e-6, (row.node, unit)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prog=budget_programs(), pool=pools(), seed=st.integers(0, 3), batch=st.sampled_from([None, 1, 2]))
def test_allocating_pool_never_overspends(tmp_path_factory: pytest.TempPathFactory, prog, pool, seed: int,
                                          batch: int | None) -> None:
    check_pool(_source(prog.source, *pool), tmp_path_factory.mktemp("p"), seed, batch)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prog=budget_programs(), pool=pools(), seed=st.integers(0, 3), batch=st.sampled_from([None, 1, 2]))
def test_allocating_pool_never_overspends_many(tmp_path_factory: pytest.TempPathFactory, prog, pool, seed: int,
                                               batch: int | None) -> None:
    check_pool(_source(prog.source, *pool), tmp_path_factory.mktemp("p"), seed, batch)
