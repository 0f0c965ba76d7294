"""The budget report: per-node bounds, totals, every budget limit against its bound, and a verdict.

`analyze(dag, module, ...)` runs the bound pass (`budget.py`) and compares
the totals with the root module's `budget per item` and with the sub-budget
of every inlined call whose module declares its own. `seconds` and pooled
budgets are reported as enforced at run time: nothing static bounds wall
time, and a pooled budget depends on the dataset's size.

The report is what `ttcl check` prints (and `--json` dumps) and what the
runtime shows beside actual spend, so it is a typed pydantic model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ttcl.compiler.ast import BudgetDecl, Module
from ttcl.compiler.budget import ZERO, NodeBounds, SpecLookup, bound_nodes, cost_row, total_cost
from ttcl.compiler.costmodel import FORMULA, STATIC_UNITS, Cost, Unit
from ttcl.compiler.dag import MODEL_OPS, Dag, DagNode, construct

RUNTIME_NOTE = "enforced at run time"
POOLED_NOTE = "pooled over a dataset run: enforced at run time"
MAX_DOMINATORS = 3

Status = Literal["fits", "over", "run time"]


class Row(BaseModel):
    """One node that can spend: its place and its bound per unit."""

    node: str
    op: str
    file: str
    line: int
    column: int
    model: str | None = None
    guarded: bool = False
    bound: dict[str, float]


class Dominator(BaseModel):
    """A node that makes up a large part of an over-budget unit."""

    node: str
    op: str
    line: int
    amount: float
    share: float  # of the unit's total bound


class LimitCheck(BaseModel):
    """One declared limit against the bound."""

    scope: Literal["item", "pooled"]
    unit: str
    limit: float
    bound: float | None  # None for seconds (no static bound)
    status: Status
    over_by: float = 0.0
    note: str | None = None
    dominating: list[Dominator] = []


class SubBudget(BaseModel):
    """A called strategy's own `budget per item`, checked against the nodes inlined for that call."""

    call: str  # the call's namespace, e.g. main/bon.main#1
    module: str  # the callee's module, whose `budget per item` this is
    file: str  # where the call is
    line: int
    total: dict[str, float]
    limits: list[LimitCheck]

    @property
    def fits(self) -> bool:
        return all(lim.status != "over" for lim in self.limits)


class AutoChoice(BaseModel):
    """The value the solver picked for an `auto` param, and why one more does not fit."""

    param: str
    value: int
    low: int
    high: int
    next_over: str | None = None  # "calls 65 > 64" for value + 1; None when value is the top of the range


class ContextOverflow(BaseModel):
    """A model node whose worst-case sequence is longer than its model's context window."""

    node: str
    op: str
    model: str
    need: int
    n_ctx: int

    def text(self) -> str:
        return f"{self.node} ({self.op}) may need {self.need} tokens of context; model `{self.model}` has {self.n_ctx}"


class BudgetReport(BaseModel):
    """What `ttcl check` reports."""

    file: str
    entry: str
    formula: str = FORMULA
    rows: list[Row]
    total: dict[str, float]
    limits: list[LimitCheck]
    sub_budgets: list[SubBudget] = []
    params: dict[str, int | float | bool | str] = {}
    auto: list[AutoChoice] = []
    on_exhaust: str | None = None
    warnings: list[str] = []
    context_over: list[ContextOverflow] = []  # worst-case sequences longer than their model's context: errors
    verdict: Literal["fits", "over", "no budget"]

    @property
    def fits(self) -> bool:
        return self.verdict != "over" and not self.context_over

    def over(self) -> list[LimitCheck]:
        """Every limit that the worst case breaks, the entry's first, then the sub-budgets'."""
        out = [lim for lim in self.limits if lim.status == "over"]
        for sub in self.sub_budgets:
            out.extend(lim for lim in sub.limits if lim.status == "over")
        return out

    def row(self, node: str) -> Row | None:
        return next((r for r in self.rows if r.node == node), None)


def analyze(dag: Dag, module: Module, spec_of: SpecLookup, *, bounds: NodeBounds | None = None) -> BudgetReport:
    """Bound every node and check the totals against the declared budgets."""
    bounds = bounds or bound_nodes(dag, spec_of)
    total = total_cost(dag, bounds.costs)
    limits = check_limits(module.budgets, total, dag, bounds)
    subs = [_sub_budget(dag, bounds, call) for call in dag.calls if call.imported and _item_budgets(call.module.budgets)]
    has_static = any(lim.status != "run time" for lim in limits) or bool(subs)
    over = any(lim.status == "over" for lim in limits) or any(not s.fits for s in subs)
    verdict: Literal["fits", "over", "no budget"] = "over" if over else ("fits" if has_static else "no budget")
    on_exhaust = next((b.on_exhaust for b in module.budgets if b.on_exhaust), None)
    return BudgetReport(
        file=module.path, entry=dag.entry, rows=rows(dag, bounds), total=cost_row(total),
        limits=limits, sub_budgets=subs, verdict=verdict, on_exhaust=on_exhaust,
        context_over=context_overflows(dag, bounds, spec_of), warnings=[*bounds.notes, *unused_model_values(dag)],
    )


def unused_model_values(dag: Dag) -> list[str]:
    """Model calls whose value reaches neither the answer nor a condition: they still run and are charged
    (QA pass: `e = verify(j, d)`, never read, cost its calls without a word). Once per source line; a name
    that begins with `_` says it is meant (a pool program's scores, read from the trace by `ttcl eval`)."""
    used: set[str] = set()
    # roots: the answer; every condition (an `if`'s, and a loop's `until`/`break`, whose last check guards nothing
    # yet ran: QA pass, "score until good enough" was warned about); and every value named `_...` (meant)
    todo = [dag.output, *(n.guard.node for n in dag.nodes.values() if n.guard is not None),
            *(n.id for n in dag.nodes.values() if n.id.endswith("/stop") or (n.var or "").startswith("_"))]
    while todo:
        nid = todo.pop()
        if nid in used or nid not in dag.nodes:
            continue
        used.add(nid)
        node = dag.nodes[nid]
        todo.extend(node.input_nodes())
        if node.guard is not None:
            todo.append(node.guard.node)
    out: dict[tuple[str, int], str] = {}
    reached: set[tuple[str, int]] = set()  # source places one of whose copies (a loop's iterations, calls) is used
    for node in dag.nodes.values():
        if node.op not in MODEL_OPS:
            continue
        # a node of an inlined strategy call is said once, at the outermost call (the callee is not at fault)
        call = min((c for c in dag.calls if node.id.startswith(c.ns)), key=lambda c: len(c.ns), default=None)
        span = call.span if call is not None else node.span
        if node.id in used or (call is not None and call.owner.startswith("_")):  # `_h = helper(q)`: meant
            reached.add((span.file, span.line))
            continue
        what = (f"the call of {call.label} (line {span.line})" if call is not None else
                f"`{node.var}` (line {span.line}, {node.op})" if node.var else f"this {node.op} (line {span.line})")
        out.setdefault((span.file, span.line),
                       f"{what} does not reach the answer: its model calls still run and are charged "
                       "(their output is in the trace); drop it" + (
                           f", or name it `_{node.var}` if that is meant" if call is None and node.var else
                           ", or assign it to a name that begins with `_` if that is meant" if call is not None else ""))
    return [text for place, text in out.items() if place not in reached]


def context_overflows(dag: Dag, bounds: NodeBounds, spec_of: SpecLookup) -> list[ContextOverflow]:
    """Nodes whose worst-case sequence is longer than their model's context window.

    The runtime cannot run such a sequence (a reward model fails the item, a policy cannot
    attend past its positions), so `check` reports each as an error rather than promising a bound.
    """
    out: list[ContextOverflow] = []
    for node in dag.topological_order():
        if node.op not in MODEL_OPS:
            continue
        a = node.args
        if node.op == "verify":
            if a.verifier is None or a.verifier.model is None:
                continue
            model = a.verifier.model
            seq = bounds.verifier_len.get(node.id, bounds.values[node.input_nodes("cands")[0]].seq_len)
        else:
            if a.model is None:
                continue
            model, seq = a.model, bounds.values[node.id].seq_len
        n_ctx = spec_of(model).n_ctx
        if n_ctx is not None and seq > n_ctx:
            out.append(ContextOverflow(node=node.id, op=node.op, model=model.name, need=int(seq), n_ctx=n_ctx))
    return out


def rows(dag: Dag, bounds: NodeBounds) -> list[Row]:
    out = []
    for node in dag.topological_order():
        if node.op not in MODEL_OPS:
            continue
        cost = bounds.costs.get(node.id, ZERO)
        out.append(construct(Row, {
            "node": node.id, "op": node.op, "file": node.span.file, "line": node.span.line, "column": node.span.column,
            "model": _model_name(node), "guarded": node.guard is not None, "bound": cost_row(cost),
        }))
    return out


def _model_name(node: DagNode) -> str | None:
    if node.args.model is not None:
        return node.args.model.name
    if node.args.verifier is not None:
        return node.args.verifier.name
    return None


def _item_budgets(budgets: list[BudgetDecl]) -> list[BudgetDecl]:
    return [b for b in budgets if b.scope == "item"]


def check_limits(budgets: list[BudgetDecl], total: Cost, dag: Dag, bounds: NodeBounds, ns: str | None = None) -> list[LimitCheck]:
    """Each declared limit against the total bound; pooled limits and seconds are left to run time."""
    out: list[LimitCheck] = []
    for decl in budgets:
        for lim in decl.limits:
            unit = Unit(lim.unit)
            limit = float(lim.value.value)
            if decl.scope == "pooled" or unit not in STATIC_UNITS:
                note = POOLED_NOTE if decl.scope == "pooled" else RUNTIME_NOTE
                split = getattr(decl, "split", None)
                if decl.scope == "pooled" and split not in (None, "first_come"):
                    note = f"pooled over a dataset run, shared {'evenly' if split == 'even' else 'by need at allot'}: enforced at run time"
                bound = total.get(unit) if unit in STATIC_UNITS else None
                out.append(LimitCheck(scope=decl.scope, unit=unit.value, limit=limit, bound=bound, status="run time", note=note))
                continue
            bound = total.get(unit)
            if bound <= limit:
                out.append(LimitCheck(scope="item", unit=unit.value, limit=limit, bound=bound, status="fits"))
            else:
                out.append(LimitCheck(
                    scope="item", unit=unit.value, limit=limit, bound=bound, status="over",
                    over_by=bound - limit, dominating=dominators(dag, bounds, unit, bound, ns),
                ))
    return out


def dominators(dag: Dag, bounds: NodeBounds, unit: Unit, total: float, ns: str | None = None) -> list[Dominator]:
    """The nodes with the largest bound in `unit` (within namespace `ns`, when given)."""
    ranked = []
    for node_id, cost in bounds.costs.items():
        if ns is not None and not node_id.startswith(ns + "/"):
            continue
        amount = cost.get(unit)
        if amount > 0:
            ranked.append((amount, node_id))
    ranked.sort(key=lambda t: (-t[0], t[1]))
    out = []
    for amount, node_id in ranked[:MAX_DOMINATORS]:
        node = dag.nodes[node_id]
        out.append(Dominator(node=node_id, op=node.op, line=node.span.line, amount=amount,
                             share=amount / total if total else 0.0))
    return out


def _sub_budget(dag: Dag, bounds: NodeBounds, call: object) -> SubBudget:
    ns: str = call.ns  # type: ignore[attr-defined]
    module: Module = call.module  # type: ignore[attr-defined]
    prefix = ns + "/"
    total = total_cost(dag, bounds.costs, include=lambda n: n.id.startswith(prefix))
    limits = check_limits(_item_budgets(module.budgets), total, dag, bounds, ns)
    span = call.span  # type: ignore[attr-defined]
    return SubBudget(call=ns, module=module.path, file=span.file, line=span.line, total=cost_row(total), limits=limits)
