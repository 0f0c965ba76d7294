"""Solving `auto` params: the largest value in range whose worst case fits every per-item budget.

The bound is monotone in every numeric param (a larger n, max_tokens, k,
rounds or repeat count never costs less), so the values that fit form a
prefix of the range and a binary search finds its end: about log2(range)
DAG builds. Several `auto` params are solved in declaration order; while
one is searched, the later ones sit at their lowest value, so each is as
large as it can be given the ones before it.
"""

from __future__ import annotations

from collections.abc import Callable

from ttcl.compiler.ast import ParamDecl
from ttcl.compiler.budget_report import AutoChoice, BudgetReport, LimitCheck
from ttcl.compiler.diagnostics import (
    BudgetDiagnosticError,
    Diagnostic,
    DiagnosticError,
    SemanticDiagnosticError,
)
from ttcl.compiler.params import param_range

Evaluate = Callable[[dict[str, int]], BudgetReport]


def describe_over(report: BudgetReport) -> str | None:
    """`calls 65 > 64`: the limits a report breaks, and the contexts it overflows (None if it fits)."""
    over = [_limit_text(lim) for lim in report.over()] + [c.text() for c in report.context_over]
    return None if not over else ", ".join(over)


def _limit_text(lim: LimitCheck) -> str:
    return f"{lim.unit} {lim.bound:.4g} > {lim.limit:.4g}"


def solve_autos(decls: list[ParamDecl], evaluate: Evaluate, sources: dict[str, str] | None = None) -> tuple[dict[str, int], list[AutoChoice]]:
    """Values for the `auto` params `decls`, in order; BudgetDiagnosticError when one cannot fit at all."""
    chosen: dict[str, int] = {}
    choices: list[AutoChoice] = []
    lows = {d.name: _range(d)[0] for d in decls}
    for i, decl in enumerate(decls):
        low, high = _range(decl)
        rest = {d.name: lows[d.name] for d in decls[i + 1:]}

        def report_at(value: int, name: str = decl.name, rest: dict[str, int] = rest) -> BudgetReport:
            try:
                return evaluate({**chosen, name: value, **rest})
            except DiagnosticError as e:  # say which value `auto` was trying (`max_tokens = 96 / k` at k = 64)
                tried = f" (with `{name}` = {value}, tried by `auto`)"
                raise type(e)([d.model_copy(update={"message": d.message + tried}) if d.severity == "error" else d
                               for d in e.diagnostics], e.sources) from None

        first = report_at(low)
        if first.verdict == "no budget":  # bad input (exit 2), not a budget verdict
            raise SemanticDiagnosticError([Diagnostic(
                span=decl.default.span, message=f"`auto` param `{decl.name}` needs a budget to fit",
                expected="a `budget per item { ... }` with calls, tokens or flops",
                hint=f"declare a per-item budget, or give `{decl.name}` a value",
            )], sources)
        fits, top = _fits, None
        if first.context_over and first.verdict != "over" and (top := report_at(high)).context_over == first.context_over:
            # the context overflows whatever this param is: not its fault, and reported where it arises (exit 2)
            def fits(r: BudgetReport) -> bool:
                return r.verdict != "over"
        top = top if top is not None else report_at(high)
        # the bound falls as the param grows, or dips inside the range (QA pass: "no value fits"): not monotone
        if not fits(first) and (inner := high if fits(top) else _fitting_inside(low, high, report_at, fits)) is not None:
            raise SemanticDiagnosticError([Diagnostic(
                span=decl.default.span,
                message=f"`auto` takes the largest `{decl.name}` whose worst case fits, assuming a larger value never "
                        f"costs less; here it does: with {decl.name} = {low}, {describe_over(first)}, but "
                        f"{decl.name} = {inner} fits",
                hint=f"give `{decl.name}` a value (--set {decl.name}=N), or use it so that more of it spends more",
            )], sources)
        if not fits(first):
            raise BudgetDiagnosticError([Diagnostic(
                span=decl.default.span,
                message=f"no value of `{decl.name}` in {low}..{high} fits the budget: with {decl.name} = {low}, {describe_over(first)}",
                hint="raise the budget, or lower the other params and max_tokens",
            )], sources)
        value, next_report = _largest_fit(low, high, report_at, fits, top)
        chosen[decl.name] = value
        choices.append(AutoChoice(
            param=decl.name, value=value, low=low, high=high,
            next_over=describe_over(next_report) if next_report is not None else None,
        ))
    return chosen, choices


_PROBES = 32  # values inside the range tried before saying that none fits


def _fitting_inside(low: int, high: int, report_at: Callable[[int], BudgetReport],
                    fits: Callable[[BudgetReport], bool]) -> int | None:
    """A value strictly inside low..high that fits, among up to _PROBES evenly spaced ones (every one when the
    range is that small), or None: `auto` assumes cost grows with the param, and a dip breaks that silently."""
    inside = range(low + 1, high)
    if not inside:
        return None
    step = max(1, len(inside) // _PROBES)
    return next((v for v in inside[::step] if fits(report_at(v))), None)


def _fits(report: BudgetReport) -> bool:
    return report.fits


def _largest_fit(low: int, high: int, report_at: Callable[[int], BudgetReport],
                 fits: Callable[[BudgetReport], bool] = _fits, top: BudgetReport | None = None,
                 ) -> tuple[int, BudgetReport | None]:
    """The largest v in low..high that fits (low is known to fit), and the report at v + 1 (`top`: the report at
    `high`, when the caller has it)."""
    top = report_at(high) if top is None else top
    if fits(top):
        return high, None
    lo, hi, hi_report = low, high, top  # invariant: lo fits, hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        rep = report_at(mid)
        if fits(rep):
            lo = mid
        else:
            hi, hi_report = mid, rep
    return lo, hi_report


def _range(decl: ParamDecl) -> tuple[int, int]:
    low, high = param_range(decl)
    assert low is not None and high is not None, "the checks allow `auto` only on ranged ints"
    return int(low), int(high)
