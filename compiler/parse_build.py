"""Reduce callbacks of the parser: one method per grammar rule, each building an AST node.

A method receives the rule's children as matched, tokens included (inlined
`_rules` are already flattened into the list), so a node's span runs from its
first token to its last. Nodes are built without re-validation
(`model_construct`-style): their inputs come straight from the grammar.
"""

from __future__ import annotations

from typing import Any

from ttcl.compiler import ast
from ttcl.compiler.diagnostics import did_you_mean
from ttcl.compiler.parse_lex import (
    MAX_DEPTH,
    MAX_ELSE_IF_ARMS,
    LexicalError,
    Tok,
    decode_string,
    number_value,
    template_parts,
    token_span,
    unescape,
)

BUDGET_UNITS = ("calls", "prompt_tokens", "gen_tokens", "tokens", "flops", "seconds")
EXHAUST_POLICIES = ("shrink", "stop")
POOL_SPLITS = ("first_come", "even", "need")
BUDGET_SETTINGS = {"on_exhaust": (EXHAUST_POLICIES, "on_exhaust policy"), "split": (POOL_SPLITS, "pool split")}
PARAM_TYPES = ("int", "float", "bool", "text")
VALUE_TYPES = ("text", "candidates", "number", "answer", "bool")

_object_setattr = object.__setattr__


def _maker(cls: type[ast.Node]) -> Any:
    """A fast constructor for trusted field values: what `model_construct` does, minus its per-field loop.

    Every instance shares one fields-set object; pydantic copies that set before
    changing it (`model_copy`), and frozen nodes never change it in place.
    """
    defaults = {
        name: f.default for name, f in cls.model_fields.items()
        if not f.is_required() and isinstance(f.default, (str, int, float, bool, type(None), ast.Span))
    }
    fields_set = set(cls.model_fields)
    new = cls.__new__

    def make(**values: Any) -> Any:
        obj = new(cls)
        _object_setattr(obj, "__dict__", {**defaults, **values} if defaults else values)
        _object_setattr(obj, "__pydantic_fields_set__", fields_set)
        _object_setattr(obj, "__pydantic_extra__", None)
        _object_setattr(obj, "__pydantic_private__", None)
        return obj

    return make


_Span = _maker(ast.Span)
_Name = _maker(ast.Name)
_Number = _maker(ast.Number)
_String = _maker(ast.String)
_Call = _maker(ast.Call)
_Keyword = _maker(ast.Keyword)
_Attribute = _maker(ast.Attribute)
_BinOp = _maker(ast.BinOp)
_Compare = _maker(ast.Compare)
_BoolOp = _maker(ast.BoolOp)
_UnaryOp = _maker(ast.UnaryOp)
_Assign = _maker(ast.Assign)


class Part:
    """An intermediate result (a block, an argument list...) that is not an AST node but has an extent."""

    __slots__ = ("value", "first", "last")

    def __init__(self, value: Any, first: Any, last: Any):
        self.value = value
        self.first = first
        self.last = last


def _start(x: Any) -> tuple[int, int, int]:
    while isinstance(x, Part):
        x = x.first
    if isinstance(x, Tok):
        return x.line, x.column, x.start_pos
    s = x.span
    return s.line, s.column, s.start_pos


def _end(x: Any) -> tuple[int, int, int]:
    while isinstance(x, Part):
        x = x.last
    if isinstance(x, Tok):
        return x.end_line, x.end_column, x.end_pos
    s = x.span
    return s.end_line, s.end_column, s.end_pos


def _one_of(words: tuple[str, ...]) -> str:
    quoted = [f"`{w}`" for w in words]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _toks(children: list[Any], kind: str) -> list[Tok]:
    return [c for c in children if isinstance(c, Tok) and c.type == kind]


def _nodes(children: list[Any]) -> list[Any]:
    return [c for c in children if not isinstance(c, Tok)]


class Builder:
    """The reduce callbacks for one parse of one file."""

    def __init__(self, file: str):
        self.file = file
        self.depth: dict[int, int] = {}
        self.deepest: dict[int, Any] = {}  # per node, its innermost descendant on its deepest path
        self.elif_arms: dict[int, int] = {}  # id(If) -> arms in its `else if` chain

    def span(self, first: Any, last: Any) -> ast.Span:
        if type(first) is Tok:
            line, column, start = first.line, first.column, first.start_pos
        else:
            line, column, start = _start(first)
        if type(last) is Tok:
            end_line, end_column, end = last.end_line, last.end_column, last.end_pos
        else:
            end_line, end_column, end = _end(last)
        return _Span(file=self.file, line=line, column=column, end_line=end_line, end_column=end_column,
                     start_pos=start, end_pos=end)

    def _all(self, c: list[Any]) -> ast.Span:
        return self.span(c[0], c[-1])

    def _nest(self, node: Any, *children: Any) -> Any:
        """Record how deep `node` sits above its leaves; refuse trees deeper than MAX_DEPTH."""
        depth, deepest = self.depth, self.deepest
        d, inner = 0, node
        for child in children:
            for item in (child if type(child) is list else () if child is None else (child,)):
                if depth.get(id(item), 0) > d:
                    d, inner = depth[id(item)], deepest.get(id(item), item)
        if d >= MAX_DEPTH:  # shown at the innermost construct of the deepest path, where splitting helps
            raise LexicalError(
                f"program nested more than {MAX_DEPTH} levels deep (blocks, expressions and the statements "
                "that hold them each count, and a chain `a + b + c` one level per operator); the innermost level "
                "is here", inner.span,
                hint="split the expression or block into named steps or separate strategies",
            )
        depth[id(node)] = d + 1
        deepest[id(node)] = inner
        return node

    def _word(self, tok: Tok, allowed: tuple[str, ...], what: str) -> str:
        """A name the grammar accepts anywhere but that must be one of a few words here."""
        if tok.value in allowed:
            return tok.value
        raise LexicalError(
            f"unknown {what} `{tok.value}`", token_span(tok, self.file),
            expected=_one_of(allowed), hint=did_you_mean(tok.value, allowed),
        )

    def _text(self, tok: Tok) -> str:
        return unescape(decode_string(tok)[0])

    # ------------------------------------------------------------ module

    def start(self, c: list[Any]) -> ast.Module:
        lists: dict[type, list[Any]] = {
            ast.Import: [], ast.ModelDecl: [], ast.VerifierDecl: [], ast.ParamDecl: [], ast.BudgetDecl: [],
            ast.Strategy: [],
        }
        docstring = None
        extract = None
        version_tok: Tok = c[0].value
        for item in c[1:]:
            if isinstance(item, Tok):
                continue
            if isinstance(item, Part):
                docstring = item.value
            elif isinstance(item, ast.ExtractDecl):
                if extract is not None:
                    raise LexicalError("a module has at most one `extract` line", item.span, hint="keep one `extract` line")
                extract = item
            else:
                lists[type(item)].append(item)
        value, is_int = number_value(version_tok.value)
        if not is_int or value != 1:
            raise LexicalError(
                f"unsupported language version `{version_tok.value}`", token_span(version_tok, self.file),
                expected="`ttcl 1`", hint="this ttcl reads version 1 programs",
            )
        return ast.Module.model_construct(
            span=self._all(c), path=self.file, version=1, docstring=docstring, extract=extract, comments=[],
            imports=lists[ast.Import], models=lists[ast.ModelDecl], verifiers=lists[ast.VerifierDecl],
            params=lists[ast.ParamDecl], budgets=lists[ast.BudgetDecl], strategies=lists[ast.Strategy],
        )

    def header(self, c: list[Tok]) -> Part:
        return Part(c[1], c[0], c[1])

    def docstring(self, c: list[Tok]) -> Part:
        return Part(self._text(c[0]), c[0], c[0])

    # ------------------------------------------------------------ declarations

    def import_decl(self, c: list[Tok]) -> ast.Import:
        return ast.Import.model_construct(span=self._all(c), path=self._text(c[1]), alias=c[3].value)

    def model_decl(self, c: list[Any]) -> ast.ModelDecl:
        options = c[4].value if len(c) > 4 else []
        return ast.ModelDecl.model_construct(span=self._all(c), name=c[1].value, ref=self._text(c[3]), options=options)

    def model_options(self, c: list[Any]) -> Part:
        return Part(_nodes(c), c[0], c[-1])

    def verifier_decl(self, c: list[Any]) -> ast.VerifierDecl:
        return ast.VerifierDecl.model_construct(span=self._all(c), name=c[1].value, call=c[3])

    def call_expr(self, c: list[Any]) -> ast.Call:
        name = c[0]
        func = _Name(span=token_span(name, self.file), id=name.value)
        args, keywords = c[2].value if len(c) == 4 else ([], [])
        return self._nest(_Call(span=self._all(c), func=func, args=args, keywords=keywords), args, keywords)

    def param_decl(self, c: list[Any]) -> ast.ParamDecl:
        low = high = None
        if isinstance(c[-1], Part):
            low, high = c[-1].value
        return ast.ParamDecl.model_construct(
            span=self._all(c), name=c[1].value, type=self._word(c[3], PARAM_TYPES, "param type"),
            default=c[5], low=low, high=high,
        )

    def auto(self, c: list[Tok]) -> ast.Auto:
        return ast.Auto.model_construct(span=self._all(c))

    def param_range(self, c: list[Any]) -> Part:
        return Part((c[1], c[3]), c[0], c[-1])

    def extract_decl(self, c: list[Tok]) -> ast.ExtractDecl:
        return ast.ExtractDecl.model_construct(span=self._all(c), pattern=self._text(c[1]))

    def budget_decl(self, c: list[Any]) -> ast.BudgetDecl:
        lbrace = next(i for i, x in enumerate(c) if isinstance(x, Tok) and x.type == "LBRACE")
        scope = self._scope(c[1:lbrace])
        limits: list[ast.BudgetLimit] = []
        settings: dict[str, str] = {}
        for entry in c[lbrace + 1 : -1]:
            if isinstance(entry, ast.BudgetLimit):
                limits.append(entry)
            elif isinstance(entry, Part):
                setting, value = entry.value
                if setting in settings:
                    raise LexicalError(f"`{setting}` is given twice in one budget", self.span(entry, entry),
                                       hint=f"keep one `{setting}` line")
                if setting == "split" and scope != "pooled":
                    raise LexicalError("`split` shares a pooled budget among items; a per-item budget has nothing to share",
                                       self.span(entry, entry), hint="move `split = ...` into `budget pooled { ... }`")
                settings[setting] = value
        return ast.BudgetDecl.model_construct(span=self._all(c), scope=scope, limits=limits,
                                              on_exhaust=settings.get("on_exhaust"), split=settings.get("split"))

    def _scope(self, words: list[Tok]) -> str:
        spelled = " ".join(w.value for w in words)
        if spelled == "per item":
            return "item"
        if spelled == "pooled":
            return "pooled"
        bad = words[-1] if words[0].value == "per" else words[0]
        raise LexicalError(
            f"unknown budget scope `{spelled}`", self.span(bad, bad), expected="`per item` or `pooled`",
            hint="`budget per item { ... }` limits each input; `budget pooled { ... }` a whole dataset run",
        )

    def budget_limit(self, c: list[Tok]) -> ast.BudgetLimit:
        unit = self._word(c[0], BUDGET_UNITS, "budget unit")
        return ast.BudgetLimit.model_construct(span=self._all(c), unit=unit, value=self._number(c[2]))

    def budget_policy(self, c: list[Tok]) -> Part:
        setting = self._word(c[0], tuple(BUDGET_SETTINGS), "budget setting")
        words, what = BUDGET_SETTINGS[setting]
        return Part((setting, self._word(c[2], words, what)), c[0], c[-1])

    def strategy(self, c: list[Any]) -> ast.Strategy:
        inputs = [x for x in c if isinstance(x, ast.Input)]
        returns, body = c[-2], c[-1]
        docstring, stmts = body.value
        node = ast.Strategy.model_construct(
            span=self._all(c), name=c[1].value, docstring=docstring, inputs=inputs, returns=returns, body=stmts,
        )
        return self._nest(node, stmts)

    def input(self, c: list[Any]) -> ast.Input:
        return ast.Input.model_construct(span=self._all(c), name=c[0].value, type=c[2])

    def type_ref(self, c: list[Tok]) -> ast.TypeRef:
        max_len = None
        if len(c) > 1:
            bound = c[3]
            value, is_int = number_value(bound.value)
            if not is_int or value > 2**62:
                raise LexicalError(
                    f"length bound `{bound.value}` is not a whole number of tokens", token_span(bound, self.file),
                    expected="a whole number such as `256` or `4k`",
                )
            max_len = int(value)
        name = self._word(c[0], VALUE_TYPES, "type")
        return ast.TypeRef.model_construct(span=self._all(c), name=name, max_len=max_len)

    def body(self, c: list[Any]) -> Part:
        items = [x for x in c[1:-1] if not isinstance(x, Tok)]
        docstring = None
        if items and isinstance(items[0], Part):
            docstring = items.pop(0).value
        return Part((docstring, items), c[0], c[-1])

    # ------------------------------------------------------------ statements

    def block(self, c: list[Any]) -> Part:
        return Part([x for x in c[1:-1] if not isinstance(x, Tok)], c[0], c[-1])

    def assign(self, c: list[Any]) -> ast.Assign:
        value = c[2]
        return self._nest(_Assign(span=self._all(c), target=c[0].value, value=value), value)

    def return_stmt(self, c: list[Any]) -> ast.Return:
        return self._nest(ast.Return.model_construct(span=self._all(c), value=c[1]), c[1])

    def if_stmt(self, c: list[Any]) -> ast.If:
        cond, then = c[1], c[2].value
        orelse: list[Any] = []
        if len(c) == 5:
            arm = c[4]
            orelse = [arm] if isinstance(arm, ast.If) else arm.value
        node = ast.If.model_construct(span=self._all(c), cond=cond, then=then, orelse=orelse)
        if len(c) == 5 and isinstance(c[4], ast.If):
            return self._else_if(node, c[4], cond, then)
        return self._nest(node, cond, then, orelse)

    def _else_if(self, node: ast.If, arm: ast.If, cond: Any, then: list[Any]) -> ast.If:
        """`if ... else if ...`: a flat chain of arms, so the next arm does not count as a nesting level."""
        self._nest(node, cond, then)
        depth = self.depth
        if depth.get(id(arm), 0) > depth[id(node)]:
            depth[id(node)] = depth[id(arm)]
            self.deepest[id(node)] = self.deepest.get(id(arm), arm)
        arms = self.elif_arms.get(id(arm), 1) + 1
        if arms - 1 > MAX_ELSE_IF_ARMS:  # `arms` counts the first `if` too
            raise LexicalError(
                f"an `if` with more than {MAX_ELSE_IF_ARMS} `else if` arms", node.span,
                hint="select with a param or split the choice over strategies",
            )
        self.elif_arms[id(node)] = arms
        return node

    def repeat_stmt(self, c: list[Any]) -> ast.Repeat:
        count, body = c[1], c[2].value
        until = c[4] if len(c) == 5 else None
        node = ast.Repeat.model_construct(span=self._all(c), count=count, body=body, until=until)
        return self._nest(node, count, body, until)

    def break_stmt(self, c: list[Tok]) -> ast.Break:
        return ast.Break.model_construct(span=self._all(c))

    # ------------------------------------------------------------ expressions

    def or_op(self, c: list[Any]) -> ast.BoolOp:
        return self._nest(_BoolOp(span=self._all(c), op="or", left=c[0], right=c[2]), c[0], c[2])

    def and_op(self, c: list[Any]) -> ast.BoolOp:
        return self._nest(_BoolOp(span=self._all(c), op="and", left=c[0], right=c[2]), c[0], c[2])

    def not_op(self, c: list[Any]) -> ast.UnaryOp:
        return self._nest(_UnaryOp(span=self._all(c), op="not", operand=c[1]), c[1])

    def neg(self, c: list[Any]) -> ast.UnaryOp:
        return self._nest(_UnaryOp(span=self._all(c), op="-", operand=c[1]), c[1])

    def compare(self, c: list[Any]) -> ast.Compare:
        return self._nest(_Compare(span=self._all(c), op=c[1].value, left=c[0], right=c[2]), c[0], c[2])

    def binop(self, c: list[Any]) -> ast.BinOp:
        return self._nest(_BinOp(span=self._all(c), op=c[1].value, left=c[0], right=c[2]), c[0], c[2])

    def attribute(self, c: list[Any]) -> ast.Attribute:
        return self._nest(_Attribute(span=self._all(c), value=c[0], attr=c[2].value), c[0])

    def call(self, c: list[Any]) -> ast.Call:
        func = c[0]
        args, keywords = c[2].value if len(c) == 4 else ([], [])
        return self._nest(_Call(span=self._all(c), func=func, args=args, keywords=keywords), func, args, keywords)

    def arglist(self, c: list[Any]) -> Part:
        args: list[Any] = []
        keywords: list[ast.Keyword] = []
        for child in c:
            if isinstance(child, Tok):
                continue
            if isinstance(child, ast.Keyword):
                keywords.append(child)
            elif keywords:
                raise LexicalError(
                    "positional argument after a keyword argument", child.span,
                    hint="put positional arguments first, or name this one (`name = value`)",
                )
            else:
                args.append(child)
        return Part((args, keywords), c[0], c[-1])

    def kwarg(self, c: list[Any]) -> ast.Keyword:
        return self._nest(_Keyword(span=self._all(c), name=c[0].value, value=c[2]), c[2])

    def name(self, c: list[Tok]) -> ast.Name:
        return _Name(span=self._all(c), id=c[0].value)

    def budget_name(self, c: list[Tok]) -> ast.Name:
        return _Name(span=self._all(c), id="budget")

    def number(self, c: list[Tok]) -> ast.Number:
        return self._number(c[0])

    def _number(self, tok: Tok) -> ast.Number:
        value, is_int = number_value(tok.value)
        return _Number(span=self._all([tok]), value=value, text=tok.value, is_int=is_int)

    def string(self, c: list[Tok]) -> ast.String:
        return _String(span=self._all(c), parts=template_parts(c[0], self.file))

    def true(self, c: list[Tok]) -> ast.Bool:
        return ast.Bool.model_construct(span=self._all(c), value=True)

    def false(self, c: list[Tok]) -> ast.Bool:
        return ast.Bool.model_construct(span=self._all(c), value=False)

    def list_expr(self, c: list[Any]) -> ast.ListExpr:
        items = _nodes(c)
        return self._nest(ast.ListExpr.model_construct(span=self._all(c), items=items), items)
