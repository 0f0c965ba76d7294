"""Typed AST for .ttc programs.

A node class is a docstring, typed fields and a source span (STYLE.md:
Jinja2's nodes.py). The parser builds these from the Lark tree and nothing
else: semantic checks are later passes. Nodes are immutable; a pass that
changes a tree returns a new one (`model_copy(update=...)`).

Equality ignores spans (`same_shape`), which is what "fmt is round-trip
safe" compares.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Span(BaseModel):
    """Where a node sits in its source file; lines and columns are 1-based, end exclusive."""

    model_config = ConfigDict(frozen=True)

    file: str = "<input>"
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    start_pos: int = 0
    end_pos: int = 0


NO_SPAN = Span()


class Node(BaseModel):
    """Base of every AST node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span = NO_SPAN

    def without_spans(self) -> dict[str, Any]:
        """The node as plain data with every span removed: what round-trip tests compare."""
        return _strip_spans(self.model_dump())


def _strip_spans(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _strip_spans(v) for k, v in data.items() if k != "span"}
    if isinstance(data, list):
        return [_strip_spans(v) for v in data]
    return data


def same_shape(a: Node, b: Node) -> bool:
    """True when two trees are equal once spans are ignored."""
    return a.without_spans() == b.without_spans()


# ---------------------------------------------------------------- expressions


class Name(Node):
    """A reference to a variable, param, model, verifier, strategy, input or import alias."""

    kind: Literal["name"] = "name"
    id: str


class Attribute(Node):
    """`value.attr`: an imported strategy (`bon.main`), or a runtime field (`budget.left.flops`)."""

    kind: Literal["attribute"] = "attribute"
    value: Expr
    attr: str


class Number(Node):
    """A numeric literal. `text` keeps the spelling (`8k`, `2e12`) so fmt preserves it."""

    kind: Literal["number"] = "number"
    value: float
    text: str
    is_int: bool


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class TemplateText(Node):
    """Literal text inside a string."""

    kind: Literal["template_text"] = "template_text"
    text: str


class TemplateField(Node):
    """`{question}` or `{c.text}` inside a string: a dotted path looked up when the string is built."""

    kind: Literal["template_field"] = "template_field"
    path: list[str]


TemplatePart = Annotated[TemplateText | TemplateField, Field(discriminator="kind")]


class String(Node):
    """A string literal; any `{field}` makes it a prompt template. `{{`/`}}` are literal braces."""

    kind: Literal["string"] = "string"
    parts: list[TemplatePart]

    @property
    def is_template(self) -> bool:
        return any(isinstance(p, TemplateField) for p in self.parts)


class ListExpr(Node):
    """`[a, b]`: used for stop strings."""

    kind: Literal["list"] = "list"
    items: list[Expr]


class Keyword(Node):
    """`name = value` inside a call's argument list."""

    name: str
    value: Expr


class Call(Node):
    """`func(args, kw = v)`. `func` is a Name (built-in or local strategy) or an Attribute (`bon.main`)."""

    kind: Literal["call"] = "call"
    func: Expr
    args: list[Expr] = []
    keywords: list[Keyword] = []

    def keyword(self, name: str) -> Expr | None:
        for kw in self.keywords:
            if kw.name == name:
                return kw.value
        return None


class BinOp(Node):
    """Arithmetic (`+ - * /`). `+` on candidates concatenates them."""

    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr


class UnaryOp(Node):
    kind: Literal["unary"] = "unary"
    op: Literal["-", "not"]
    operand: Expr


class Compare(Node):
    kind: Literal["compare"] = "compare"
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    left: Expr
    right: Expr


class BoolOp(Node):
    kind: Literal["boolop"] = "boolop"
    op: Literal["and", "or"]
    left: Expr
    right: Expr


Expr = Annotated[
    Name | Attribute | Number | Bool | String | ListExpr | Call | BinOp | UnaryOp | Compare | BoolOp,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- statements


class Assign(Node):
    """`target = value`. Variables are immutable values; re-assigning rebinds the name."""

    kind: Literal["assign"] = "assign"
    target: str
    value: Expr


class Return(Node):
    kind: Literal["return"] = "return"
    value: Expr


class If(Node):
    """`if cond { ... } else { ... }`. `else if` nests an If as the only statement of `orelse`."""

    kind: Literal["if"] = "if"
    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt] = []


class Repeat(Node):
    """`repeat count { ... } until cond`: `count` must be static (a literal or a param); unrolled in the DAG."""

    kind: Literal["repeat"] = "repeat"
    count: Expr
    body: list[Stmt]
    until: Expr | None = None


class Break(Node):
    kind: Literal["break"] = "break"


Stmt = Annotated[Assign | Return | If | Repeat | Break, Field(discriminator="kind")]


# ---------------------------------------------------------------- declarations


class TypeRef(Node):
    """A type: text, candidates, number, answer, bool; inputs may bound length: `text[<=256]`."""

    name: Literal["text", "candidates", "number", "answer", "bool"]
    max_len: int | None = None


class Input(Node):
    """A strategy input: `question: text[<=256]`."""

    name: str
    type: TypeRef


class Strategy(Node):
    """`strategy name(inputs) -> type { body }`."""

    name: str
    docstring: str | None = None
    inputs: list[Input]
    returns: TypeRef
    body: list[Stmt]


class Import(Node):
    """`import "path.ttc" as alias`; the path is relative to the importing file."""

    path: str
    alias: str


class ModelDecl(Node):
    """`model policy = "ttcl:arith-s"`, optionally with options such as `params = 7G` for a model that is not on disk."""

    name: str
    ref: str
    options: list[Keyword] = []


class VerifierDecl(Node):
    """`verifier orm = reward("ttcl:arith-orm")`; the call is one of check, reward, prm, judge."""

    name: str
    call: Call


class Auto(Node):
    """The `auto` default: the compiler picks the largest value in range that fits the budget."""

    kind: Literal["auto"] = "auto"


class ParamDecl(Node):
    """`param n: int = 16 in 1..1024`."""

    name: str
    type: Literal["int", "float", "bool", "text"]
    default: Annotated[Auto | Name | Attribute | Number | Bool | String | ListExpr | Call | BinOp | UnaryOp | Compare | BoolOp, Field(discriminator="kind")]
    low: Expr | None = None
    high: Expr | None = None


class BudgetLimit(Node):
    """`gen_tokens <= 8k`."""

    unit: Literal["calls", "prompt_tokens", "gen_tokens", "tokens", "flops", "seconds"]
    value: Number


class BudgetDecl(Node):
    """`budget per item { ... }` or `budget pooled { ... }`, with an optional `on_exhaust = shrink|stop`
    and, on a pooled budget, `split = first_come|even|need` (how the pool is shared among items)."""

    scope: Literal["item", "pooled"]
    limits: list[BudgetLimit]
    on_exhaust: Literal["shrink", "stop"] | None = None
    split: Literal["first_come", "even", "need"] | None = None


class ExtractDecl(Node):
    """`extract "####"`: how a candidate's final answer is read; a named format or a regex with one group."""

    pattern: str


class Comment(Node):
    """A `# ...` comment, kept so that fmt never drops it."""

    text: str


class Module(Node):
    """One .ttc file."""

    path: str = "<input>"
    version: int = 1
    docstring: str | None = None
    imports: list[Import] = []
    models: list[ModelDecl] = []
    verifiers: list[VerifierDecl] = []
    params: list[ParamDecl] = []
    budgets: list[BudgetDecl] = []
    extract: ExtractDecl | None = None
    strategies: list[Strategy] = []
    comments: list[Comment] = []


for _cls in (Attribute, ListExpr, Keyword, Call, BinOp, UnaryOp, Compare, BoolOp, If, Repeat, Strategy, ParamDecl, Module):
    _cls.model_rebuild()
