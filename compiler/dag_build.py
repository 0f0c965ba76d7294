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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ttcl.compiler import builtins as B
from ttcl.compiler.ast import (
    Assign,
    Attribute,
    Auto,
    BinOp,
    Bool,
    BoolOp,
    Break,
    Call,
    Compare,
    Expr,
    If,
    ListExpr,
    ModelDecl,
    Module,
    Name,
    Number,
    Repeat,
    Return,
    Span,
    Stmt,
    Strategy,
    String,
    TemplateField,
    TemplateText,
    UnaryOp,
)
from ttcl.compiler.dag import (
    Dag,
    DagNode,
    GuardCond,
    ModelRef,
    NodeArgs,
    Port,
    PromptPart,
    ValueType,
    VerifierRef,
)
from ttcl.compiler.diagnostics import Diagnostic, SemanticDiagnosticError

StaticValue = int | float | bool | str
ParamMap = Mapping[str, Any]

MAX_NODES = 200_000  # a DAG larger than this is refused with a diagnostic, not built

# The prompt `revise` builds for each candidate when the program gives none.
DEFAULT_REVISE_PROMPT: tuple[PromptPart, ...] = (
    PromptPart(path=["c", "prompt"]),
    PromptPart(path=["c", "text"]),
    PromptPart(text="\n"),
)
DEFAULT_REVISE_FEEDBACK_PROMPT: tuple[PromptPart, ...] = (
    PromptPart(path=["c", "prompt"]),
    PromptPart(path=["c", "text"]),
    PromptPart(text="\nFeedback: "),
    PromptPart(path=["feedback"]),
    PromptPart(text="\n"),
)

_STAT_OPS = ("agreement", "best_score", "mean_score", "count", "entropy")


class BuildError(SemanticDiagnosticError):
    """The checked program cannot be turned into a DAG (too large, or something the checks let through)."""


@dataclass
class ModuleInfo:
    """What the builder needs about one module instance."""

    module: Module
    params: dict[str, Any]
    imports: dict[str, str]  # alias -> instance path of the imported module
    inst: str  # instance path ("" for the root, "bon", "bon.inner")


@dataclass
class Escape:
    """A break or return that may leave the current block; `ctx` is where it happened."""

    kind: str
    ctx: GuardCond | None
    marker: str | None = None


@dataclass
class Frame:
    """One inlined strategy call."""

    info: ModuleInfo
    ns: str
    env: dict[str, str] = field(default_factory=dict)
    returns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CallSite:
    """An inlined strategy call: its namespace, the callee's module instance and the call's span."""

    ns: str
    label: str
    inst: str
    module: Module
    span: Span
    imported: bool  # the callee lives in another module instance (its own budgets apply as a sub-budget)


@dataclass
class BlockResult:
    escapes: list[Escape]
    always: bool  # every path through the block exits
    end: GuardCond | None  # the guard under which the block's end is reached


class Builder:
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
        self.model_overrides = dict(model_overrides or {})
        self.max_input_tokens = max_input_tokens
        self.sources = sources or {}
        self.nodes: dict[str, DagNode] = {}
        self.static: dict[str, StaticValue] = {}
        self.call_counts: dict[tuple[str, str], int] = {}
        self.var_counts: dict[tuple[str, str], int] = {}
        self.param_nodes: dict[tuple[str, str], str] = {}
        self.calls: list[CallSite] = []

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
                args=NodeArgs(name=inp.name, max_len=max_len), var=inp.name,
            )
            frame.env[inp.name] = node
            inputs.append(node)
        output = self.inline_body(strat, frame, None)
        dag = Dag(self.nodes, output, inputs, strat.name)
        dag.calls = self.calls
        return dag

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
            inputs=[Port(role="value", node=r) for r in frame.returns], name="result",
        )

    # ------------------------------------------------------------ nodes

    def fresh_id(self, ns: str, base: str) -> str:
        node_id = f"{ns}/{base}"
        if node_id not in self.nodes:
            return node_id
        k = 2
        while f"{node_id}#{k}" in self.nodes:
            k += 1
        return f"{node_id}#{k}"

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
        base = var or name or f"{op}@{span.line}:{span.column}"
        node_id = self.fresh_id(frame.ns, base)
        self.nodes[node_id] = DagNode(
            id=node_id, op=op, type=_vtype(vtype), args=args or NodeArgs(), inputs=inputs or [],
            guard=ctx, span=span, module=frame.info.module.path, ns=frame.ns, var=var,
        )
        if static is not None:
            self.static[node_id] = static
        return node_id

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
            guard = self.exit_guard(res.escapes, frame, ctx, stmt.span)
            if not rest:
                return BlockResult(escapes, False, GuardCond(node=guard, arm=False))
            before = dict(frame.env)
            sub = self.block(rest, frame, GuardCond(node=guard, arm=False), need_end=need_end)
            self.merge(frame, ctx, before, [frame.env], stmts[-1].span)
            escapes.extend(sub.escapes)
            return BlockResult(escapes, False, sub.end)
        return BlockResult(escapes, False, ctx)

    def stmt(self, stmt: Stmt, frame: Frame, ctx: GuardCond | None) -> BlockResult:
        match stmt:
            case Assign():
                frame.env[stmt.target] = self.expr(stmt.value, frame, ctx, var=stmt.target)
                return BlockResult([], False, ctx)
            case Return():
                value = self.expr(stmt.value, frame, ctx)
                vtype = self.nodes[value].type
                ret = self.add(frame, "return", vtype, stmt.span, ctx,
                               inputs=[Port(role="value", node=value)], name=f"return@{stmt.span.line}")
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
        cond = self.expr(stmt.cond, frame, ctx)
        guard = self.add(frame, "guard", "bool", stmt.span, ctx,
                         inputs=[Port(role="cond", node=cond)], name=f"if@{stmt.span.line}")
        before = dict(frame.env)
        then = self.block(stmt.then, frame, GuardCond(node=guard, arm=True))
        env_then = frame.env
        frame.env = dict(before)
        orelse = self.block(stmt.orelse, frame, GuardCond(node=guard, arm=False))
        env_else = frame.env
        frame.env = dict(before)
        self.merge(frame, ctx, before, [env_then, env_else], stmt.span)
        always = then.always and orelse.always and bool(stmt.orelse)
        return BlockResult(then.escapes + orelse.escapes, always, ctx)

    def repeat(self, stmt: Repeat, frame: Frame, ctx: GuardCond | None) -> BlockResult:
        count = self.static_int(stmt.count, frame, "repeat count")
        if count > B.MAX_REPEAT:
            self.fail(stmt.count.span, f"repeat count {count} is over the limit of {B.MAX_REPEAT}")
        outer_ns = frame.ns
        before = dict(frame.env)
        ends: list[dict[str, str]] = []
        escapes: list[Escape] = []
        it_ctx = ctx
        for i in range(max(count, 0)):
            frame.ns = f"{outer_ns}/repeat@{stmt.span.line}[{i}]"
            res = self.block(stmt.body, frame, it_ctx, need_end=True)
            ends.append(dict(frame.env))
            escapes.extend(e for e in res.escapes if e.kind == "return")
            if res.always or i == count - 1:
                break
            stop = self.stop_flag(stmt, res, frame, it_ctx)
            if stop is not None:
                guard = self.add(frame, "guard", "bool", stmt.span, it_ctx,
                                 inputs=[Port(role="cond", node=stop)], name="stop")
                it_ctx = GuardCond(node=guard, arm=False)
        frame.ns = outer_ns
        frame.env = dict(before)
        self.merge_loop(frame, ctx, before, ends, stmt.span)
        return BlockResult(escapes, False, ctx)

    def stop_flag(self, stmt: Repeat, res: BlockResult, frame: Frame, it_ctx: GuardCond | None) -> str | None:
        """The node whose truth ends the loop after this iteration: `until`, or an exit taken."""
        until = self.expr(stmt.until, frame, res.end) if stmt.until is not None else None
        if not res.escapes:
            return until
        span = stmt.span
        true = self.add(frame, "const", "bool", span, it_ctx, args=NodeArgs(value=True), name="exited", static=True)
        if until is None:
            until = self.add(frame, "const", "bool", span, res.end, args=NodeArgs(value=False), name="continued", static=False)
        return self.add(frame, "phi", "bool", span, it_ctx,
                        inputs=[Port(role="value", node=true), Port(role="value", node=until)], name="stop_flag")

    def exit_guard(self, escapes: list[Escape], frame: Frame, ctx: GuardCond | None, span: Span) -> str:
        """A guard that is true when one of `escapes` happened; the rest of the block runs under its False arm."""
        false = self.add(frame, "const", "bool", span, ctx, args=NodeArgs(value=False), name=f"exit@{span.line}.no", static=False)
        markers = [self.marker(e, frame, span) for e in escapes]
        flag = self.add(frame, "phi", "bool", span, ctx,
                        inputs=[Port(role="value", node=n) for n in [false, *markers]], name=f"exit@{span.line}.flag")
        return self.add(frame, "guard", "bool", span, ctx, inputs=[Port(role="cond", node=flag)], name=f"exit@{span.line}")

    def marker(self, esc: Escape, frame: Frame, span: Span) -> str:
        if esc.marker is None:
            esc.marker = self.add(frame, "const", "bool", span, esc.ctx, args=NodeArgs(value=True),
                                  name=f"{esc.kind}@{span.line}", static=True)
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
        return self.add(frame, "phi", vtype, span, ctx, inputs=[Port(role="value", node=v) for v in values], var=var)

    # ------------------------------------------------------------ expressions

    def expr(self, expr: Expr, frame: Frame, ctx: GuardCond | None, *, var: str | None = None) -> str:
        static = self.try_static(expr, frame)
        if static is not None and not isinstance(expr, Name | String):
            vtype = "bool" if isinstance(static, bool) else "text" if isinstance(static, str) else "number"
            return self.add(frame, "const", vtype, expr.span, ctx, args=NodeArgs(value=static), var=var, static=static)
        match expr:
            case Name():
                return self.name(expr, frame, ctx, var)
            case String():
                return self.template(expr, frame, ctx, var)
            case Call():
                return self.call(expr, frame, ctx, var)
            case Attribute():
                return self.attribute(expr, frame, ctx, var)
            case BinOp():
                return self.binop(expr, frame, ctx, var)
            case UnaryOp():
                operand = self.expr(expr.operand, frame, ctx)
                op, vtype, symbol = ("bool", "bool", "not") if expr.op == "not" else ("arith", "number", "neg")
                return self.add(frame, op, vtype, expr.span, ctx, args=NodeArgs(symbol=symbol),
                                inputs=[Port(role="operand", node=operand)], var=var)
            case Compare() | BoolOp():
                left = self.expr(expr.left, frame, ctx)
                right = self.expr(expr.right, frame, ctx)
                op = "compare" if isinstance(expr, Compare) else "bool"
                return self.add(frame, op, "bool", expr.span, ctx, args=NodeArgs(symbol=expr.op),
                                inputs=[Port(role="left", node=left), Port(role="right", node=right)], var=var)
        self.fail(expr.span, "this expression has no value at run time")
        raise AssertionError  # pragma: no cover

    def name(self, expr: Name, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        if expr.id in frame.env:
            return frame.env[expr.id]
        params = frame.info.params
        cached = self.param_nodes.get((frame.ns, expr.id))
        if cached is not None and var is None:
            return cached
        if expr.id in params:
            value = params[expr.id]
            if isinstance(value, Auto):
                self.fail(expr.span, f"param `{expr.id}` is `auto` and has no value yet")
            vtype = "bool" if isinstance(value, bool) else "text" if isinstance(value, str) else "number"
            node = self.add(frame, "param", vtype, expr.span, None, args=NodeArgs(name=expr.id, value=value),
                            var=var, name=None if var else f"param:{expr.id}", static=value)
            if var is None:
                self.param_nodes[(frame.ns, expr.id)] = node
            return node
        self.fail(expr.span, f"unknown name `{expr.id}`")
        raise AssertionError  # pragma: no cover

    def attribute(self, expr: Attribute, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        inner = expr.value
        if isinstance(inner, Attribute) and inner.attr == B.BUDGET_LEFT and isinstance(inner.value, Name) and inner.value.id == B.BUDGET_NAME:
            if expr.attr not in B.BUDGET_LEFT_UNITS:
                self.fail(expr.span, f"no budget unit `{expr.attr}`")
            return self.add(frame, "budget_left", "number", expr.span, ctx, args=NodeArgs(name=expr.attr), var=var)
        self.fail(expr.span, "this attribute has no value at run time")
        raise AssertionError  # pragma: no cover

    def binop(self, expr: BinOp, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        left = self.expr(expr.left, frame, ctx)
        right = self.expr(expr.right, frame, ctx)
        ltype, rtype = self.nodes[left].type, self.nodes[right].type
        ports = [Port(role="left", node=left), Port(role="right", node=right)]
        if expr.op == "+" and ltype == "candidates" and rtype == "candidates":
            return self.add(frame, "concat", "candidates", expr.span, ctx, inputs=ports, var=var)
        if expr.op == "+" and ltype in ("text", "answer") and rtype in ("text", "answer"):
            parts = [PromptPart(path=["left"], source=left), PromptPart(path=["right"], source=right)]
            return self.add(frame, "template", "text", expr.span, ctx, args=NodeArgs(prompt=parts),
                            inputs=[Port(role="prompt", node=left), Port(role="prompt", node=right)], var=var)
        return self.add(frame, "arith", "number", expr.span, ctx, args=NodeArgs(symbol=expr.op), inputs=ports, var=var)

    def template(self, expr: String, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        parts = self.prompt_parts(expr, frame, ctx, per_candidate=False)
        if all(p.text is not None for p in parts):
            text = "".join(p.text or "" for p in parts)
            return self.add(frame, "const", "text", expr.span, ctx, args=NodeArgs(value=text), var=var, static=text)
        return self.add(frame, "template", "text", expr.span, ctx, args=NodeArgs(prompt=parts),
                        inputs=_source_ports(parts), var=var)

    def prompt_parts(self, expr: Expr, frame: Frame, ctx: GuardCond | None, *, per_candidate: bool) -> list[PromptPart]:
        """A prompt argument as template parts: literal text, fields reading nodes, per-candidate fields."""
        if not isinstance(expr, String):
            node = self.expr(expr, frame, ctx)
            value = self.static.get(node)
            if isinstance(value, str):
                return [PromptPart(text=value)]
            return [PromptPart(path=[_name_of(expr)], source=node)]
        parts: list[PromptPart] = []
        for part in expr.parts:
            if isinstance(part, TemplateText):
                _append_text(parts, part.text)
                continue
            assert isinstance(part, TemplateField)
            head = part.path[0]
            if per_candidate and head in ("c", "feedback") and (head == "feedback" or head not in frame.env):
                parts.append(PromptPart(path=list(part.path)))
            elif per_candidate and head == "question" and head not in frame.env:
                parts.append(PromptPart(path=list(part.path)))
            elif head in frame.env:
                parts.append(PromptPart(path=list(part.path), source=frame.env[head]))
            elif head in frame.info.params:
                value = frame.info.params[head]
                if isinstance(value, Auto):
                    self.fail(part.span, f"param `{head}` is `auto` and has no value yet")
                _append_text(parts, _format_static(value))
            else:
                self.fail(part.span, f"unknown name `{head}` in template")
        return parts

    # ------------------------------------------------------------ calls

    def call(self, expr: Call, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        func = expr.func
        if isinstance(func, Name) and func.id in B.BUILTINS and func.id not in _local_strategies(frame.info.module):
            return self.builtin(B.BUILTINS[func.id], expr, frame, ctx, var)
        if isinstance(func, Name):
            strat = _find_strategy(frame.info.module, func.id)
            if strat is None:
                self.fail(func.span, f"unknown function `{func.id}`")
            assert strat is not None
            return self.inline(strat, frame.info, func.id, expr, frame, ctx, var)
        if isinstance(func, Attribute) and isinstance(func.value, Name):
            inst = frame.info.imports.get(func.value.id)
            callee = self.instances.get(inst) if inst is not None else None
            strat = _find_strategy(callee.module, func.attr) if callee else None
            if callee is None or strat is None:
                self.fail(func.span, f"unknown strategy `{func.value.id}.{func.attr}`")
            assert callee is not None and strat is not None
            return self.inline(strat, callee, f"{func.value.id}.{func.attr}", expr, frame, ctx, var)
        self.fail(expr.span, "this is not a callable")
        raise AssertionError  # pragma: no cover

    def inline(self, strat: Strategy, info: ModuleInfo, label: str, call: Call, frame: Frame,
               ctx: GuardCond | None, var: str | None) -> str:
        args = [self.expr(a, frame, ctx) for a in call.args]
        params = dict(info.params)
        for kw in call.keywords:
            params[kw.name] = self.static_value(kw.value, frame, f"`{kw.name}`")
        key = (frame.ns, label)
        self.call_counts[key] = self.call_counts.get(key, 0) + 1
        if self.call_counts[key] > 10_000 or frame.ns.count("/") > 64:
            self.fail(call.span, f"calls to `{label}` nest too deeply")
        sub = Frame(ModuleInfo(info.module, params, info.imports, info.inst), f"{frame.ns}/{label}#{self.call_counts[key]}")
        self.calls.append(CallSite(sub.ns, label, info.inst, info.module, call.span, info.inst != frame.info.inst))
        for inp, node in zip(strat.inputs, args, strict=False):
            sub.env[inp.name] = node
        return self.inline_body(strat, sub, ctx)

    def builtin(self, sig: B.BuiltinSig, call: Call, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        bound = _bind(sig, call)
        op = sig.name
        if op in _STAT_OPS:
            cands = self.expr(bound["c"], frame, ctx)
            return self.add(frame, op, "number", call.span, ctx, inputs=[Port(role="cands", node=cands)], var=var)
        ports: list[Port] = []
        values: dict[str, Any] = {}
        if op == "sample":
            parts = self.prompt_parts(bound["prompt"], frame, ctx, per_candidate=False)
            values["prompt"] = parts
            ports.extend(_source_ports(parts))
        if "cands" in bound and op != "revise":
            ports.append(Port(role="cands", node=self.expr(bound["cands"], frame, ctx)))
        if op == "revise":
            ports.append(Port(role="cands", node=self.expr(bound["cands"], frame, ctx)))
            self.revise_args(bound, frame, ctx, values, ports)
        if "model" in bound:
            values["model"] = self.model_ref(bound["model"], frame)
        if "verifier" in bound:
            values["verifier"] = self.verifier_ref(bound["verifier"], frame, ctx)
        for pname in ("n", "max_tokens", "k", "rounds"):
            if sig.param(pname) is not None:
                values[pname] = self.static_int(bound[pname], frame, f"`{pname}`") if pname in bound else sig.param(pname).default
        for pname in ("temperature", "top_p"):
            if sig.param(pname) is not None:
                self.number_arg(pname, bound.get(pname), sig.param(pname).default, frame, ctx, values, ports)
        if sig.param("stop") is not None:
            values["stop"] = self.stop_arg(bound.get("stop"), sig.param("stop").default, frame)
        if "seed" in bound:
            values["seed"] = self.static_int(bound["seed"], frame, "`seed`")
        if "weight" in bound:
            values["weight"] = _name_of(bound["weight"])
        if "pred" in bound:
            values["predicate"] = bound["pred"]
        return self.add(frame, op, sig.returns.value, call.span, ctx, args=NodeArgs(**values), inputs=ports, var=var)

    def revise_args(self, bound: dict[str, Expr], frame: Frame, ctx: GuardCond | None,
                    values: dict[str, Any], ports: list[Port]) -> None:
        feedback = bound.get("feedback")
        if feedback is not None:
            if isinstance(feedback, Name) and _find_verifier(frame.info.module, feedback.id) is not None:
                values["feedback"] = self.verifier_ref(feedback, frame, ctx)
            else:
                self.fail(feedback.span, "revise feedback must name a verifier")
        if "prompt" in bound:
            parts = self.prompt_parts(bound["prompt"], frame, ctx, per_candidate=True)
        else:
            parts = list(DEFAULT_REVISE_FEEDBACK_PROMPT if feedback is not None else DEFAULT_REVISE_PROMPT)
        values["prompt"] = parts
        ports.extend(_source_ports(parts))

    def number_arg(self, pname: str, expr: Expr | None, default: Any, frame: Frame, ctx: GuardCond | None,
                   values: dict[str, Any], ports: list[Port]) -> None:
        if expr is None:
            values[pname] = float(default)
            return
        value = self.try_static(expr, frame)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[pname] = float(value)
        else:
            ports.append(Port(role=pname, node=self.expr(expr, frame, ctx)))

    def stop_arg(self, expr: Expr | None, default: Any, frame: Frame) -> list[str] | None:
        if expr is None:
            return [default] if isinstance(default, str) else None
        items = expr.items if isinstance(expr, ListExpr) else [expr]
        out = []
        for item in items:
            value = self.try_static(item, frame)
            if not isinstance(value, str):
                self.fail(item.span, "a stop string must be a plain string")
            out.append(str(value))
        return out

    # ------------------------------------------------------------ declarations

    def model_ref(self, expr: Expr, frame: Frame) -> ModelRef:
        module = frame.info.module
        if isinstance(expr, Name):
            decl = _find_model(module, expr.id)
            if decl is None:
                self.fail(expr.span, f"unknown model `{expr.id}`")
            assert decl is not None
            return self.decl_ref(decl, frame.info)
        if isinstance(expr, String) and not expr.is_template:
            ref = "".join(p.text for p in expr.parts if isinstance(p, TemplateText))
            return ModelRef(name=ref, ref=self.model_overrides.get(ref, ref), module=module.path, span=expr.span)
        self.fail(expr.span, "expected a model name or a model reference string")
        raise AssertionError  # pragma: no cover

    def decl_ref(self, decl: ModelDecl, info: ModuleInfo) -> ModelRef:
        qualified = f"{info.inst}.{decl.name}" if info.inst else decl.name
        ref = self.model_overrides.get(qualified, decl.ref)
        options: dict[str, float] = {}
        for kw in decl.options:
            value = _literal_number(kw.value)
            if value is None:
                self.fail(kw.value.span, f"model option `{kw.name}` must be a number")
            options[kw.name] = float(value)  # type: ignore[arg-type]
        if qualified in self.model_overrides:
            options = {}
        return ModelRef(name=decl.name, ref=ref, module=info.module.path, options=options, span=decl.span)

    def verifier_ref(self, expr: Expr, frame: Frame, ctx: GuardCond | None) -> VerifierRef:
        name = _name_of(expr)
        decl = _find_verifier(frame.info.module, name)
        if decl is None:
            self.fail(expr.span, f"unknown verifier `{name}`")
        assert decl is not None
        kind = _name_of(decl.call.func)
        sig = B.VERIFIERS.get(kind)
        if sig is None:
            self.fail(decl.call.span, f"unknown verifier kind `{kind}`")
        assert sig is not None
        bound = _bind(sig, decl.call)
        fields: dict[str, Any] = {}
        if kind == "check":
            fields["checker"] = str(self.try_static(bound["name"], frame))
        else:
            fields["model"] = self.model_ref(bound["model"], frame)
        if kind == "prm":
            fields["agg"] = str(self.try_static(bound["agg"], frame)) if "agg" in bound else "last"
        if kind == "judge":
            fields["rubric"] = self.prompt_parts(bound["rubric"], frame, ctx, per_candidate=True)
        return VerifierRef(name=name, kind=kind, span=decl.span, **fields)

    # ------------------------------------------------------------ static values

    def try_static(self, expr: Expr, frame: Frame) -> StaticValue | None:
        try:
            return _static(expr, frame, self.static)
        except (_NotStatic, OverflowError, ZeroDivisionError):
            return None

    def static_value(self, expr: Expr, frame: Frame, what: str) -> StaticValue:
        try:
            return _static(expr, frame, self.static)
        except (_NotStatic, OverflowError, ZeroDivisionError) as e:
            self.fail(expr.span, f"{what} must be static (a literal, a param, or arithmetic on those): {e}")
            raise AssertionError from e  # pragma: no cover

    def static_int(self, expr: Expr, frame: Frame, what: str) -> int:
        value = self.static_value(expr, frame, what)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            self.fail(expr.span, f"{what} must be a whole number, got {value!r}")
        return int(value)


# ---------------------------------------------------------------- helpers


class _NotStatic(Exception):
    pass


def _static(expr: Expr, frame: Frame, known: Mapping[str, StaticValue]) -> StaticValue:
    """Literals, params, variables bound to those, and arithmetic/comparison on them."""
    match expr:
        case Number():
            return int(expr.value) if expr.is_int else float(expr.value)
        case Bool():
            return expr.value
        case String() if not expr.is_template:
            return "".join(p.text for p in expr.parts if isinstance(p, TemplateText))
        case Name():
            if expr.id in frame.env:
                node = frame.env[expr.id]
                if node in known:
                    return known[node]
                raise _NotStatic(f"`{expr.id}` is a run-time value")
            if expr.id in frame.info.params:
                value = frame.info.params[expr.id]
                if isinstance(value, Auto):
                    raise _NotStatic(f"param `{expr.id}` is `auto`")
                return value
            raise _NotStatic(f"unknown name `{expr.id}`")
        case UnaryOp(op="-"):
            v = _static(expr.operand, frame, known)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _NotStatic("not a number")
            return -v
        case UnaryOp(op="not"):
            v = _static(expr.operand, frame, known)
            if not isinstance(v, bool):
                raise _NotStatic("not a bool")
            return not v
        case BinOp():
            return _arith(expr.op, _static(expr.left, frame, known), _static(expr.right, frame, known))
        case Compare():
            return _compare(expr.op, _static(expr.left, frame, known), _static(expr.right, frame, known))
        case BoolOp():
            a, b = _static(expr.left, frame, known), _static(expr.right, frame, known)
            if not isinstance(a, bool) or not isinstance(b, bool):
                raise _NotStatic("not a bool")
            return (a and b) if expr.op == "and" else (a or b)
    raise _NotStatic("not a literal or a param")


def _compare(op: str, a: StaticValue, b: StaticValue) -> bool:
    if isinstance(a, str) != isinstance(b, str) or isinstance(a, bool) != isinstance(b, bool):
        raise _NotStatic("comparison of different types")
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if isinstance(a, bool | str):
        raise _NotStatic("ordering on a non-number")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]


def _arith(op: str, a: StaticValue, b: StaticValue) -> int | float:
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        raise _NotStatic("arithmetic on a non-number")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise _NotStatic("division by zero")
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


def _format_static(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _append_text(parts: list[PromptPart], text: str) -> None:
    if not text:
        return
    if parts and parts[-1].text is not None:
        parts[-1] = PromptPart(text=(parts[-1].text or "") + text)
    else:
        parts.append(PromptPart(text=text))


def _source_ports(parts: list[PromptPart]) -> list[Port]:
    seen = dict.fromkeys(p.source for p in parts if p.source is not None)
    return [Port(role="prompt", node=s) for s in seen]


def _name_of(expr: Expr) -> str:
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Attribute):
        return f"{_name_of(expr.value)}.{expr.attr}"
    return "value"


def _literal_number(expr: Expr) -> float | None:
    if isinstance(expr, Number):
        return expr.value
    return None


def _vtype(name: str) -> ValueType:
    return name if name in ("text", "candidates", "number", "answer", "bool") else "text"  # type: ignore[return-value]


def _bind(sig: B.BuiltinSig | B.VerifierSig, call: Call) -> dict[str, Expr]:
    """Positional and keyword arguments by parameter name (defaults are applied by the caller)."""
    names = sig.param_names
    bound: dict[str, Expr] = dict(zip(names, call.args, strict=False))
    for kw in call.keywords:
        bound[kw.name] = kw.value
    return bound


def _entry_strategy(module: Module, name: str | None) -> Strategy:
    wanted = name or "main"
    for strat in module.strategies:
        if strat.name == wanted:
            return strat
    if name is None and module.strategies:
        return module.strategies[-1]
    span = Span(file=module.path, line=1, column=1, end_line=1, end_column=1)
    raise BuildError([Diagnostic(span=span, message=f"no strategy `{wanted}` to run",
                                 hint="define `strategy main(question: text[<=256]) -> answer { ... }`")])


def _find_strategy(module: Module, name: str) -> Strategy | None:
    return next((s for s in module.strategies if s.name == name), None)


def _local_strategies(module: Module) -> set[str]:
    return {s.name for s in module.strategies}


def _find_model(module: Module, name: str) -> ModelDecl | None:
    return next((m for m in module.models if m.name == name), None)


def _find_verifier(module: Module, name: str) -> Any:
    return next((v for v in module.verifiers if v.name == name), None)


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
