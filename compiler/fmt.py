"""Canonical formatting of .ttc programs (`ttcl fmt`), so strategy diffs stay clean.

The text is printed from the AST, never patched: 4-space indents, one
statement per line, one blank line between top-level groups in a fixed order
(header and docstring, imports, models, verifiers, params, extract, budgets,
strategies), minimal parentheses, canonical string escapes, and numbers as
they were spelled. Inside a group and inside a block, one blank line is kept
where the source had any, between comments and between a comment and the
code after it included.

Comments are kept, in order. Each belongs to the construct it precedes (an
own-line comment) or ends (a trailing comment, which keeps its column when
the line still fits). A declaration moved into its group takes its comments
along. Comments inside an expression that spans several lines move to their
own lines before the statement, since the statement is printed on one.

Guarantees (tests/test_fmt*.py): `format_source` is idempotent, and
`parse(format_source(x))` has the same AST as `parse(x)`, spans aside.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ttcl.compiler import ast
from ttcl.compiler.parse import parse

INDENT = "    "

# Binding strength; a child binding looser than its parent needs parentheses.
_PREC = {"or": 1, "and": 2, "not": 3, "compare": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "postfix": 8, "atom": 9}
# A backslash is written `\\` when the next character would otherwise make an
# escape with it: a letter of one, or a character that is itself printed escaped.
_ESCAPE_AFTER_BACKSLASH = frozenset('nt"\\\n\t')
_DOC_ESCAPE_AFTER_BACKSLASH = frozenset('nt"\\')


def format_source(source: str, file: str = "<input>") -> str:
    """Parse and reprint (with `\n` line ends); raises `SyntaxDiagnosticError` when `source` does not parse."""
    source = source.replace("\r\n", "\n")  # as `parse` reads it: the printer finds comments and `split` by its offsets
    return format_module(parse(source, file), source)


def format_module(module: ast.Module, source: str | None = None) -> str:
    """The canonical text of a module. With its `source`, comments land exactly; without, nearly."""
    return _Printer(module, source).run()


# ---------------------------------------------------------------- expressions


def _prec(e: Any) -> int:
    if isinstance(e, ast.BoolOp):
        return _PREC[e.op]
    if isinstance(e, ast.UnaryOp):
        return _PREC["not"] if e.op == "not" else _PREC["neg"]
    if isinstance(e, ast.Compare):
        return _PREC["compare"]
    if isinstance(e, ast.BinOp):
        return _PREC[e.op]
    if isinstance(e, (ast.Call, ast.Attribute)):
        return _PREC["postfix"]
    return _PREC["atom"]


def _wrap(e: Any, needs: bool) -> str:
    text = expr(e)
    return f"({text})" if needs else text


def expr(e: Any) -> str:
    """One expression on one line, with the parentheses its tree needs and no more."""
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Number):
        return e.text or _number_text(e)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Auto):
        return "auto"
    if isinstance(e, ast.String):
        return template_literal(e)
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(expr(i) for i in e.items) + "]"
    if isinstance(e, ast.Attribute):
        return f"{_wrap(e.value, _prec(e.value) < _PREC['postfix'])}.{e.attr}"
    if isinstance(e, ast.Call):
        return f"{_wrap(e.func, _prec(e.func) < _PREC['postfix'])}({_args(e.args, e.keywords)})"
    if isinstance(e, ast.UnaryOp):
        p = _prec(e)
        if e.op == "not":
            return f"not {_wrap(e.operand, _prec(e.operand) < p)}"
        return f"-{_wrap(e.operand, _prec(e.operand) < p)}"
    if isinstance(e, ast.Compare):
        p = _PREC["compare"]
        return f"{_wrap(e.left, _prec(e.left) <= p)} {e.op} {_wrap(e.right, _prec(e.right) <= p)}"
    if isinstance(e, (ast.BinOp, ast.BoolOp)):
        p = _prec(e)
        return f"{_wrap(e.left, _prec(e.left) < p)} {e.op} {_wrap(e.right, _prec(e.right) <= p)}"
    raise TypeError(f"not an expression: {type(e).__name__}")


def _args(args: Sequence[Any], keywords: Sequence[ast.Keyword]) -> str:
    parts = [expr(a) for a in args] + [f"{k.name} = {expr(k.value)}" for k in keywords]
    return ", ".join(parts)


def _number_text(n: ast.Number) -> str:
    if n.is_int and n.value == int(n.value):
        return str(int(n.value))
    return repr(float(n.value))


def _escape(text: str, braces: bool) -> str:
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            out.append("\\\\" if nxt in _ESCAPE_AFTER_BACKSLASH or nxt == "" else "\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == '"':
            out.append('\\"')
        elif braces and ch in "{}":
            out.append(ch * 2)
        else:
            out.append(ch)
    return "".join(out)


def string_literal(text: str) -> str:
    """A plain (non-template) string: paths, model references, extract patterns."""
    return '"' + _escape(text, braces=False) + '"'


def template_literal(s: ast.String) -> str:
    """A template string: literal braces doubled, fields as `{a.b}`."""
    out = []
    for part in s.parts:
        if isinstance(part, ast.TemplateField):
            out.append("{" + ".".join(part.path) + "}")
        else:
            out.append(_escape(part.text, braces=True))
    return '"' + "".join(out) + '"'


def docstring_literal(text: str) -> str:
    """A `\"\"\"...\"\"\"` docstring: newlines kept; a quote escaped only where it could close the string."""
    out: list[str] = []
    for i, ch in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch == "\\":
            out.append("\\\\" if nxt in _DOC_ESCAPE_AFTER_BACKSLASH or nxt == "" else "\\")
        elif ch == '"' and nxt in ('"', ""):
            out.append('\\"')
        elif ch == "\n" and i and text[i - 1] == "\r":  # written as it is, CR + newline reads back as a newline
            out.append("\\n")  # alone: the docstring changed, and fmt of its output changed it again (QA pass)
        else:
            out.append(ch)
    return '"""' + "".join(out) + '"""'


# ---------------------------------------------------------------- comments


@dataclass
class _Share:
    """The comments that belong to one item of a sequence."""

    leading: list[ast.Comment]
    inner: list[ast.Comment]
    trailing: list[ast.Comment]


def _split(comments: list[ast.Comment], items: Sequence[tuple[int, int, int]]) -> tuple[list[_Share], list[ast.Comment]]:
    """Give each comment to an item (start_pos, end_pos, end_line) in source order; the rest trail the sequence."""
    shares = [_Share([], [], []) for _ in items]
    tail: list[ast.Comment] = []
    for c in comments:
        pos, line = c.span.start_pos, c.span.line
        for i, (start, end, end_line) in enumerate(items):
            if pos < start:
                shares[i].leading.append(c)
                break
            if pos < end:
                shares[i].inner.append(c)
                break
            nxt = items[i + 1][0] if i + 1 < len(items) else None
            if line == end_line and (nxt is None or pos < nxt):
                shares[i].trailing.append(c)
                break
        else:
            tail.append(c)
    return shares, tail


def _extent(node: ast.Node) -> tuple[int, int, int]:
    s = node.span
    return s.start_pos, s.end_pos, s.end_line


_COMMENT = re.compile(r"#[^\n]*")
_SKIP = re.compile(r'#[^\n]*|"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"')


# ---------------------------------------------------------------- printer


class _Printer:
    """Prints one module; `lines` collects the output."""

    def __init__(self, module: ast.Module, source: str | None):
        self.module = module
        self.source = source
        self.lines: list[str] = []
        self.comment_cols: dict[int, int] = {}

    # ------------------------------------------------------------ output helpers

    def emit(self, depth: int, text: str) -> None:
        self.lines.append(INDENT * depth + text if text else "")

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def own_line(self, depth: int, comments: list[ast.Comment]) -> None:
        """Comments on their own lines; one blank line between two that the source separated by blank lines."""
        for k, c in enumerate(comments):
            if k and self.blank_between(comments[k - 1].span.end_pos, c.span.start_pos):
                self.blank()
            self.emit(depth, c.text)

    def leading(self, depth: int, comments: list[ast.Comment], start: int) -> None:
        """The own-line comments before the item at `start`, then a blank line where the source had one
        between them and the item."""
        self.own_line(depth, comments)
        if comments and self.blank_between(comments[-1].span.end_pos, start):
            self.blank()

    def blank_between(self, end: int, start: int) -> bool:
        """Whether source[end:start] is blank lines only (code between two comments is not a blank line)."""
        if self.source is None or start < end:
            return False
        gap = self.source[end:start]
        return gap.count("\n") >= 2 and not gap.strip()

    def trail(self, comments: list[ast.Comment]) -> None:
        """Append trailing comments to the last line, at their old column when it still fits."""
        for c in comments:
            line = self.lines[-1]
            # measured as shown, on the entry's last physical line (a docstring's entry holds its newlines)
            pad = max(2, self.column(c) - 1 - len(line.rsplit("\n", 1)[-1].expandtabs(4)))
            self.lines[-1] = line + " " * pad + c.text

    def column(self, c: ast.Comment) -> int:
        """The comment's column as shown, a tab reaching the next multiple of 4 (fmt's indent: a tab-indented
        line keeps its comment where it was beside its code; a tab counted one column moved it 3 left)."""
        if self.source is None:
            return c.span.column
        # from the comment's offset: its span's column runs on across a string that spans lines (a comment after
        # a two-line docstring moved on every pass, found by the slow suite's hypothesis sweep)
        prefix = self.source[self.source.rfind("\n", 0, c.span.start_pos) + 1:c.span.start_pos]
        return len(prefix.expandtabs(4)) + 1

    def header_trail(self, comments: list[ast.Comment], line: int | None, before: int | None) -> list[ast.Comment]:
        """Comments on a block's opening line (`if x {  # why`) trail that line; the rest are returned."""
        if line is None:
            return comments
        head = [c for c in comments if c.span.line == line and (before is None or c.span.start_pos < before)]
        self.trail(head)
        return [c for c in comments if c not in head]

    def find(self, pattern: str, start: int, end: int, skip: re.Pattern[str] | None = None) -> int | None:
        """Where `pattern` first occurs in source[start:end] outside comments and strings."""
        if self.source is None:
            return None
        text = self.source
        pos = start
        target = re.compile(pattern)
        skipping = skip or _SKIP
        while pos < end:
            skip_match = skipping.match(text, pos)
            if skip_match:
                pos = skip_match.end()
                continue
            if target.match(text, pos):
                return pos
            pos += 1
        return None

    # ------------------------------------------------------------ module

    def run(self) -> str:
        m = self.module
        comments = sorted(m.comments, key=lambda c: c.span.start_pos)
        groups: list[list[Any]] = [
            list(m.imports), list(m.models), list(m.verifiers), list(m.params),
            [m.extract] if m.extract is not None else [], list(m.budgets), list(m.strategies),
        ]
        decls = sorted((d for g in groups for d in g), key=lambda d: d.span.start_pos)
        header_end = m.span.start_pos + 1 if m.span.end_pos else 0
        header_item = (m.span.start_pos, header_end, m.span.line)
        doc_item = self._docstring_extent(header_end, decls)
        items = [header_item] + ([doc_item] if doc_item else []) + [_extent(d) for d in decls]
        shares, tail = _split(comments, items)
        share_of = {id(d): s for d, s in zip(decls, shares[-len(decls):] if decls else [], strict=True)}
        occupied = self._occupied(decls, comments)
        if doc_item:
            occupied.update(range(self._line_of(doc_item[0]), doc_item[2] + 1))

        head = shares[0]
        self.own_line(0, head.leading + head.inner)
        self.emit(0, f"ttcl {m.version}")
        self.trail(head.trailing)
        if m.docstring is not None:
            doc = shares[1] if doc_item else _Share([], [], [])
            self.own_line(0, doc.leading + doc.inner)
            self.emit(0, docstring_literal(m.docstring))
            self.trail(doc.trailing)
        for g, group in enumerate(groups):
            for i, decl in enumerate(group):
                share = share_of[id(decl)]
                first_line = (share.leading[0].span.line if share.leading else decl.span.line)
                if i == 0 or g == 6 or (first_line - 1) not in occupied:
                    self.blank()
                self.leading(0, share.leading, decl.span.start_pos)
                self.decl(decl, share)
        if tail:
            if (tail[0].span.line - 1) not in occupied:
                self.blank()
            self.own_line(0, tail)
        return "\n".join(self.lines) + "\n"

    def _docstring_extent(self, header_end: int, decls: list[Any]) -> tuple[int, int, int] | None:
        """Where the module docstring sits in the source (the AST keeps only its text)."""
        if self.module.docstring is None or self.source is None:
            return None
        limit = decls[0].span.start_pos if decls else len(self.source)
        start = self.find('"', header_end, limit, _COMMENT)
        match = _SKIP.match(self.source, start) if start is not None else None
        if start is None or match is None:
            return None
        return start, match.end(), self._line_of(match.end())

    def _occupied(self, decls: list[Any], comments: list[ast.Comment]) -> set[int]:
        lines = {self.module.span.line}
        for d in decls:
            lines.update(range(d.span.line, d.span.end_line + 1))
        lines.update(c.span.line for c in comments)
        return lines

    def decl(self, d: Any, share: _Share) -> None:
        if isinstance(d, ast.Strategy):
            self.strategy(d, share)
            return
        if isinstance(d, ast.BudgetDecl):
            self.budget(d, share)
            return
        self.own_line(0, share.inner)
        if isinstance(d, ast.Import):
            self.emit(0, f"import {string_literal(d.path)} as {d.alias}")
        elif isinstance(d, ast.ModelDecl):
            options = f" ({_args([], d.options)})" if d.options else ""
            self.emit(0, f"model {d.name} = {string_literal(d.ref)}{options}")
        elif isinstance(d, ast.VerifierDecl):
            self.emit(0, f"verifier {d.name} = {expr(d.call)}")
        elif isinstance(d, ast.ParamDecl):
            rng = f" in {expr(d.low)}..{expr(d.high)}" if d.low is not None and d.high is not None else ""
            self.emit(0, f"param {d.name}: {d.type} = {expr(d.default)}{rng}")
        elif isinstance(d, ast.ExtractDecl):
            self.emit(0, f"extract {string_literal(d.pattern)}")
        self.trail(share.trailing)

    # ------------------------------------------------------------ budget

    def budget(self, b: ast.BudgetDecl, share: _Share) -> None:
        scope = "per item" if b.scope == "item" else "pooled"
        inner = share.inner
        opened = self.find(r"\{", b.span.start_pos, b.span.end_pos)
        head_end = opened + 1 if opened is not None else (b.limits[0].span.start_pos if b.limits else b.span.start_pos)
        self.own_line(0, [c for c in inner if c.span.start_pos < head_end])
        inner = [c for c in inner if c.span.start_pos >= head_end]
        items: list[tuple[int, int, int]] = [_extent(lim) for lim in b.limits]
        policy_at = self.find(r"on_exhaust\b", head_end, b.span.end_pos) if b.on_exhaust else None
        entries: list[tuple[tuple[int, int, int], str]] = [
            (ext, f"{lim.unit} <= {expr(lim.value)}") for ext, lim in zip(items, b.limits, strict=True)
        ]
        if b.on_exhaust is not None:
            line = self._line_of(policy_at) if policy_at is not None else 0
            ext = (policy_at, policy_at + 1, line) if policy_at is not None else (b.span.end_pos, b.span.end_pos, 0)
            entries.append((ext, f"on_exhaust = {b.on_exhaust}"))
        split_at = self.find(r"split\b", head_end, b.span.end_pos) if getattr(b, "split", None) else None
        if split_at is not None:
            entries.append(((split_at, split_at + 1, self._line_of(split_at)), f"split = {b.split}"))
        ordered = sorted(range(len(entries)), key=lambda i: entries[i][0][0])
        shares, tail = _split(inner, [entries[i][0] for i in ordered])
        share_of = dict(zip(ordered, shares, strict=True))
        if not entries and not tail:
            self.emit(0, f"budget {scope} {{}}")
            self.trail(share.trailing)
            return
        self.emit(0, f"budget {scope} {{")
        first = entries[ordered[0]][0][0] if entries else None
        if entries and share_of[ordered[0]].leading:
            s0 = share_of[ordered[0]]
            s0.leading = self.header_trail(s0.leading, b.span.line, first)
        for i, (_, text) in enumerate(entries):
            s = share_of[i]
            self.own_line(1, s.leading + s.inner)
            self.emit(1, text)
            self.trail(s.trailing)
        self.own_line(1, tail)
        self.emit(0, "}")
        self.trail(share.trailing)

    def _line_of(self, pos: int) -> int:
        assert self.source is not None
        return self.source.count("\n", 0, pos) + 1

    # ------------------------------------------------------------ strategies

    def strategy(self, s: ast.Strategy, share: _Share) -> None:
        inputs = ", ".join(f"{i.name}: {self._type(i.type)}" for i in s.inputs)
        body_open = self.find(r"\{", s.returns.span.end_pos, s.span.end_pos)
        head_end = body_open + 1 if body_open is not None else s.returns.span.end_pos
        self.own_line(0, [c for c in share.inner if c.span.start_pos < head_end])
        inner = [c for c in share.inner if c.span.start_pos >= head_end]
        header = f"strategy {s.name}({inputs}) -> {self._type(s.returns)} {{"
        if s.docstring is None and not s.body and not inner:
            self.emit(0, header + "}")
        else:
            self.emit(0, header)
            first = s.body[0].span.start_pos if s.body else None
            inner = self.header_trail(inner, s.returns.span.end_line, first)
            if s.docstring is not None:
                self.emit(1, docstring_literal(s.docstring))
            self.block(s.body, inner, 1)
            self.emit(0, "}")
        self.trail(share.trailing)

    def _type(self, t: ast.TypeRef) -> str:
        return t.name if t.max_len is None else f"{t.name}[<={t.max_len}]"

    # ------------------------------------------------------------ statements

    def block(self, stmts: Sequence[Any], comments: list[ast.Comment], depth: int, header_line: int | None = None) -> None:
        """Statements and their comments; comments after the last statement stay before the closing brace."""
        comments = self.header_trail(comments, header_line, stmts[0].span.start_pos if stmts else None)
        shares, tail = _split(comments, [_extent(st) for st in stmts])
        prev_end = None
        for st, share in zip(stmts, shares, strict=True):
            first = share.leading[0].span.line if share.leading else st.span.line
            if prev_end is not None and first - prev_end >= 2:
                self.blank()
            self.leading(depth, share.leading, st.span.start_pos)
            self.stmt(st, share, depth)
            prev_end = st.span.end_line
        if tail and prev_end is not None and tail[0].span.line - prev_end >= 2:
            self.blank()
        self.own_line(depth, tail)

    def stmt(self, st: Any, share: _Share, depth: int) -> None:
        if isinstance(st, ast.If):
            self.if_stmt(st, share.inner, depth, "")
        elif isinstance(st, ast.Repeat):
            self.repeat(st, share.inner, depth)
        else:
            self.own_line(depth, share.inner)
            if isinstance(st, ast.Assign):
                self.emit(depth, f"{st.target} = {expr(st.value)}")
            elif isinstance(st, ast.Return):
                self.emit(depth, f"return {expr(st.value)}")
            elif isinstance(st, ast.Break):
                self.emit(depth, "break")
            else:
                raise TypeError(f"not a statement: {type(st).__name__}")
        self.trail(share.trailing)

    def if_stmt(self, st: ast.If, inner: list[ast.Comment], depth: int, prefix: str) -> None:
        """`if` (or `} else if` when `prefix` is `} else `): header comments go before the line."""
        cond_end = st.cond.span.end_pos
        self.own_line(depth + (1 if prefix else 0), [c for c in inner if c.span.start_pos < cond_end])
        rest = [c for c in inner if c.span.start_pos >= cond_end]
        else_start = st.orelse[0].span.start_pos if st.orelse else None
        then_close = self._close_after(st.then, cond_end, else_start) if st.orelse else st.span.end_pos - 1
        then_comments = [c for c in rest if then_close is None or c.span.start_pos < then_close]
        else_comments = [c for c in rest if then_close is not None and c.span.start_pos >= then_close]
        # `else { if ... }` prints as `else if ...` unless a comment sits in the else block outside the inner if.
        nested = st.orelse[0] if len(st.orelse) == 1 and isinstance(st.orelse[0], ast.If) else None
        chain = nested is not None and all(
            nested.span.start_pos <= c.span.start_pos < nested.span.end_pos for c in else_comments
        )
        self.emit(depth, f"{prefix}if {expr(st.cond)} {{")
        if not st.then and not then_comments and not st.orelse:
            self.lines[-1] += "}"
            return
        self.block(st.then, then_comments, depth + 1, st.cond.span.end_line)
        if not st.orelse:
            self.emit(depth, "}")
            return
        if chain:
            self.if_stmt(st.orelse[0], else_comments, depth, "} else ")
            return
        self.emit(depth, "} else {")
        else_line = self._line_of(then_close) if then_close is not None and self.source is not None else None
        self.block(st.orelse, else_comments, depth + 1, else_line)
        self.emit(depth, "}")

    def _close_after(self, stmts: Sequence[Any], start: int, limit: int | None) -> int | None:
        """Position of the `}` that closes a block whose statements are `stmts` (found in the source)."""
        after = stmts[-1].span.end_pos if stmts else start
        end = limit if limit is not None else len(self.source or "")
        found = self.find(r"\}", after, end)
        return found if found is not None else limit

    def repeat(self, st: ast.Repeat, inner: list[ast.Comment], depth: int) -> None:
        count_end = st.count.span.end_pos
        self.own_line(depth, [c for c in inner if c.span.start_pos < count_end])
        rest = [c for c in inner if c.span.start_pos >= count_end]
        self.emit(depth, f"repeat {expr(st.count)} {{")
        if st.until is None:
            self.block(st.body, rest, depth + 1, st.count.span.end_line)
            self.emit(depth, "}")
            return
        close = self._close_after(st.body, count_end, st.until.span.start_pos)
        body_comments = [c for c in rest if close is None or c.span.start_pos < close]
        until_comments = [c for c in rest if close is not None and c.span.start_pos >= close]
        self.block(st.body, body_comments + until_comments, depth + 1, st.count.span.end_line)
        self.emit(depth, f"}} until {expr(st.until)}")
