"""Build the DAG (see `dag.py` for the node schema and the control-flow encoding).

One walk over the entry strategy's body, inlining strategy calls and
unrolling loops. The walk never mutates the AST. Static arguments (`n`,
`max_tokens`, `k`, `rounds`, repeat counts, temperatures) are evaluated
here against the params of the module instance they appear in, so every
DAG node carries concrete numbers; the budget stage re-builds the DAG for
each trial value when it solves `auto` params.

The builder trusts the checks: a program reaching it is well-formed. What
it still reports (as diagnostics with a position, never a traceback) is
what only unrolling reveals, such as a DAG too large to build.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ttcl.compiler import builtins as B
from ttcl.compiler.ast import (
    Assign,
    Break,
    If,
    Repeat,
    Return,
    Span,
    Stmt,
    Strategy,
)
from ttcl.compiler.checks_flow import assigned_names
from ttcl.compiler.dag import (
    MODEL_OPS,
    Dag,
    DagNode,
    GuardCond,
    NodeArgs,
    Port,
)
from ttcl.compiler.dag_exprs import (
    BuildError,
    CallSite,
    ExprMixin,
    Frame,
    ModuleInfo,
    StaticValue,
    _entry_strategy,
)
from ttcl.compiler.dag_util import _vtype
from ttcl.compiler.diagnostics import Diagnostic

MAX_NODES = 50_000
_REPEAT_NS = re.compile(r"/repeat(#\d+)?\[")  # a loop round's namespace segment (`_repeat`)

# Bindings copied while unrolling (each `if` arm, loop iteration and merge reads the scope): a program of many
# names inside long loops costs names x iterations even when it adds no node (an alias adds none). A 1 MiB
# program of 137,045 aliases and one 1,024-round loop took 4.2 GB and 34 s; nested loops did not finish.
MAX_SCOPE_WORK = 20_000_000
_NO_ARGS = NodeArgs()  # a DAG larger than this is refused with a diagnostic, not built


@dataclass
class Escape:
    """A break or return that may leave the current block; `ctx` is where it happened."""

    kind: str
    ctx: GuardCond | None
    marker: str | None = None



@dataclass
class BlockResult:
    escapes: list[Escape]
    always: bool  # every path through the block exits
    end: GuardCond | None  # the guard under which the block's end is reached


class Builder(ExprMixin):
    """Walks the entry strategy and records nodes in creation (topological) order."""

    def __init__(
        self,
        instances: dict[str, ModuleInfo],
        *,
        model_overrides: Mapping[str, str] | None = None,
        max_input_tokens: int | None = None,
        sources: dict[str, str] | None = None,
    ):
        self.instances = instances
        self.scope_work = 0  # bindings copied so far (MAX_SCOPE_WORK)
        self.rounds = 1  # the product of the enclosing loops' counts, through strategy calls (B.MAX_UNROLL)
        self.model_overrides = dict(model_overrides or {})
        self.max_input_tokens = max_input_tokens
        self.sources = sources or {}
        self.nodes: dict[str, DagNode] = {}
        self.last_effect: str | None = None  # the latest model node or `allot`, in program order
        self.reads: list[str] = []  # `budget.left` / `budget.pool` reads since then: the next effect waits for them
        self.static: dict[str, StaticValue] = {}
        self.call_counts: dict[tuple[str, str], int] = {}
        self.id_counts: dict[str, int] = {}
        self.refs: dict[tuple[str, str, str], object] = {}  # (kind, instance, name) -> ModelRef / VerifierRef
        self.param_nodes: dict[tuple[str, str], str] = {}
        self.calls: list[CallSite] = []
        self.params_read: dict[str, set[str]] = {}  # per imported instance: its own param values a call read
        # The statement an anonymous expression belongs to (`drafts`, `return`, `if`, `until`): its id is
        # `owner.op`, so an edit elsewhere in the file never renames it (no line or column in ids).
        self.owner = ""
        self.loop_counts: dict[str, int] = {}

    # ------------------------------------------------------------ entry

    def build(self, strategy_name: str | None = None) -> Dag:
        info = self.instances[""]
        strat = _entry_strategy(info.module, strategy_name)
        frame = Frame(info, strat.name)
        inputs = []
        for inp in strat.inputs:
            max_len = inp.type.max_len if inp.type.max_len is not None else self.max_input_tokens
            node = self.add(
                frame, "input", inp.type.name, inp.span, None,
                args=NodeArgs.make(name=inp.name, max_len=max_len), var=inp.name,
            )
            frame.env[inp.name] = node
            inputs.append(node)
        output = self.inline_body(strat, frame, None)
        self.check_allot(info)
        dag = Dag(self.nodes, output, inputs, strat.name)
        dag.calls = self.calls
        dag.params_read = self.params_read
        return dag

    def check_allot(self, info: ModuleInfo) -> None:
        """`allot` is the pool's one synchronisation point: once per item, and only under `split = need`."""
        allots = [n for n in self.nodes.values() if n.op == "allot"]
        pooled = next((b for b in info.module.budgets if b.scope == "pooled"), None)
        split = getattr(pooled, "split", None)
        if allots and split != "need":
            self.fail(allots[0].span, "`allot` shares a pooled budget by need, but the program declares no "
                      "`budget pooled { ...; split = need }`", hint="add `split = need` to the pooled budget, or drop `allot`")
        if len(allots) > 1:
            self.fail(allots[1].span, f"`allot` runs {len(allots)} times per item (in a loop, in two places, "
                      "two arms of an `if` included, or through two calls); the pool is shared out once",
                      hint="call `allot` once, outside any `repeat`: set the need in each arm, then `allot(need)` after them")
        if looped := next((n for n in allots if _REPEAT_NS.search(n.ns)), None):  # `repeat 1` or `repeat k` at k = 1
            self.fail(looped.span, "`allot` is inside a `repeat`; the pool is shared out once per item",
                      hint="call `allot(need)` once, after the loop")
        if split == "need" and not allots:
            assert pooled is not None
            self.fail(pooled.span, "`split = need` shares the pool at an `allot(need)` call, and the program has none",
                      hint="after a cheap probe, call `share = allot(1 - agreement(probe))`; or use `split = even`")

    def inline_body(self, strat: Strategy, frame: Frame, ctx: GuardCond | None) -> str:
        res = self.block(strat.body, frame, ctx)
        if not frame.returns:
            self.fail(strat.span, f"strategy `{strat.name}` never returns a value")
        if len(frame.returns) == 1 and self.nodes[frame.returns[0]].guard == ctx:
            return frame.returns[0]
        del res
        first = self.nodes[frame.returns[0]]
        return self.add(
            frame, "phi", first.type, strat.span, ctx,
            inputs=[Port.make(role="value", node=r) for r in frame.returns], name="result",
        )

    # ------------------------------------------------------------ nodes

    def fresh_id(self, ns: str, base: str) -> str:
        """`ns/base`, then `ns/base#2`, `#3`... for each re-binding."""
        node_id = f"{ns}/{base}"
        k = self.id_counts.get(node_id, 1)
        candidate = node_id if k == 1 else f"{node_id}#{k}"
        while candidate in self.nodes:
            k += 1
            candidate = f"{node_id}#{k}"
        self.id_counts[node_id] = k + 1
        return candidate

    def add(
        self,
        frame: Frame,
        op: str,
        vtype: str,
        span: Span,
        ctx: GuardCond | None,
        *,
        args: NodeArgs | None = None,
        inputs: list[Port] | None = None,
        var: str | None = None,
        name: str | None = None,
        static: StaticValue | None = None,
    ) -> str:
        if len(self.nodes) >= MAX_NODES:
            self.fail(span, f"the program unrolls to more than {MAX_NODES} DAG nodes",
                      hint="lower the repeat counts or the params that set them")
        base = var or name or (f"{self.owner}.{op}" if self.owner else op)
        if op in ("budget_left", "budget_pool") and self.last_effect is not None:
            # read the budget after the model call (or `allot`) written before it, not whenever the scheduler can
            inputs = [*(inputs or []), Port.make(role="after", node=self.last_effect)]
        if (op in MODEL_OPS or op == "allot") and self.reads:
            # ... and before the next one under the same guard: a later call reserved first made the read count it
            # (QA pass); a read in another block (a loop round, a branch) may be skipped, so orders nothing
            inputs = [*(inputs or []), *(Port.make(role="after", node=r) for r in self.reads
                                         if self.nodes[r].guard == ctx)]
            self.reads = []
        node_id = self.fresh_id(frame.ns, base)
        self.nodes[node_id] = DagNode.make(
            id=node_id, op=op, type=_vtype(vtype), args=args or _NO_ARGS, inputs=inputs or [],
            guard=ctx, span=span, module=frame.info.module.path, ns=frame.ns, var=var,
        )
        if op in MODEL_OPS or op == "allot":
            self.last_effect = node_id
        elif op in ("budget_left", "budget_pool"):
            self.reads.append(node_id)
        if static is not None:
            self.static[node_id] = static
        return node_id

    @contextmanager
    def owned(self, owner: str) -> Iterator[None]:
        """Name anonymous expressions built inside after `owner` (the statement they belong to)."""
        saved, self.owner = self.owner, owner
        try:
            yield
        finally:
            self.owner = saved

    def scope_copy(self, env: dict[str, str], span: Span) -> dict[str, str]:
        """A copy of a scope, counted against MAX_SCOPE_WORK."""
        self.scope_read(env, span)
        return dict(env)

    def scope_read(self, env: dict[str, str], span: Span) -> None:
        """Count reading a whole scope against MAX_SCOPE_WORK; past it, a diagnostic at `span`."""
        self.scope_work += len(env)
        if self.scope_work > MAX_SCOPE_WORK:
            self.fail(span, f"the program binds {len(env):,} names in scope here, across more branches and loop "
                            f"rounds than ttcl unrolls ({MAX_SCOPE_WORK:,} bindings copied)",
                      hint="bind fewer names, or lower the repeat counts")

    def fail(self, span: Span, message: str, hint: str | None = None) -> None:
        raise BuildError([Diagnostic(span=span, message=message, hint=hint)], self.sources)

    # ------------------------------------------------------------ statements

    def block(self, stmts: list[Stmt], frame: Frame, ctx: GuardCond | None, *, need_end: bool = False) -> BlockResult:
        """Build a statement list; with `need_end`, the result's `end` guard holds iff no exit was taken (loop bodies)."""
        escapes: list[Escape] = []
        for idx, stmt in enumerate(stmts):
            res = self.stmt(stmt, frame, ctx)
            escapes.extend(res.escapes)
            if res.always:
                return BlockResult(escapes, True, ctx)
            if not res.escapes:
                continue
            rest = stmts[idx + 1:]
            if not rest and not need_end:
                return BlockResult(escapes, False, ctx)
            if res.end != ctx:
                # `if c { ...; return } rest`: the rest runs exactly on the other arm, so it goes under
                # that arm and the bound takes the max of the two (as for `else`), not their sum.
                after = res.end
            else:
                after = GuardCond.make(node=self.exit_guard(res.escapes, frame, ctx, stmt.span), arm=False)
            if not rest:
                return BlockResult(escapes, False, after)
            before = self.scope_copy(frame.env, stmt.span)
            sub = self.block(rest, frame, after, need_end=need_end)
            self.merge(frame, ctx, before, [frame.env], stmts[-1].span)
            escapes.extend(sub.escapes)
            return BlockResult(escapes, False, sub.end)
        return BlockResult(escapes, False, ctx)

    def stmt(self, stmt: Stmt, frame: Frame, ctx: GuardCond | None) -> BlockResult:
        match stmt:
            case Assign():
                with self.owned(stmt.target):
                    node = self.expr(stmt.value, frame, ctx, var=stmt.target)
                if self.nodes[node].guard != ctx:
                    # An alias (`x = y`) or a param: bind a copy that runs here, so a phi after
                    # this branch or loop sees this binding only when this arm ran.
                    node = self.add(frame, "phi", self.nodes[node].type, stmt.span, ctx,
                                    inputs=[Port.make(role="value", node=node)], var=stmt.target)
                frame.env[stmt.target] = node
                return BlockResult([], False, ctx)
            case Return():
                with self.owned("return"):
                    value = self.expr(stmt.value, frame, ctx)
                vtype = self.nodes[value].type
                ret = self.add(frame, "return", vtype, stmt.span, ctx,
                               inputs=[Port.make(role="value", node=value)], name="return")
                frame.returns.append(ret)
                return BlockResult([Escape("return", ctx)], True, ctx)
            case Break():
                return BlockResult([Escape("break", ctx)], True, ctx)
            case If():
                return self.if_stmt(stmt, frame, ctx)
            case Repeat():
                return self.repeat(stmt, frame, ctx)
        self.fail(stmt.span, "unsupported statement")
        raise AssertionError  # pragma: no cover

    def if_stmt(self, stmt: If, frame: Frame, ctx: GuardCond | None) -> BlockResult:
        with self.owned("if"):
            cond = self.expr(stmt.cond, frame, ctx)
        guard = self.add(frame, "guard", "bool", stmt.span, ctx,
                         inputs=[Port.make(role="cond", node=cond)], name="if")
        before = self.scope_copy(frame.env, stmt.span)
        then = self.block(stmt.then, frame, GuardCond.make(node=guard, arm=True))
        env_then = frame.env
        frame.env = self.scope_copy(before, stmt.span)
        orelse = self.block(stmt.orelse, frame, GuardCond.make(node=guard, arm=False))
        env_else = frame.env
        frame.env = self.scope_copy(before, stmt.span)
        self.merge(frame, ctx, before, [env_then, env_else], stmt.span)
        always = then.always and orelse.always and bool(stmt.orelse)
        end = ctx
        if then.always and not orelse.escapes:
            end = GuardCond.make(node=guard, arm=False)  # only the else arm (or no arm) falls through
        elif orelse.always and stmt.orelse and not then.escapes:
            end = GuardCond.make(node=guard, arm=True)
        return BlockResult(then.escapes + orelse.escapes, always, end)

    def repeat(self, stmt: Repeat, frame: Frame, ctx: GuardCond | None) -> BlockResult:
        count = self.static_int(stmt.count, frame, "repeat count")
        if count > B.MAX_REPEAT:
            self.fail(stmt.count.span, f"repeat count {count} is over the limit of {B.MAX_REPEAT}")
        rounds = self.rounds * max(count, 1)  # through strategy calls too (each strategy is checked alone)
        if rounds > B.MAX_UNROLL:
            self.fail(stmt.count.span, f"nested loops unroll to {rounds:,} rounds here, counting the loops around the "
                                       f"calls that reach this strategy: over the limit of {B.MAX_UNROLL:,}",
                      hint="lower the repeat counts, or call this strategy outside the loop")
        saved_rounds, self.rounds = self.rounds, rounds
        try:
            return self._repeat(stmt, frame, ctx, count)
        finally:
            self.rounds = saved_rounds

    def _repeat(self, stmt: Repeat, frame: Frame, ctx: GuardCond | None, count: int) -> BlockResult:
        outer_ns = frame.ns
        before = self.scope_copy(frame.env, stmt.span)
        body_names = assigned_names(stmt.body)  # only these can differ from `before` after a round
        ends: list[dict[str, str]] = []
        escapes: list[Escape] = []
        it_ctx = ctx
        k = self.loop_counts[outer_ns] = self.loop_counts.get(outer_ns, 0) + 1
        loop = "repeat" if k == 1 else f"repeat#{k}"
        # `chained`: every round so far fell through exactly under a guard arm (`if c { ...; return }`), and the
        # next round runs under that arm, so the bound takes the max of an exit and the rounds after it, not
        # their sum (QA pass: `repeat 2 { if c { big; return } } tail` was bounded at big + big + tail)
        chained, breaks = stmt.until is None, False
        for i in range(max(count, 0)):
            frame.ns = f"{outer_ns}/{loop}[{i}]"
            res = self.block(stmt.body, frame, it_ctx, need_end=True)
            self.scope_read(frame.env, stmt.span)
            ends.append({k: v for k, v in frame.env.items() if k in body_names})
            escapes.extend(e for e in res.escapes if e.kind == "return")
            breaks = breaks or any(e.kind == "break" for e in res.escapes)
            chained = chained and not res.always and (not res.escapes or res.end != it_ctx)
            if res.always or i == count - 1:
                break
            if chained:
                it_ctx = res.end  # the next round runs exactly when no exit was taken in this one
                continue
            stop = self.stop_flag(stmt, res, frame, it_ctx)
            if stop is not None:
                guard = self.add(frame, "guard", "bool", stmt.span, it_ctx,
                                 inputs=[Port.make(role="cond", node=stop)], name="stop")
                it_ctx = GuardCond.make(node=guard, arm=False)
        frame.ns = outer_ns
        frame.env = self.scope_copy(before, stmt.span)
        self.merge_loop(frame, ctx, before, ends, stmt.span)
        # with returns only, what follows the loop runs exactly when the last round fell through
        end = res.end if count > 0 and chained and not breaks and escapes else ctx
        return BlockResult(escapes, False, end)

    def stop_flag(self, stmt: Repeat, res: BlockResult, frame: Frame, it_ctx: GuardCond | None) -> str | None:
        """The node whose truth ends the loop after this iteration: `until`, or an exit taken."""
        with self.owned("until"):
            until = self.expr(stmt.until, frame, res.end) if stmt.until is not None else None
        if not res.escapes:
            return until
        span = stmt.span
        true = self.add(frame, "const", "bool", span, it_ctx, args=NodeArgs.make(value=True), name="exited", static=True)
        if until is None:
            until = self.add(frame, "const", "bool", span, res.end, args=NodeArgs.make(value=False), name="continued", static=False)
        return self.add(frame, "phi", "bool", span, it_ctx,
                        inputs=[Port.make(role="value", node=true), Port.make(role="value", node=until)], name="stop_flag")

    def exit_guard(self, escapes: list[Escape], frame: Frame, ctx: GuardCond | None, span: Span) -> str:
        """A guard that is true when one of `escapes` happened; the rest of the block runs under its False arm."""
        false = self.add(frame, "const", "bool", span, ctx, args=NodeArgs.make(value=False), name="exit.no", static=False)
        markers = [self.marker(e, frame, span) for e in escapes]
        flag = self.add(frame, "phi", "bool", span, ctx,
                        inputs=[Port.make(role="value", node=n) for n in [false, *markers]], name="exit.flag")
        return self.add(frame, "guard", "bool", span, ctx, inputs=[Port.make(role="cond", node=flag)], name="exit")

    def marker(self, esc: Escape, frame: Frame, span: Span) -> str:
        if esc.marker is None:
            esc.marker = self.add(frame, "const", "bool", span, esc.ctx, args=NodeArgs.make(value=True),
                                  name=esc.kind, static=True)
        return esc.marker

    def merge(self, frame: Frame, ctx: GuardCond | None, before: dict[str, str], arms: list[dict[str, str]], span: Span) -> None:
        """Phi nodes for the variables an arm re-bound; `frame.env` ends with the merged values."""
        names = [n for n in dict.fromkeys(k for env in arms for k in env) if any(env.get(n) != before.get(n) for env in arms)]
        merged = dict(before)
        for name in names:
            changed = [env[name] for env in arms if name in env and env[name] != before.get(name)]
            all_changed = len(changed) == len(arms) and len(arms) > 1
            values = ([before[name]] if name in before and not all_changed else []) + changed
            merged[name] = self.phi(frame, ctx, name, values, span)
        frame.env = merged

    def merge_loop(self, frame: Frame, ctx: GuardCond | None, before: dict[str, str], ends: list[dict[str, str]], span: Span) -> None:
        merged = dict(before)
        for name in dict.fromkeys(k for env in ends for k in env):
            values = [before[name]] if name in before else []
            for env in ends:
                if name in env and (not values or env[name] != values[-1]):
                    values.append(env[name])
            if values and values != [before.get(name)]:
                merged[name] = self.phi(frame, ctx, name, values, span)
        frame.env = merged

    def phi(self, frame: Frame, ctx: GuardCond | None, var: str, values: list[str], span: Span) -> str:
        vtype = self.nodes[values[0]].type
        return self.add(frame, "phi", vtype, span, ctx, inputs=[Port.make(role="value", node=v) for v in values], var=var)


def build(
    checked: Any = None,
    *,
    instances: dict[str, ModuleInfo] | None = None,
    params: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, str] | None = None,
    max_input_tokens: int | None = None,
    strategy: str | None = None,
    sources: dict[str, str] | None = None,
) -> Dag:
    """The DAG of a checked program (or of explicit module `instances`, for tests and the `auto` solver).

    `params` replaces root-module param values (the `auto` solver's trial values).
    """
    if instances is None:
        instances, sources = instances_of(checked)
        strategy = strategy or checked.entry.name
    if params:
        root = instances[""]
        instances = {**instances, "": ModuleInfo(root.module, {**root.params, **params}, root.imports, "")}
    builder = Builder(instances, model_overrides=model_overrides, max_input_tokens=max_input_tokens, sources=sources)
    return builder.build(strategy)


def instances_of(checked: Any) -> tuple[dict[str, ModuleInfo], dict[str, str]]:
    """Module instances (by alias path) with their resolved params, from a CheckedProgram."""
    program = checked.program
    all_params: Mapping[str, Mapping[str, Any]] = getattr(checked, "params", {}) or {}
    out: dict[str, ModuleInfo] = {}
    for inst in program.instances():
        imports = {
            alias: (f"{inst.path}.{alias}" if inst.path else alias)
            for alias, key in inst.module.imports.items() if key is not None
        }
        params = dict(all_params.get(inst.path, {}))
        out[inst.path] = ModuleInfo(inst.module.module, params, imports, inst.path)
    return out, program.sources
