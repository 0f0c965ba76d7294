"""Property: on random programs with random budgets, run on a real model, no item ever spends more
than its budget or the static bound `ttcl check` proved, in any unit.

Programs come from the compiler's generator (tests/gen_budget_programs.py),
with the model rebound to a tiny random GPT-2 on disk and the reward
verifier swapped for the exact checker (no reward model needed).
"""

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
def budgets(draw: st.DrawFn) -> str:
    limits = []
    for unit, hi in (("calls", 80), ("gen_tokens", 600), ("tokens", 900), ("prompt_tokens", 400), ("flops", 4e8)):
        if draw(st.booleans()):
            limits.append(f"{unit} <= {draw(st.integers(1, int(hi)))}")
    if not limits:
        limits.append(f"calls <= {draw(st.integers(1, 80))}")
    policy = draw(st.sampled_from(["shrink", "stop"]))
    return "budget per item { " + "; ".join(limits) + f"; on_exhaust = {policy} }}"


def _source(src: str) -> str:
    src = src.replace('model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)',
                      f'model policy = "{MODEL_DIR}"')
    return src.replace("verifier orm = reward(rm)", 'verifier orm = check("arith")')


def check_invariants(source: str, tmp: Path, seed: int) -> None:
    path = tmp / "prog.ttc"
    path.write_text(source)
    try:
        compiled = compile_program(path)
    except TtclError as e:
        # a worst case past the model's context (a long revise chain): the compiler rightly refuses it
        assume("tokens of context" not in str(e))
        assume("for one value" not in str(e))  # a list doubled in a loop: refused (over 65,536 candidates)
        raise
    summary = Runner(compiled, RunOptions(device="cpu", seed=seed)).run(
        [Item(index=0, question="12 +7 *2"), Item(index=1, question="5 -3")]
    )
    limits = summary.budget_item
    for r in summary.results:
        for unit in STATIC_UNITS:
            spent = r["cost"][unit.value]
            assert spent <= summary.bound_total[unit.value] + 1e-6, (unit, r)
            if unit.value in limits:
                assert spent <= limits[unit.value] + 1e-6, (unit, r)
    for row in summary.rows:
        for unit in STATIC_UNITS:
            assert row.actual_max[unit.value] <= row.bound[unit.value] + 1e-6, (row.node, unit)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prog=budget_programs(), budget=budgets(), seed=st.integers(0, 3))
def test_actual_within_budget_and_bound(tmp_path_factory: pytest.TempPathFactory, prog, budget: str, seed: int) -> None:
    source = _source(prog.source.replace("\nstrategy main", "\n" + budget + "\nstrategy main", 1))
    check_invariants(source, tmp_path_factory.mktemp("p"), seed)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prog=budget_programs(), budget=budgets(), seed=st.integers(0, 3))
def test_actual_within_budget_and_bound_many(tmp_path_factory: pytest.TempPathFactory, prog, budget: str, seed: int) -> None:
    source = _source(prog.source.replace("\nstrategy main", "\n" + budget + "\nstrategy main", 1))
    check_invariants(source, tmp_path_factory.mktemp("p"), seed)
