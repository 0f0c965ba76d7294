"""Property tests over random well-formed programs: the bound is monotone in every int param, and `auto` is tight."""

from __future__ import annotations

import pytest
from gen_budget_programs import PARAM_HIGH, budget_programs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ttcl.compiler.budget import TooManyCandidates
from ttcl.compiler.costmodel import STATIC_UNITS
from ttcl.compiler.diagnostics import BudgetDiagnosticError
from ttcl.compiler.pipeline import compile_program

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _compile(source: str, **overrides: str):  # type: ignore[no-untyped-def]
    """A drawn list doubled in a loop (`c = c + c`) is refused over 65,536 candidates: such a draw is skipped."""
    try:
        return compile_program(source=source, file="gen.ttc", overrides=overrides)
    except TooManyCandidates:
        assume(False)
        raise


def _total(source: str, **overrides: int) -> dict[str, float]:
    return _compile(source, **{k: str(v) for k, v in overrides.items()}).report.total


@SETTINGS
@given(prog=budget_programs(), data=st.data())
def test_bound_is_monotone_in_every_int_param(prog, data) -> None:  # type: ignore[no-untyped-def]
    param = data.draw(st.sampled_from(prog.params))
    value = data.draw(st.integers(1, PARAM_HIGH - 1))
    low = _total(prog.source, **{param: value})
    high = _total(prog.source, **{param: value + 1})
    for unit in STATIC_UNITS:
        assert low[unit.value] <= high[unit.value], (unit, param, value)


@SETTINGS
@given(
    prog=st.integers(0, 4).flatmap(
        lambda i: budget_programs(
            budget=["budget per item { calls <= 40 }", "budget per item { gen_tokens <= 300 }",
                    "budget per item { tokens <= 2k; calls <= 100 }", "budget per item { flops <= 3e9 }",
                    "budget per item { prompt_tokens <= 500 }"][i],
            auto=True,
        )
    )
)
def test_auto_value_fits_and_the_next_does_not(prog) -> None:  # type: ignore[no-untyped-def]
    try:
        compiled = _compile(prog.source)
    except BudgetDiagnosticError:
        # Even the lowest value is over: check that it really is.
        report = _compile(prog.source, p0="1").report
        assert report.verdict == "over"
        return
    value = compiled.params["p0"]
    assert compiled.report.verdict == "fits"
    assert 1 <= value <= PARAM_HIGH
    if value < PARAM_HIGH:
        nxt = _compile(prog.source, p0=str(value + 1)).report
        assert nxt.verdict == "over"


SLOW = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@SLOW
@given(prog=budget_programs(), data=st.data())
def test_bound_is_monotone_many(prog, data) -> None:  # type: ignore[no-untyped-def]
    test_bound_is_monotone_in_every_int_param.hypothesis.inner_test(prog, data)  # type: ignore[attr-defined]
