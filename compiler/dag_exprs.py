"""Expressions, built-in calls, declarations and static values for the DAG builder (`dag_build.py`).

Kept apart from the statement walk so each half reads at a sitting. The
mixin relies on the builder's `add`, `fail`, `inline_body` and its maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ttcl.compiler import builtins as B
from ttcl.compiler.ast import (
    Attribute,
    Auto,
    BinOp,
    Bool,
    BoolOp,
    Call,
    Compare,
    Expr,
    ListExpr,
    ModelDecl,
    Module,
    Name,
    Number,
    Span,
    Strategy,
    String,
    TemplateField,
    TemplateText,
    UnaryOp,
)
from ttcl.compiler.dag import (
    DagNode,
    GuardCond,
    ModelRef,
    NodeArgs,
    Port,
    PromptPart,
    VerifierRef,
)
from ttcl.compiler.dag_static import NotStatic, StaticValue, format_static, static_eval
from ttcl.compiler.dag_util import (
    CallParams,
    _append_text,
    _bind,
    _find_model,
    _find_strategy,
    _find_verifier,
    _literal_number,
    _local_strategies,
    _name_of,
    _sig_params,
    _source_ports,
)
from ttcl.compiler.diagnostics import Diagnostic, SemanticDiagnosticError
from ttcl.compiler.model_kinds import generator_problem, verifier_problem
from ttcl.compiler.models import MetaTemplateError, meta_template_parts, revise_template

ParamMap = Mapping[str, Any]


# The prompt `revise` builds for each candidate when the program gives none.
DEFAULT_REVISE_PROMPT: tuple[PromptPart, ...] = (
    PromptPart(path=["c", "prompt"]),
    PromptPart(path=["c", "text"]),
    PromptPart.make(text="\n"),
)
DEFAULT_REVISE_FEEDBACK_PROMPT: tuple[PromptPart, ...] = (
    PromptPart(path=["c", "prompt"]),
    PromptPart(path=["c", "text"]),
    PromptPart.make(text="\nFeedback: "),
    PromptPart(path=["feedback"]),
    PromptPart.make(text="\n"),
)

_STAT_OPS = ("agreement", "best_score", "mean_score", "count", "entropy")


class BuildError(SemanticDiagnosticError):
    """The checked program cannot be turned into a DAG (too large, or something the checks let through)."""



@dataclass
class ModuleInfo:
    """What the builder needs about one module instance."""

    module: Module
    params: Mapping[str, Any]
    imports: dict[str, str]  # alias -> instance path of the imported module
    inst: str  # instance path ("" for the root, "bon", "bon.inner")



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
    owner: str = ""  # the statement the call is in: its target variable, `return`, `if`, `until` ("" elsewhere)



class ExprMixin:
    """Builds nodes for expressions and calls; mixed into `dag_build.Builder`."""

    nodes: dict[str, DagNode]
    static: dict[str, StaticValue]
    instances: dict[str, ModuleInfo]
    model_overrides: dict[str, str]
    param_nodes: dict[tuple[str, str], str]
    call_counts: dict[tuple[str, str], int]
    calls: list[CallSite]
    refs: dict[tuple[str, str, str], object]

    def add(self, frame: Frame, op: str, vtype: str, span: Span, ctx: GuardCond | None, **kw: Any) -> str:
        raise NotImplementedError

    def fail(self, span: Span, message: str, hint: str | None = None) -> None:
        raise NotImplementedError

    def inline_body(self, strat: Strategy, frame: Frame, ctx: GuardCond | None) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------ expressions

    def expr(self, expr: Expr, frame: Frame, ctx: GuardCond | None, *, var: str | None = None) -> str:
        foldable = isinstance(expr, Number | Bool | UnaryOp | BinOp | Compare | BoolOp)
        static = self.try_static(expr, frame) if foldable else None
        if static is not None:
            vtype = "bool" if isinstance(static, bool) else "text" if isinstance(static, str) else "number"
            return self.add(frame, "const", vtype, expr.span, ctx, args=NodeArgs.make(value=static), var=var, static=static)
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
                return self.add(frame, op, vtype, expr.span, ctx, args=NodeArgs.make(symbol=symbol),
                                inputs=[Port.make(role="operand", node=operand)], var=var)
            case Compare() | BoolOp():
                left = self.expr(expr.left, frame, ctx)
                right = self.expr(expr.right, frame, ctx)
                op = "compare" if isinstance(expr, Compare) else "bool"
                return self.add(frame, op, "bool", expr.span, ctx, args=NodeArgs.make(symbol=expr.op),
                                inputs=[Port.make(role="left", node=left), Port.make(role="right", node=right)], var=var)
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
            node = self.add(frame, "param", vtype, expr.span, None, args=NodeArgs.make(name=expr.id, value=value),
                            var=var, name=None if var else f"param:{expr.id}", static=value)
            if var is None:
                self.param_nodes[(frame.ns, expr.id)] = node
            return node
        self.fail(expr.span, f"unknown name `{expr.id}`")
        raise AssertionError  # pragma: no cover

    def attribute(self, expr: Attribute, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        inner = expr.value
        if isinstance(inner, Attribute) and inner.attr in (B.BUDGET_LEFT, B.BUDGET_POOL) and isinstance(inner.value, Name) and inner.value.id == B.BUDGET_NAME:
            if expr.attr not in B.BUDGET_LEFT_UNITS:
                self.fail(expr.span, f"no budget unit `{expr.attr}`")
            op = "budget_left" if inner.attr == B.BUDGET_LEFT else "budget_pool"
            return self.add(frame, op, "number", expr.span, ctx, args=NodeArgs.make(name=expr.attr), var=var)
        self.fail(expr.span, "this attribute has no value at run time")
        raise AssertionError  # pragma: no cover

    def binop(self, expr: BinOp, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        left = self.expr(expr.left, frame, ctx)
        right = self.expr(expr.right, frame, ctx)
        ltype, rtype = self.nodes[left].type, self.nodes[right].type
        ports = [Port.make(role="left", node=left), Port.make(role="right", node=right)]
        if expr.op == "+" and ltype == "candidates" and rtype == "candidates":
            return self.add(frame, "concat", "candidates", expr.span, ctx, inputs=ports, var=var)
        if expr.op == "+" and ltype in ("text", "answer") and rtype in ("text", "answer"):
            parts = [PromptPart.make(path=["left"], source=left), PromptPart.make(path=["right"], source=right)]
            return self.add(frame, "template", "text", expr.span, ctx, args=NodeArgs.make(prompt=parts),
                            inputs=[Port.make(role="prompt", node=left), Port.make(role="prompt", node=right)], var=var)
        # outside any branch every item would fail here (QA pass: check said fits); a branch may never be taken
        if expr.op == "/" and ctx is None and self.static.get(right) == 0:
            self.fail(expr.right.span, "division by zero: this divisor is always 0")
        return self.add(frame, "arith", "number", expr.span, ctx, args=NodeArgs.make(symbol=expr.op), inputs=ports, var=var)

    def template(self, expr: String, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        parts = self.prompt_parts(expr, frame, ctx, per_candidate=False)
        if all(p.text is not None for p in parts):
            text = "".join(p.text or "" for p in parts)
            return self.add(frame, "const", "text", expr.span, ctx, args=NodeArgs.make(value=text), var=var, static=text)
        return self.add(frame, "template", "text", expr.span, ctx, args=NodeArgs.make(prompt=parts),
                        inputs=_source_ports(parts), var=var)

    def prompt_parts(self, expr: Expr, frame: Frame, ctx: GuardCond | None, *, per_candidate: bool) -> list[PromptPart]:
        """A prompt argument as template parts: literal text, fields reading nodes, per-candidate fields."""
        if not isinstance(expr, String):
            node = self.expr(expr, frame, ctx)
            value = self.static.get(node)
            if isinstance(value, str):
                return [PromptPart.make(text=value)]
            return [PromptPart.make(path=[_name_of(expr)], source=node)]
        parts: list[PromptPart] = []
        for part in expr.parts:
            if isinstance(part, TemplateText):
                _append_text(parts, part.text)
                continue
            assert isinstance(part, TemplateField)
            head = part.path[0]
            if per_candidate and head in ("c", "feedback") and (head == "feedback" or head not in frame.env):
                parts.append(PromptPart.make(path=list(part.path)))
            elif per_candidate and head == "question" and head not in frame.env:
                parts.append(PromptPart.make(path=list(part.path)))
            elif head in frame.env:
                parts.append(PromptPart.make(path=list(part.path), source=frame.env[head]))
            elif head in frame.info.params:
                value = frame.info.params[head]
                if isinstance(value, Auto):
                    self.fail(part.span, f"param `{head}` is `auto` and has no value yet")
                _append_text(parts, format_static(value))
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
        given = {kw.name: self.static_value(kw.value, frame, f"`{kw.name}`") for kw in call.keywords}
        params = CallParams(info.params, given, self.params_read.setdefault(info.inst, set()))
        key = (frame.ns, label)
        self.call_counts[key] = self.call_counts.get(key, 0) + 1
        if self.call_counts[key] > 10_000 or frame.ns.count("/") > 64:
            self.fail(call.span, f"calls to `{label}` nest too deeply")
        sub = Frame(ModuleInfo(info.module, params, info.imports, info.inst), f"{frame.ns}/{label}#{self.call_counts[key]}")
        self.calls.append(CallSite(sub.ns, label, info.inst, info.module, call.span, info.inst != frame.info.inst,
                                   self.owner))
        for inp, node in zip(strat.inputs, args, strict=False):
            sub.env[inp.name] = node
        return self.inline_body(strat, sub, ctx)

    def builtin(self, sig: B.BuiltinSig, call: Call, frame: Frame, ctx: GuardCond | None, var: str | None) -> str:
        bound = _bind(sig, call)
        op = sig.name
        if op in _STAT_OPS or op == "all_finished":
            cands = self.expr(bound["c"], frame, ctx)
            return self.add(frame, op, sig.returns.value, call.span, ctx, inputs=[Port.make(role="cands", node=cands)], var=var)
        ports: list[Port] = []
        values: dict[str, Any] = {}
        if op == "sample":
            parts = self.prompt_parts(bound["prompt"], frame, ctx, per_candidate=False)
            if all(p.text is not None for p in parts) and not "".join(p.text or "" for p in parts):
                self.fail(bound["prompt"].span, "`sample` needs a prompt: this one is always empty",
                          hint="write the question into it, e.g. \"{question}\\n\"")
            values["prompt"] = parts
            ports.extend(_source_ports(parts))
        if "cands" in bound and op != "revise":
            ports.append(Port.make(role="cands", node=self.expr(bound["cands"], frame, ctx)))
        if op == "revise":
            ports.append(Port.make(role="cands", node=self.expr(bound["cands"], frame, ctx)))
            self.revise_args(bound, frame, ctx, values, ports)
        if "model" in bound:
            values["model"] = self.model_ref(bound["model"], frame)
            self._check_generator(op, bound["model"].span, values["model"])
        if "verifier" in bound:
            values["verifier"] = self.verifier_ref(bound["verifier"], frame, ctx)
        specs = _sig_params(sig)
        for pname in ("n", "max_tokens", "k", "rounds"):
            if pname in specs:
                values[pname] = self.static_int(bound[pname], frame, f"`{pname}`") if pname in bound else specs[pname].default
        for pname in ("temperature", "top_p"):
            if pname in specs:
                self.number_arg(pname, bound.get(pname), specs[pname].default, frame, ctx, values, ports)
        if "stop" in specs:
            values["stop"] = self.stop_arg(bound.get("stop"), specs["stop"].default, frame)
        if "seed" in bound:
            values["seed"] = self.static_int(bound["seed"], frame, "`seed`")
        if "weight" in bound:
            values["weight"] = _name_of(bound["weight"])
        if "pred" in bound:
            values["predicate"] = self.predicate(bound["pred"], frame, ctx, ports)
        if "need" in bound:
            ports.append(Port.make(role="need", node=self.expr(bound["need"], frame, ctx)))
        if "rollouts" in bound:
            ports.append(Port.make(role="rollouts", node=self.expr(bound["rollouts"], frame, ctx)))
        if "total" in bound:  # balance: a static count is folded, a runtime one is an input port
            total: dict[str, Any] = {}
            self.number_arg("total", bound["total"], None, frame, ctx, total, ports)
            values["value"] = total.get("total")
        return self.add(frame, op, sig.returns.value, call.span, ctx, args=NodeArgs.make(**values), inputs=ports, var=var)

    def predicate(self, expr: Expr, frame: Frame, ctx: GuardCond | None, ports: list[Port]) -> Expr:
        """A filter predicate with this call's params folded in; variables it reads become `pred:<name>` ports, and
        each call in it (`best_score(d)`) a node of its own, read as the port `pred:@K` (a name no program can
        write)."""
        def fold(node: Any) -> Any:
            if isinstance(node, Name):
                if node.id in B.PREDICATE_NAMES:
                    return node
                if node.id in frame.env:
                    port = Port.make(role=f"pred:{node.id}", node=frame.env[node.id])
                    if port not in ports:
                        ports.append(port)
                    return node
                value = frame.info.params.get(node.id)
                if isinstance(value, bool):
                    return Bool(value=value, span=node.span)
                if isinstance(value, int | float):
                    return Number(value=float(value), text=format_static(value), is_int=isinstance(value, int), span=node.span)
                if isinstance(value, str):  # this module's value, this call's keyword (QA pass: read at run time
                    # from the root program's params, so another module's text param was the root's, or unknown)
                    return String(parts=[TemplateText(text=value, span=node.span)], span=node.span)
                return node
            if isinstance(node, BinOp | Compare | BoolOp):
                return node.model_copy(update={"left": fold(node.left), "right": fold(node.right)})
            if isinstance(node, UnaryOp):
                return node.model_copy(update={"operand": fold(node.operand)})
            if isinstance(node, Call | Attribute) or isinstance(node, String) and node.is_template:  # a value per
                # item, the same for every candidate
                name = f"@{sum(p.role.startswith('pred:@') for p in ports)}"
                ports.append(Port.make(role=f"pred:{name}", node=self.expr(node, frame, ctx)))
                return Name(id=name, span=node.span)
            return node

        return fold(expr)

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
            parts = self.card_revise_prompt(self.model_ref(bound["model"], frame)) or list(
                DEFAULT_REVISE_FEEDBACK_PROMPT if feedback is not None else DEFAULT_REVISE_PROMPT)
        values["prompt"] = parts
        ports.extend(_source_ports(parts))

    def card_revise_prompt(self, model: ModelRef) -> list[PromptPart] | None:
        """The model card's `revise_template` as parts: `{question}` is the item's question, `{attempt}` the candidate's text."""
        template = revise_template(model.ref, model.base_dir)
        if template is None:
            return None
        try:
            card = meta_template_parts(template, ("question", "attempt"))
        except MetaTemplateError as e:
            self.fail(model.span, f"model `{model.name}`: ttcl_meta.json `revise_template`: {e}")
        parts: list[PromptPart] = []
        for literal, name in card:
            if name is None:
                _append_text(parts, literal)
            elif name == "attempt":
                parts.append(PromptPart.make(path=["c", "text"]))
            else:
                parts.append(PromptPart.make(path=[name]))
        return parts

    def number_arg(self, pname: str, expr: Expr | None, default: Any, frame: Frame, ctx: GuardCond | None,
                   values: dict[str, Any], ports: list[Port]) -> None:
        if expr is None:
            values[pname] = float(default)
            return
        value = self.try_static(expr, frame)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[pname] = float(value)
        else:
            ports.append(Port.make(role=pname, node=self.expr(expr, frame, ctx)))

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

    def model_ref(self, expr: Expr, frame: Frame, owner: str | None = None) -> ModelRef:
        """A model named by a declaration, or by a ref string inside a verifier `owner` (`--model owner=PATH` rebinds it)."""
        module = frame.info.module
        if isinstance(expr, Name):
            cached = self.refs.get(("model", frame.info.inst, expr.id))
            if cached is not None:
                return cached  # type: ignore[return-value]
            decl = _find_model(module, expr.id)
            if decl is None:
                self.fail(expr.span, f"unknown model `{expr.id}`")
            assert decl is not None
            return self.decl_ref(decl, frame.info)
        if isinstance(expr, String) and not expr.is_template:
            ref = "".join(p.text for p in expr.parts if isinstance(p, TemplateText))
            qualified = f"{frame.info.inst}.{owner}" if owner and frame.info.inst else owner
            bound = self.model_overrides.get(qualified or "", self.model_overrides.get(ref, ref))
            return ModelRef(name=owner or ref, ref=bound, module=module.path, span=expr.span, overridden=bound != ref)
        self.fail(expr.span, "expected a model name or a model reference string")
        raise AssertionError  # pragma: no cover

    def decl_ref(self, decl: ModelDecl, info: ModuleInfo) -> ModelRef:
        key = ("model", info.inst, decl.name)
        cached = self.refs.get(key)
        if cached is None:
            cached = self.refs[key] = self._decl_ref(decl, info)
        return cached  # type: ignore[return-value]

    def _decl_ref(self, decl: ModelDecl, info: ModuleInfo) -> ModelRef:
        qualified = f"{info.inst}.{decl.name}" if info.inst else decl.name
        ref = self.model_overrides.get(qualified, decl.ref)
        options: dict[str, float] = {}
        for kw in decl.options:
            if isinstance(kw.value, Bool):  # `chat = true`: kept as 1.0, `false` as absent
                if kw.value.value:
                    options[kw.name] = 1.0
                continue
            value = _literal_number(kw.value)
            if value is None:
                self.fail(kw.value.span, f"model option `{kw.name}` must be a number")
            options[kw.name] = float(value)  # type: ignore[arg-type]
        overridden = qualified in self.model_overrides
        if overridden:
            options = {}
        return ModelRef(name=decl.name, ref=ref, module=info.module.path, options=options, span=decl.span,
                        overridden=overridden)

    def verifier_ref(self, expr: Expr, frame: Frame, ctx: GuardCond | None) -> VerifierRef:
        key = ("verifier", frame.info.inst, _name_of(expr))
        cached = self.refs.get(key)
        if cached is None:
            cached = self._verifier_ref(expr, frame, ctx)
            self.refs[key] = cached
        return cached  # type: ignore[return-value]

    def _verifier_ref(self, expr: Expr, frame: Frame, ctx: GuardCond | None) -> VerifierRef:
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
            agg = str(self.try_static(bound["agg"], frame)) if "agg" in bound else "outcome"
            if agg != "outcome":
                fields["agg"] = agg
        else:
            fields["model"] = self.model_ref(bound["model"], frame, owner=name)
            self._check_verifier_model(decl, kind, fields["model"])
        if kind == "prm":
            fields["agg"] = str(self.try_static(bound["agg"], frame)) if "agg" in bound else "last"
        if kind == "judge":  # declared at module level, its rubric sees no strategy's variables: `{question}` is the
            # item's question and `{c}` the candidate judged, whatever the calling strategy names its own (a caller's
            # `question` or `c` rendered empty at run time; QA pass)
            # (other names are refused before this, by the checks)
            fields["rubric"] = self.prompt_parts(bound["rubric"], Frame(frame.info, frame.ns), ctx, per_candidate=True)
        return VerifierRef(name=name, kind=kind, span=decl.span, **fields)

    def _check_generator(self, op: str, span: Span, model: ModelRef) -> None:
        problem = generator_problem(op, model)
        if problem is not None:
            self.fail(span, *problem)

    def _check_verifier_model(self, decl: Any, kind: str, model: ModelRef) -> None:
        problem = verifier_problem(decl.name, kind, model)
        if problem is not None:
            self.fail(decl.call.span, *problem)

    # ------------------------------------------------------------ static values

    def try_static(self, expr: Expr, frame: Frame) -> StaticValue | None:
        try:
            return static_eval(expr, frame, self.static)
        except (NotStatic, OverflowError, ZeroDivisionError):
            return None

    def static_value(self, expr: Expr, frame: Frame, what: str) -> StaticValue:
        try:
            return static_eval(expr, frame, self.static)
        except (NotStatic, OverflowError, ZeroDivisionError) as e:
            hint = None
            autos = [n for n, v in frame.info.params.items() if isinstance(v, Auto) and f"param `{n}` is `auto`" in str(e)]
            if autos and frame.info.inst:  # only the checked program's own `auto` params are solved (QA pass: no hint)
                hint = (f"`auto` is solved for the program on the command line, not for a module it imports: "
                        f"give `{frame.info.inst}`'s `{autos[0]}` a value, e.g. `--set {frame.info.inst}.{autos[0]}=4`")
            self.fail(expr.span, f"{what} must be static (a literal, a param, or arithmetic on those): {e}", hint)
            raise AssertionError from e  # pragma: no cover

    def static_int(self, expr: Expr, frame: Frame, what: str) -> int:
        value = self.static_value(expr, frame, what)
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            self.fail(expr.span, f"{what} must be a whole number, got {value!r}")
        return int(value)


# ---------------------------------------------------------------- module lookups


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
