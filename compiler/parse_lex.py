"""Lexical layer of the front end: tokens, layout, numbers and strings.

The terminals are those of `grammar/ttcl.lark`; `Lexer` compiles them into
one regular expression (every quoted word of the grammar becomes a reserved
keyword). `layout` then turns newlines and `;` into one statement separator,
drops separators where layout has no meaning (inside brackets, around braces,
before `else`/`until`), records comments for `fmt` and validates number
spellings, so the grammar stays small. The string helpers decode escapes
and split prompt templates into parts with exact spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException, Underflow, localcontext

from ttcl.compiler import ast

# The deepest nesting of expressions and blocks a program may have. Later
# passes recurse over the tree; this keeps them far from Python's stack limit.
MAX_DEPTH = 64
MAX_ELSE_IF_ARMS = 1024  # an `if ... else if ...` chain is flat, but later passes walk it recursively

_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)([A-Za-z0-9_]*)")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_OPEN = frozenset({"LPAR", "LSQB"})
_CLOSE = frozenset({"RPAR", "RSQB"})
# A separator right before one of these is layout, not the end of a statement.
_NO_SEP_BEFORE = frozenset({"RBRACE", "LBRACE", "ELSE", "UNTIL"})
# Regex terminals, tried in this order before the punctuation.
_REGEX_ORDER = ("STRING", "NUMBER", "NAME", "COMMENT", "_NL")


class Tok:
    """One token: its terminal name, text and place (the attributes Lark's Token has)."""

    __slots__ = ("type", "value", "start_pos", "end_pos", "line", "column", "end_line", "end_column")

    def __init__(self, type: str, value: str, start_pos: int, end_pos: int, line: int, column: int,
                 end_line: int, end_column: int):
        self.type = type
        self.value = value
        self.start_pos = start_pos
        self.end_pos = end_pos
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column

    def __repr__(self) -> str:
        return f"Tok({self.type}, {self.value!r}, {self.line}:{self.column})"


class LexicalError(Exception):
    """A bad token or construct found while building the tree; `parse` turns it into a diagnostic."""

    def __init__(self, message: str, span: ast.Span, expected: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.expected = expected
        self.hint = hint


class BadCharacter(Exception):
    """No terminal matches at `pos`: a stray character or an unclosed string."""

    def __init__(self, pos: int, line: int, column: int):
        super().__init__(f"bad character at {line}:{column}")
        self.pos = pos
        self.line = line
        self.column = column
        self.states: list[int] = []  # the parser's state stack, set by the parser


@dataclass
class ParseState:
    """What one parse collects besides the tree."""

    file: str
    comments: list[Tok] = field(default_factory=list)
    open_braces: list[Tok] = field(default_factory=list)
    open_brackets: list[Tok] = field(default_factory=list)
    stray_braces: set[int] = field(default_factory=set)  # where each `}` that closes no `{` starts


def token_span(tok: Tok, file: str) -> ast.Span:
    """The span of one token."""
    return ast.Span.model_construct(
        file=file, line=tok.line, column=tok.column, end_line=tok.end_line, end_column=tok.end_column,
        start_pos=tok.start_pos, end_pos=tok.end_pos,
    )


class Lexer:
    """All terminals of the grammar as one regular expression; keywords come back from NAME."""

    def __init__(self, terminals: Iterable[tuple[str, str, bool]], ignore: Iterable[str]):
        """`terminals` holds (name, regex, is_literal) triples; `ignore` names skipped terminals."""
        ignore = set(ignore)
        regexes: dict[str, str] = {}
        literals: list[tuple[str, str]] = []
        self.keywords: dict[str, str] = {}
        for name, pattern, is_literal in terminals:
            if is_literal:
                literals.append((name, pattern))
            else:
                regexes[name] = pattern
        name_re = re.compile(regexes["NAME"])
        punct: list[tuple[str, str]] = []
        for name, value in literals:
            if name_re.fullmatch(value):
                self.keywords[value] = name
            else:
                punct.append((name, value))
        punct.sort(key=lambda p: -len(p[1]))
        order = [n for n in _REGEX_ORDER if n in regexes] + sorted(set(regexes) - set(_REGEX_ORDER) - ignore)
        groups = [f"(?P<{n}>{regexes[n]})" for n in order]
        groups += [f"(?P<{n}>{re.escape(v)})" for n, v in punct]
        # Blanks before a token are matched with it, so they cost no extra round of the loop.
        blank = "|".join(f"(?:{regexes[n]})" for n in sorted(ignore)) or "(?!)"
        # Possessive (`*+`): a run of blanks is never backtracked into, so no input is slow to reject.
        self.blank = re.compile(f"(?:{blank})*+")
        self.master = re.compile(f"(?:{blank})*+(?:" + "|".join(groups) + ")")

    def lex(self, text: str) -> Iterator[Tok]:
        match = self.master.match
        keywords = self.keywords
        pos, line, line_start, end = 0, 1, 0, len(text)
        while pos < end:
            m = match(text, pos)
            if m is None:
                pos = self.blank.match(text, pos).end()  # type: ignore[union-attr]
                if pos >= end:
                    return
                raise BadCharacter(pos, line, pos - line_start + 1)
            kind = m.lastgroup
            pos = m.start(kind)  # type: ignore[arg-type]
            stop = m.end()
            value = text[pos:stop]
            if kind == "NAME":
                kind = keywords.get(value, "NAME")
            elif kind == "_NL":
                yield Tok("_NL", value, pos, stop, line, pos - line_start + 1, line, pos - line_start + 2)
                line += 1
                line_start = stop
                pos = stop
                continue
            elif kind == "STRING" and "\n" in value:
                nl = value.count("\n")
                new_start = pos + value.rfind("\n") + 1
                yield Tok(kind, value, pos, stop, line, pos - line_start + 1, line + nl, stop - new_start + 1)  # type: ignore[arg-type]
                line += nl
                line_start = new_start
                pos = stop
                continue
            yield Tok(kind, value, pos, stop, line, pos - line_start + 1, line, stop - line_start + 1)  # type: ignore[arg-type]
            pos = stop


def layout(tokens: Iterator[Tok], state: ParseState) -> Iterator[Tok]:
    """Separators, comments and number checks (see the grammar's header)."""
    pending: Tok | None = None
    prev = "LBRACE"  # the start of the file behaves like the start of a block
    comments = state.comments
    braces = state.open_braces
    brackets = state.open_brackets
    for tok in tokens:
        kind = tok.type
        if kind == "COMMENT":
            comments.append(tok)
            continue
        if kind == "_NL" or (kind == "SEMICOLON" and not brackets):
            if not brackets and pending is None and prev != "LBRACE":
                pending = tok
                tok.type = "_NL"
            continue
        if kind == "NUMBER":
            check_number(tok, state.file)
        elif kind in _OPEN:
            brackets.append(tok)
            if len(brackets) > MAX_DEPTH:
                raise LexicalError(
                    f"brackets nested more than {MAX_DEPTH} deep", token_span(tok, state.file),
                    hint="split the expression into named steps",
                )
        elif kind in _CLOSE:
            if brackets:
                brackets.pop()
        elif kind == "LBRACE":
            braces.append(tok)
        elif kind == "RBRACE":
            if braces:
                braces.pop()
            else:
                state.stray_braces.add(tok.start_pos)
        if pending is not None:
            if kind not in _NO_SEP_BEFORE:
                yield pending
            pending = None
        yield tok
        prev = kind


# ---------------------------------------------------------------- numbers


def check_number(tok: Tok, file: str) -> None:
    """Reject suffixes other than k/M/G/T and values too large for a float."""
    match = _NUMBER_RE.fullmatch(tok.value)
    span = token_span(tok, file)
    if match is None or match.group(2) not in _SUFFIXES:
        suffix = match.group(2) if match else tok.value
        raise LexicalError(
            f"bad number suffix `{suffix}` in `{tok.value}`", span,
            expected="a number such as `16`, `0.8`, `2e12`, or one with a suffix k, M, G or T (`8k`, `2.5M`)",
            hint="the suffixes are k (1e3), M (1e6), G (1e9) and T (1e12), case-sensitive",
        )
    value = number_value(tok.value)[0]
    shown = tok.value if len(tok.value) <= 40 else f"{tok.value[:40]}... ({len(tok.value)} characters)"
    if value == float("inf"):
        raise LexicalError(f"number `{shown}` is too large", span,
                           hint="numbers must fit a 64-bit float (below about 1.8e308)")
    if value == 0 and re.search(r"[1-9]", re.split(r"[eE]", match.group(1))[0]):
        # `flops <= 1e-400` was read as 0 without a word (QA pass)
        raise LexicalError(f"number `{shown}` is too small: a 64-bit float reads it as 0", span,
                           hint="write 0 if 0 is meant; a nonzero number must be at least about 5e-324")


def number_value(text: str) -> tuple[float, bool]:
    """(value, is_int) of a number spelling accepted by `check_number`.

    A literal is an integer when it has no fraction and no exponent, or when it
    carries a suffix and its value is whole (`2.5k` is 2500).
    """
    match = _NUMBER_RE.fullmatch(text)
    if match is None or match.group(2) not in _SUFFIXES:
        return float("nan"), False
    mantissa, suffix = match.group(1), match.group(2)
    if not suffix and mantissa.isdigit() and len(mantissa) < 16:
        return float(int(mantissa)), True
    try:
        with localcontext() as ctx:  # Overflow and InvalidOperation trap by default; Underflow too, here
            ctx.traps[Underflow] = True
            exact = Decimal(mantissa) * _SUFFIXES[suffix]
            whole = exact == exact.to_integral_value()
        value = float(exact)
    except Underflow:  # `1e-999999999k`: a float 0.0, and not a whole number
        return 0.0, False
    except (DecimalException, OverflowError):  # `9e999999k` overflows Decimal's own exponent range
        return float("inf"), False
    if value == float("inf"):
        return value, False
    plain = "." not in mantissa and "e" not in mantissa.lower()
    return value, plain or (bool(suffix) and whole)


# ---------------------------------------------------------------- strings


def decode_string(tok: Tok) -> tuple[str, int]:
    """The raw body of a string token (quotes removed) and the quote width (1 or 3)."""
    q = 3 if tok.value.startswith('"""') and len(tok.value) >= 6 else 1
    return tok.value[q:-q], q


def unescape(raw: str) -> str:
    r"""Decode `\n \t \" \\`; any other backslash stays as written (so a regex's `\d` reads naturally)."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _advance(line: int, col: int, text: str) -> tuple[int, int]:
    nl = text.count("\n")
    if nl:
        return line + nl, len(text) - text.rfind("\n")
    return line, col + len(text)


class _Spans:
    """Spans of slices of a string token's body."""

    def __init__(self, tok: Tok, q: int, raw: str, file: str):
        self.raw = raw
        self.file = file
        self.base_pos = tok.start_pos + q
        self.base_line = tok.line
        self.base_col = tok.column + q
        self._at, self._line, self._col = 0, self.base_line, self.base_col  # the last start asked for

    def __call__(self, a: int, b: int) -> ast.Span:
        if a < self._at:  # parts are asked for in order; advancing from the last one keeps a template linear
            self._at, self._line, self._col = 0, self.base_line, self.base_col
        line, col = _advance(self._line, self._col, self.raw[self._at:a])
        self._at, self._line, self._col = a, line, col
        end_line, end_col = _advance(line, col, self.raw[a:b])
        return ast.Span.model_construct(
            file=self.file, line=line, column=col, end_line=end_line, end_column=end_col,
            start_pos=self.base_pos + a, end_pos=self.base_pos + b,
        )


def template_parts(tok: Tok, file: str) -> list[ast.TemplateText | ast.TemplateField]:
    """Split a string literal into literal text and `{field}` parts, each with its own span."""
    raw, q = decode_string(tok)
    span = _Spans(tok, q, raw, file)
    if "{" not in raw and "}" not in raw:
        if not raw:
            return []
        return [ast.TemplateText.model_construct(span=span(0, len(raw)), text=unescape(raw))]
    parts: list[ast.TemplateText | ast.TemplateField] = []
    text: list[str] = []
    text_start = 0
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if not text:
            text_start = i
        if ch == "\\" and i + 1 < n and raw[i + 1] in _ESCAPES:
            text.append(_ESCAPES[raw[i + 1]])
            i += 2
        elif ch in "{}" and raw.startswith(ch * 2, i):
            text.append(ch)
            i += 2
        elif ch == "{":
            close = raw.find("}", i + 1)
            body = raw[i + 1 : close] if close != -1 else ""
            if close == -1 or not _FIELD_RE.fullmatch(body):
                end = close + 1 if close != -1 and "\n" not in body else i + 1
                spaced = close != -1 and body.strip() != body and _FIELD_RE.fullmatch(body.strip())
                raise LexicalError(
                    "bad template field in string", span(i, end),
                    expected="a field such as `{question}` or `{c.text}`",
                    # `{question }` (QA pass: told only about literal braces)
                    hint=f"a field has no spaces: write `{{{body.strip()}}}`" if spaced
                    else "write `{{` and `}}` for literal braces",
                )
            if text:
                parts.append(ast.TemplateText.model_construct(span=span(text_start, i), text="".join(text)))
                text = []
            parts.append(ast.TemplateField.model_construct(span=span(i, close + 1), path=body.split(".")))
            i = close + 1
        elif ch == "}":
            raise LexicalError(
                "single `}` in string", span(i, i + 1),
                expected="`}}` for a literal brace, or a field such as `{question}`",
                hint="write `}}` for a literal brace",
            )
        else:
            text.append(ch)
            i += 1
    if text:
        parts.append(ast.TemplateText.model_construct(span=span(text_start, n), text="".join(text)))
    return parts
