"""Hypothesis strategies for random well-formed ttcl programs, built from a random AST.

- `modules()`: a random `ttcl.compiler.ast.Module` (no spans, no comments) that
  covers the whole syntax: every declaration, statement and operator, odd
  strings (quotes, backslashes, braces, newlines, unicode), soft keywords used
  as names (`text`, `stop`, `item`), numbers in every spelling.
- `layouts(module)`: source text for that module in a random but valid
  layout: odd spacing, redundant parentheses, arguments over several lines,
  `;` separators, `else`/`until` on their own line, braces on their own line,
  trailing commas, blank lines, comments everywhere a comment may go, and
  top-level declarations interleaved across kinds.
- `programs()`: source text (a module in a random layout); `canonical_programs()`:
  the same module as `ttcl fmt` prints it.

Parsing `layouts(m)` gives `m` back (spans and comments aside), which is what
the parser and formatter property tests rely on. The programs are
syntactically valid; they are not meant to pass the semantic checks
(tests/gen_budget_programs.py generates checkable ones).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from ttcl.compiler import ast
from ttcl.compiler.fmt import docstring_literal, format_module
from ttcl.compiler.parse import reserved_words
from ttcl.compiler.parse_lex import number_value

RESERVED = reserved_words()
SOFT_WORDS = ["text", "stop", "item", "per", "pooled", "calls", "flops", "number", "answer", "score", "shrink"]
COMMON_NAMES = ["x", "c", "policy", "drafts", "q", "n", "A_1", "_"]
NUMBER_TEXTS = ["0", "7", "16", "1024", "999999", "0.5", "0.8", "1.0", "2e12", "1.5e-3", "8k", "2.5M", "7G", "1T",
                "3E+2", "0.25k"]
STRING_PIECES = list('abc xyz\\"{}\n\t#;:.-é中') + ["\\n", "\\d", "{{", "}}"]
_LETTERS = "abcdefghijklmnopqrstuvwxyz_"
_ALNUM = _LETTERS + "0123456789"


def number(text: str) -> ast.Number:
    value, is_int = number_value(text)
    return ast.Number(value=value, text=text, is_int=is_int)


class _Gen:
    """Builds a random AST from one `random.Random`: fast, and still shrinkable through hypothesis's seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def some(self, make: Any, most: int) -> list[Any]:
        return [make() for _ in range(self.rng.randint(0, most))]

    def name(self) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return self.pick(SOFT_WORDS)
        if roll < 0.5:
            return self.pick(COMMON_NAMES)
        while True:
            word = self.pick(_LETTERS) + "".join(self.pick(_ALNUM) for _ in range(self.rng.randint(0, 7)))
            if word not in RESERVED:
                return word

    def text(self) -> str:
        return "".join(self.pick(STRING_PIECES) for _ in range(self.rng.randint(0, 8)))

    def parts(self) -> list[Any]:
        """Normalized template parts: no empty text, no two texts side by side."""
        parts: list[Any] = []
        for _ in range(self.rng.randint(0, 4)):
            if self.chance(0.4):
                parts.append(ast.TemplateField(path=[self.name() for _ in range(self.rng.randint(1, 3))]))
                continue
            text = self.text() or "a"
            if parts and isinstance(parts[-1], ast.TemplateText):
                parts[-1] = ast.TemplateText(text=parts[-1].text + text)
            else:
                parts.append(ast.TemplateText(text=text))
        return parts

    def leaf(self) -> Any:
        kind = self.rng.randrange(6)
        if kind == 0:
            return ast.Name(id="budget")
        if kind == 1:
            return number(self.pick(NUMBER_TEXTS))
        if kind == 2:
            return ast.Bool(value=self.chance(0.5))
        if kind == 3:
            return ast.String(parts=self.parts())
        return ast.Name(id=self.name())

    def keyword(self, depth: int) -> ast.Keyword:
        return ast.Keyword(name=self.name(), value=self.expr(depth))

    def expr(self, depth: int = 3) -> Any:
        if depth <= 0 or self.chance(0.35):
            return self.leaf()
        d = depth - 1
        kind = self.rng.randrange(8)
        if kind == 0:
            return ast.Attribute(value=self.expr(d), attr=self.name())
        if kind in (1, 2):
            return ast.Call(func=self.expr(d), args=self.some(lambda: self.expr(d), 3),
                            keywords=self.some(lambda: self.keyword(d), 2))
        if kind == 3:
            return ast.BinOp(op=self.pick("+-*/"), left=self.expr(d), right=self.expr(d))
        if kind == 4:
            return ast.UnaryOp(op=self.pick(["-", "not"]), operand=self.expr(d))
        if kind == 5:
            return ast.Compare(op=self.pick(["<", "<=", ">", ">=", "==", "!="]), left=self.expr(d), right=self.expr(d))
        if kind == 6:
            return ast.BoolOp(op=self.pick(["and", "or"]), left=self.expr(d), right=self.expr(d))
        return ast.ListExpr(items=self.some(lambda: self.expr(d), 3))

    def stmts(self, depth: int, in_loop: bool) -> list[Any]:
        return self.some(lambda: self.stmt(depth, in_loop), 3)

    def stmt(self, depth: int, in_loop: bool) -> Any:
        roll = self.rng.random()
        if depth > 0 and roll < 0.2:
            orelse: list[Any] = []
            if self.chance(0.3):
                orelse = [ast.If(cond=self.expr(), then=self.stmts(depth - 1, in_loop), orelse=self.stmts(depth - 1, in_loop))]
            elif self.chance(0.5):
                orelse = self.stmts(depth - 1, in_loop)
            return ast.If(cond=self.expr(), then=self.stmts(depth - 1, in_loop), orelse=orelse)
        if depth > 0 and roll < 0.35:
            return ast.Repeat(count=self.expr(), body=self.stmts(depth - 1, True),
                              until=self.expr() if self.chance(0.5) else None)
        if in_loop and roll < 0.45:
            return ast.Break()
        if roll < 0.7:
            return ast.Assign(target=self.name(), value=self.expr())
        return ast.Return(value=self.expr())

    def type_ref(self) -> ast.TypeRef:
        return ast.TypeRef(name=self.pick(["text", "candidates", "number", "answer", "bool"]),
                           max_len=self.rng.randint(0, 10**6) if self.chance(0.4) else None)

    def param(self) -> ast.ParamDecl:
        ranged = self.chance(0.5)
        return ast.ParamDecl(
            name=self.name(), type=self.pick(["int", "float", "bool", "text"]),
            default=ast.Auto() if self.chance(0.2) else self.expr(2),
            low=self.expr(1) if ranged else None, high=self.expr(1) if ranged else None,
        )

    def budget(self) -> ast.BudgetDecl:
        units = ["calls", "prompt_tokens", "gen_tokens", "tokens", "flops", "seconds"]
        return ast.BudgetDecl(
            scope=self.pick(["item", "pooled"]),
            limits=self.some(lambda: ast.BudgetLimit(unit=self.pick(units), value=number(self.pick(NUMBER_TEXTS))), 3),
            on_exhaust=self.pick([None, "shrink", "stop"]),
        )

    def strategy(self) -> ast.Strategy:
        return ast.Strategy(
            name=self.name(), docstring=self.text() if self.chance(0.3) else None,
            inputs=self.some(lambda: ast.Input(name=self.name(), type=self.type_ref()), 3),
            returns=self.type_ref(), body=self.stmts(2, False),
        )

    def module(self) -> ast.Module:
        return ast.Module(
            docstring=self.text() if self.chance(0.4) else None,
            imports=self.some(lambda: ast.Import(path=self.text(), alias=self.name()), 2),
            models=self.some(lambda: ast.ModelDecl(name=self.name(), ref=self.text(),
                                                   options=self.some(lambda: self.keyword(1), 2)), 2),
            verifiers=self.some(lambda: ast.VerifierDecl(name=self.name(), call=ast.Call(
                func=ast.Name(id=self.name()), args=self.some(lambda: self.expr(1), 2),
                keywords=self.some(lambda: self.keyword(1), 2))), 2),
            params=self.some(self.param, 3),
            extract=ast.ExtractDecl(pattern=self.text()) if self.chance(0.4) else None,
            budgets=self.some(self.budget, 2),
            strategies=self.some(self.strategy, 2),
        )


def modules() -> st.SearchStrategy[ast.Module]:
    """A random module (see the module docstring)."""
    return st.randoms(use_true_random=False).map(lambda rng: _Gen(rng).module())


def docstring_text() -> st.SearchStrategy[str]:
    return st.randoms(use_true_random=False).map(lambda rng: _Gen(rng).text())


# ---------------------------------------------------------------- random layout


class _Messy:
    """Prints a module in a random valid layout, drawing every choice from hypothesis."""

    def __init__(self, rng: random.Random, comments: bool):
        self.rng = rng
        self.comments = comments
        self.n_comments = 0

    def flip(self, p: float = 0.3) -> bool:
        return self.rng.random() < p

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def sp(self) -> str:
        return self.pick(["", " ", " ", "  ", "\t"])

    def ws(self) -> str:
        """Space that may also break the line (only valid inside brackets)."""
        if self.flip(0.15):
            return self.comment_nl() if self.comments and self.flip(0.3) else "\n" + self.sp()
        return self.sp()

    def comment_nl(self) -> str:
        self.n_comments += 1
        word = self.pick(["", "note", "{x}", '"q"', "ü"])
        return f"  # c{self.n_comments} {word}\n"

    def end(self) -> str:
        """The end of a statement: newline, `;`, a trailing comment, blank lines."""
        out = self.sp()
        if self.flip(0.1):
            out += ";"
        if self.comments and self.flip(0.2):
            out += self.comment_nl()
        else:
            out += "\n"
        if self.flip(0.15):
            out += "\n"
        if self.comments and self.flip(0.15):
            self.n_comments += 1
            out += f"# own {self.n_comments}\n"
        return out

    # ------------------------------------------------------------ expressions

    def expr(self, e: Any) -> str:
        text = self._expr(e)
        if self.flip(0.1):
            return f"({self.ws()}{text}{self.ws()})"
        return text

    def _wrap(self, e: Any, needs: bool) -> str:
        text = self.expr(e)
        return f"({text})" if needs else text

    def _expr(self, e: Any) -> str:
        from ttcl.compiler.fmt import _PREC, _prec

        if isinstance(e, ast.String):
            return self.string(e)
        if isinstance(e, ast.ListExpr):
            items = [self.expr(i) for i in e.items]
            trail = "," if items and self.flip() else ""
            return "[" + self.ws() + ("," + self.ws()).join(items) + trail + self.ws() + "]"
        if isinstance(e, ast.Attribute):
            return f"{self._wrap(e.value, _prec(e.value) < _PREC['postfix'])}.{e.attr}"
        if isinstance(e, ast.Call):
            return f"{self._wrap(e.func, _prec(e.func) < _PREC['postfix'])}({self.args(e.args, e.keywords)})"
        if isinstance(e, ast.UnaryOp):
            p = _prec(e)
            inner = self._wrap(e.operand, _prec(e.operand) < p)
            return f"not {self.sp()}{inner}" if e.op == "not" else f"-{self.sp()}{inner}"
        if isinstance(e, ast.Compare):
            p = _PREC["compare"]
            return f"{self._wrap(e.left, _prec(e.left) <= p)}{self.sp()}{e.op}{self.sp()}{self._wrap(e.right, _prec(e.right) <= p)}"
        if isinstance(e, (ast.BinOp, ast.BoolOp)):
            p = _prec(e)
            gap = (lambda: " " + self.sp()) if isinstance(e, ast.BoolOp) else self.sp
            left = self._wrap(e.left, _prec(e.left) < p)
            right = self._wrap(e.right, _prec(e.right) <= p)
            if isinstance(e, ast.BinOp) and e.op == "-" and right.startswith("-"):
                return f"{left} - {right}"
            return f"{left}{gap()}{e.op}{gap()}{right}"
        from ttcl.compiler.fmt import expr

        return expr(e)

    def args(self, args: list[Any], keywords: list[ast.Keyword]) -> str:
        parts = [self.expr(a) for a in args] + [f"{k.name}{self.sp()}={self.sp()}{self.expr(k.value)}" for k in keywords]
        if not parts:
            return self.ws()
        trail = "," if self.flip() else ""
        return self.ws() + ("," + self.ws()).join(parts) + trail + self.ws()

    def string(self, s: ast.String) -> str:
        out = []
        for part in s.parts:
            if isinstance(part, ast.TemplateField):
                out.append("{" + ".".join(part.path) + "}")
            else:
                out.append(self.escape(part.text, braces=True))
        return '"' + "".join(out) + '"'

    def escape(self, text: str, braces: bool) -> str:
        out = []
        for i, ch in enumerate(text):
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if ch == "\\":
                out.append("\\\\" if nxt in 'nt"\\\n\t' or nxt == "" or self.flip(0.5) else "\\")
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t" if self.flip(0.5) else "\t")
            elif ch == '"':
                out.append('\\"')
            elif braces and ch in "{}":
                out.append(ch * 2)
            else:
                out.append(ch)
        return "".join(out)

    def plain(self, text: str) -> str:
        return '"' + self.escape(text, braces=False) + '"'

    def doc(self, text: str) -> str:
        if "\n" not in text and self.flip(0.5):
            return self.plain(text)
        return docstring_literal(text)

    # ------------------------------------------------------------ statements

    def brace(self) -> str:
        return ("\n" if self.flip(0.1) else self.sp() or " ") + "{"

    def block(self, stmts: list[Any], depth: int) -> str:
        ind = "    " * depth
        body = "".join(ind + self.stmt(s, depth) + self.end() for s in stmts)
        return self.brace() + ("\n" if stmts or self.flip(0.5) else "") + body + "    " * (depth - 1) + "}"

    def stmt(self, s: Any, depth: int) -> str:
        if isinstance(s, ast.Assign):
            return f"{s.target}{self.sp()}={self.sp()}{self.expr(s.value)}"
        if isinstance(s, ast.Return):
            return f"return {self.sp()}{self.expr(s.value)}"
        if isinstance(s, ast.Break):
            return "break"
        if isinstance(s, ast.If):
            out = f"if {self.expr(s.cond)}{self.block(s.then, depth + 1)}"
            if s.orelse or self.flip(0.1):
                sep = "\n" + "    " * depth if self.flip(0.3) else " "
                if len(s.orelse) == 1 and isinstance(s.orelse[0], ast.If) and self.flip(0.8):
                    return out + sep + "else " + self.stmt(s.orelse[0], depth)
                return out + sep + "else" + self.block(s.orelse, depth + 1)
            return out
        if isinstance(s, ast.Repeat):
            out = f"repeat {self.expr(s.count)}{self.block(s.body, depth + 1)}"
            if s.until is not None:
                sep = "\n" + "    " * depth if self.flip(0.3) else " "
                out += f"{sep}until {self.expr(s.until)}"
            return out
        raise TypeError(type(s).__name__)

    # ------------------------------------------------------------ declarations

    def decls(self, m: ast.Module) -> list[str]:
        """Every declaration's text, interleaved across kinds (each kind keeps its order)."""
        queues: list[list[str]] = [
            [f"import {self.plain(i.path)} as {i.alias}" for i in m.imports],
            [self.model(d) for d in m.models],
            [f"verifier {d.name}{self.sp()}={self.sp()}{d.call.func.id}({self.args(d.call.args, d.call.keywords)})"
             for d in m.verifiers],
            [self.param(p) for p in m.params],
            [f"extract {self.plain(m.extract.pattern)}"] if m.extract else [],
            [self.budget(b) for b in m.budgets],
            [self.strategy(s) for s in m.strategies],
        ]
        out: list[str] = []
        while any(queues):
            live = [q for q in queues if q]
            q = self.pick(live) if self.flip(0.3) else live[0]
            out.append(q.pop(0))
        return out

    def model(self, d: ast.ModelDecl) -> str:
        opts = ""
        if d.options or self.flip(0.05):
            opts = f"{self.sp()}({self.args([], d.options)})"
        return f"model {d.name}{self.sp()}={self.sp()}{self.plain(d.ref)}{opts}"

    def param(self, p: ast.ParamDecl) -> str:
        rng = ""
        if p.low is not None and p.high is not None:
            rng = f" in {self.expr(p.low)}{self.sp()}..{self.sp()}{self.expr(p.high)}"
        default = "auto" if isinstance(p.default, ast.Auto) else self.expr(p.default)
        return f"param {p.name}{self.sp()}:{self.sp()}{p.type}{self.sp()}={self.sp()}{default}{rng}"

    def budget(self, b: ast.BudgetDecl) -> str:
        entries = [f"{lim.unit}{self.sp()}<={self.sp()}{lim.value.text}" for lim in b.limits]
        if b.on_exhaust:
            entries.insert(self.rng.randint(0, len(entries)), f"on_exhaust{self.sp()}={self.sp()}{b.on_exhaust}")
        scope = "per item" if b.scope == "item" else "pooled"
        if self.flip(0.4):
            return f"budget {scope} {{ " + "; ".join(entries) + " }"
        body = "".join("    " + e + self.end() for e in entries)
        return f"budget {scope}{self.brace()}\n{body}}}"

    def strategy(self, s: ast.Strategy) -> str:
        inputs = [f"{i.name}{self.sp()}:{self.sp()}{self.type(i.type)}" for i in s.inputs]
        trail = "," if inputs and self.flip() else ""
        head = f"strategy {s.name}({self.ws()}{(',' + self.ws()).join(inputs)}{trail}) -> {self.type(s.returns)}"
        body = self.block(s.body, 1)
        if s.docstring is not None:
            nl = body.index("{") + 1
            body = body[:nl] + "\n    " + self.doc(s.docstring) + "\n" + body[nl:].lstrip("\n")
        return head + body

    def type(self, t: ast.TypeRef) -> str:
        return t.name if t.max_len is None else f"{t.name}[{self.sp()}<={self.sp()}{t.max_len}]"

    def module(self, m: ast.Module) -> str:
        out = ""
        if self.comments and self.flip(0.2):
            out += "# leading comment\n\n"
        out += "ttcl 1" + self.end()
        if m.docstring is not None:
            out += self.doc(m.docstring) + self.end()
        for text in self.decls(m):
            out += text + self.end()
        if self.comments and self.flip(0.2):
            out += "# end of file"
        return out


@st.composite
def layouts(draw: st.DrawFn, module: ast.Module, comments: bool = True) -> str:
    """Source text for `module` in a random valid layout (see the module docstring)."""
    return _Messy(draw(st.randoms(use_true_random=False)), comments).module(module)


@st.composite
def programs(draw: st.DrawFn, comments: bool = True) -> str:
    """Source text of a random well-formed program in a random layout."""
    return draw(layouts(draw(modules()), comments=comments))


def canonical_programs() -> st.SearchStrategy[str]:
    """Source text of a random well-formed program as `ttcl fmt` prints it."""
    return modules().map(format_module)
