"""Syntax errors in words: a parse failure -> one `Diagnostic`.

The parser reports a failure as the token that did not fit, the set of
terminal names that would have, and its value stack. Users see none of that:
terminals become words (`a name`, `` `{` ``, `an expression`), and common
mistakes get a name and a fix (`=` for `==`, a missing `{` or `}`, Python's
`def` and `:`...).

Mistakes are recognised from the expected set and the parser's value stack
rather than with Lark's `UnexpectedInput.match_examples`: that re-parses
every example on every error and matches on parser state and stack depth, so
the same mistake one block deeper, or after `a.b` instead of `a`, would not
be recognised, and the robustness fuzzer hits this path thousands of times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ttcl.compiler import ast
from ttcl.compiler.diagnostics import Diagnostic, SyntaxDiagnosticError, closest
from ttcl.compiler.parse import ParseFailure, reserved_words, tables
from ttcl.compiler.parse_lex import BadCharacter, ParseState, Tok, token_span

_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of statement (newline or `;`)",
    "$END": "end of file",
}
_EXPR_START_WORDS = {"(", "[", "-", "not", "true", "false", "budget"}
_OPERATORS = {"+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "and", "or"}
_DECLS = ("import", "model", "verifier", "param", "extract", "budget", "strategy")
_PY_DEFS = {"def", "fn", "func", "function", "class", "let", "var", "const"}
_PY_LOOPS = {"for", "while", "loop"}
_STATEMENT_WORDS = ("return", "repeat", "if", "else", "until")
_DECLARATION_HINT = "a declaration (`" + "`, `".join(_DECLS) + "`)"


def _terminal_values() -> dict[str, str]:
    return tables().literals


def _expression_start() -> set[str]:
    """The terminals that can begin an expression."""
    values = _terminal_values()
    return {"NAME", "NUMBER", "STRING"} | {n for n, v in values.items() if v in _EXPR_START_WORDS}


def describe_expected(names: Iterable[str]) -> str:
    """Terminal names -> a readable list, with expression starts and operators grouped."""
    values = _terminal_values()
    names = {n for n in names if n not in ("COMMENT", "SEMICOLON")}
    words: list[str] = []
    decls = {n for n in names if values.get(n) in _DECLS}
    if len(decls) == len(_DECLS):
        names -= decls
        words.append(_DECLARATION_HINT)
    expr_start = _expression_start()
    if expr_start <= names:
        names -= expr_start
        words.append("an expression")
    ops = {n for n in names if values.get(n) in _OPERATORS}
    if len(ops) >= 6:
        names -= ops
        words.append("an operator")
    for name in sorted(names, key=lambda n: (n not in _WORDS, values.get(n, n))):
        if name in _WORDS:
            words.insert(0 if name == "_NL" else len(words), _WORDS[name])
        elif name in values:
            words.append(f"`{values[name]}`")
        else:
            words.append(name.lower())
    unique = list(dict.fromkeys(words))
    if len(unique) <= 1:
        return "".join(unique)
    return ", ".join(unique[:-1]) + " or " + unique[-1]


def _describe_token(tok: Tok) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "`;`" if tok.value == ";" else "end of line"
    text = str(tok.value)
    if tok.type == "STRING":
        return "string " + (text if len(text) <= 24 else text[:20] + '..."')
    return f"`{text}`"


def _end_of_file(source: str, file: str) -> ast.Span:
    """The position just after the last non-blank character: where a missing `}` belongs."""
    body = source.rstrip()
    line = body.count("\n") + 1
    column = len(body) - (body.rfind("\n") + 1) + 1
    return ast.Span(file=file, line=line, column=column, end_line=line, end_column=column + 1,
                    start_pos=len(body), end_pos=len(body))


def display_source(source: str) -> str:
    """The source as diagnostics show it: control characters (and line breaks other than
    `\n`, which would shift line numbers) become U+FFFD, one for one, so columns stay right."""
    text = source.replace("\r\n", "\n")
    if text.isprintable() or all(ch.isprintable() or ch in "\n\t" for ch in text):
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "\ufffd" for ch in text)


def _diag(span: ast.Span, message: str, expected: str | None = None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(span=span, message=message, expected=expected, hint=hint, code="E001")


def bad_character(e: BadCharacter, source: str, state: ParseState) -> SyntaxDiagnosticError:
    """No token starts here: an unclosed string or a stray character."""
    return SyntaxDiagnosticError([_bad_character(e, source, state.file)], {state.file: display_source(source)})


def _bad_character(e: BadCharacter, source: str, file: str) -> Diagnostic:
    pos, line, column = e.pos, e.line, e.column
    char = source[pos] if 0 <= pos < len(source) else ""
    if char == '"':
        if source[max(0, pos - 2) : pos + 1] == '"""':
            pos, column = pos - 2, column - 2
            return _diag(
                ast.Span(file=file, line=line, column=column, end_line=line, end_column=column + 3,
                         start_pos=pos, end_pos=pos + 3),
                "unclosed string", expected='`"""` to close the string', hint='a `"""` string ends with `"""`',
            )
        rest = source[pos:].split("\n", 1)[0]
        return _diag(
            ast.Span(file=file, line=line, column=column, end_line=line, end_column=column + len(rest),
                     start_pos=pos, end_pos=pos + len(rest)),
            "unclosed string", expected='`"` before the end of the line',
            hint='close the string on the same line; use `"""..."""` for text over several lines or `\\n` for a newline',
        )
    shown = char if char.isprintable() else repr(char)[1:-1]
    span = ast.Span(file=file, line=line, column=column, end_line=line, end_column=column + 1,
                    start_pos=pos, end_pos=pos + 1)
    hint = None
    if char == "'":
        hint = 'strings use double quotes: "..."'
    elif char in "&|!":
        hint = "write `and`, `or`, `not`; `!=` compares"
    elif char == "%":
        hint = "ttcl has `+ - * /` only"
    return _diag(span, f"unexpected character `{shown}`", expected=describe_expected(expected_after(e.states)) if e.states else None, hint=hint)


def expected_after(states: list[int]) -> set[str]:
    """The terminals the parser would accept next, given its state stack.

    A terminal listed in the top state's row may still fail after the
    reductions it triggers (LALR merges lookaheads), so each is tried on a copy.
    """
    t = tables()
    return {term for term in t.actions[states[-1]] if term.isupper() and _accepts(states, term)}


def _accepts(states: list[int], term: str) -> bool:
    t = tables()
    stack = list(states)
    while True:
        action = t.actions[stack[-1]].get(term)
        if action is None:
            return False
        if type(action) is int:
            return True
        size, goto = action[0], action[1]
        if size:
            del stack[-size:]
        stack.append(t.actions[stack[-1]][goto])
        if term == "$END" and stack[-1] == t.end:
            return True


def unexpected_token(e: ParseFailure, source: str, state: ParseState) -> SyntaxDiagnosticError:
    """A token that does not fit the grammar where it stands."""
    return SyntaxDiagnosticError([_unexpected_token(e, source, state)], {state.file: display_source(source)})


_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_BARE_CR = re.compile(r"\r(?!\n)")
_BARE_CR_HINT = "save the file with LF or CRLF line ends (for example `tr '\\r' '\\n' < old.ttc > new.ttc`)"


def _compares_before(source: str, tok: Tok) -> bool:
    """Whether the line holds a comparison before `tok` (outside strings): `0 < a < 5` is a chain."""
    lines = source.splitlines()
    line = lines[tok.line - 1][: tok.column - 1] if tok.line <= len(lines) else ""
    line = re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)
    return re.search(r"<|>|==|!=", line) is not None


def _starts_statement(source: str, tok: Tok) -> bool:
    """Whether `tok` is the first word of its statement (after indentation, `{` or `;`)."""
    lines = source.splitlines()
    before = lines[tok.line - 1][: tok.column - 1].rstrip() if tok.line <= len(lines) else ""
    return before == "" or before.endswith(("{", ";"))


_PY_STRING_PREFIXES = ("f", "r", "b", "u", "rf", "fr", "br", "rb")  # Python's, not ttcl's


def _unexpected_token(e: ParseFailure, source: str, state: ParseState) -> Diagnostic:
    tok, prev, file = e.tok, e.prev, state.file
    expected = expected_after(e.states)
    words = describe_expected(expected)
    at_eof = tok.type == "$END"
    span = _end_of_file(source, file) if at_eof else token_span(tok, file)
    value = tok.value
    prev_value = prev.value if prev is not None else ""
    prev_is_name = prev is not None and prev.type == "NAME"
    reserved = reserved_words()

    def named(message: str, expected_text: str | None = words, hint: str | None = None, where: ast.Span = span) -> Diagnostic:
        return _diag(where, message, expected=expected_text or None, hint=hint)

    if _BARE_CR.search(source, 0, tok.start_pos if not at_eof else len(source)):
        return named(f"unexpected {_describe_token(tok)}: this file's lines end with a bare carriage return (CR, "
                     "as on classic Mac OS), which ttcl does not read as a line end", hint=_BARE_CR_HINT)

    if "TTCL" in expected:
        return named("missing version header `ttcl 1`", "`ttcl 1` as the first line", "start the file with the line `ttcl 1`")
    if state.open_brackets and (at_eof or tok.type in ("RBRACE", "LBRACE")):
        bracket = state.open_brackets[-1]
        closer = ")" if bracket.value == "(" else "]"
        return named(f"unclosed `{bracket.value}`", f"`{closer}`", f"add `{closer}` to close it",
                     where=token_span(bracket, file))
    if state.open_brackets and prev is not None and not at_eof and tok.line > prev.end_line:
        bracket = state.open_brackets[-1]  # newlines inside brackets are not separators: it ran on past its line
        closer = ")" if bracket.value == "(" else "]"
        if ("RPAR" if closer == ")" else "RSQB") in expected:
            where = f"{bracket.line}:{bracket.column}"
            return named(f"unexpected {_describe_token(tok)} while the `{bracket.value}` at {where} is still open",
                         hint=f"add `{closer}` to close the `{bracket.value}` at {where}"
                         + (", or a `,` before this line if the list goes on" if "COMMA" in expected else ""))
    if at_eof and "RBRACE" in expected and state.open_braces:
        return named("missing `}`: this block is not closed before the end of the file", "`}`",
                     "add `}` to close the block", where=token_span(state.open_braces[-1], file))
    # a word that can begin an expression (`not`, `true`, `budget`) is misused as a name only where no expression
    # may begin: where one may, the error is elsewhere
    if value in reserved and tok.type != "NAME" and "NAME" in expected and (
            value not in _EXPR_START_WORDS or "NUMBER" not in expected):
        return named(f"`{value}` is a reserved word and cannot be used as a name", hint=f"choose another name, such as `{value}_`")
    if prev is not None and prev_value in reserved and tok.type == "EQUAL" and prev_value not in ("true", "false", "auto"):
        return named(f"`{prev_value}` is a reserved word and cannot be used as a name",
                     hint=f"choose another name, such as `{prev_value}_`", where=token_span(prev, file))
    if tok.type == "EQUAL" and any(_terminal_values().get(n) == "==" for n in expected):
        return named("`=` assigns a name; a comparison uses `==`", hint="write `==` to compare")
    if value == ":" and "LBRACE" in expected:
        return named("blocks are written in braces, not with `:`", "`{`",
                     "write `if cond { ... }`; indentation has no meaning in ttcl")
    if prev is not None and prev.type == "REPEAT" and tok.type in ("LBRACE", "_NL", "$END"):
        return named("`repeat` needs a count", "a count, as in `repeat 3 {` or `repeat n {`",
                     "a loop needs a bound known before the run: a literal, a param, or arithmetic on those")
    if prev is not None and prev.type in ("IF", "UNTIL") and tok.type in ("LBRACE", "_NL", "$END"):
        return named(f"`{prev_value}` needs a condition", "an expression")
    if tok.type == "NAME" and value in _PY_DEFS and "STRATEGY" in expected:
        return named(f"ttcl has no `{value}`", _DECLARATION_HINT,
                     "declare a strategy with `strategy name(input: text) -> answer { ... }`")
    if tok.type == "NAME" and "STRATEGY" in expected and (word := closest(str(value), _DECLS)):
        return named(f"unexpected {_describe_token(tok)}", hint=f"did you mean `{word}`?")
    if prev_is_name and prev is not None and "EQUAL" in expected and _starts_statement(source, prev) and (
            word := closest(str(prev_value), _STATEMENT_WORDS)):  # `retrun vote(d)`, `repet 3 {`
        return named(f"unexpected {_describe_token(tok)} after `{prev_value}`", hint=f"did you mean `{word}`?",
                     where=token_span(prev, file))
    if prev_is_name and prev_value in _PY_LOOPS and prev is not None:
        return named(f"ttcl has no `{prev_value}` loop", None, "write a bounded loop: `repeat K { ... } until cond`",
                     where=token_span(prev, file))
    if tok.type == "NAME" and value == "elif" or prev_is_name and prev_value == "elif" and prev is not None:
        where = span if value == "elif" else token_span(prev, file)  # type: ignore[arg-type]
        return named("ttcl has no `elif`", None, "write `else if cond { ... }`", where=where)
    if tok.type == "STRING" and prev_is_name and prev is not None and prev_value.lower() in _PY_STRING_PREFIXES \
            and prev.end_pos == tok.start_pos:  # `f"{question}\n"`: a Python f-string (QA pass: no hint)
        return named(f"ttcl strings have no `{prev_value}` prefix", None,
                     "write the string without it: every string is a template, `\"{question}\\n\"` fills in "
                     "`question`", where=token_span(prev, file))
    if value in _COMPARISONS and not at_eof and _compares_before(source, tok):
        return named(f"unexpected {_describe_token(tok)}: comparisons do not chain", hint="write `a < b and b < c`")
    if "LBRACE" in expected and tok.type in ("_NL", "$END", "RBRACE"):
        return named("missing `{` to open a block", hint="write the block as `{ ... }`")
    if prev_is_name and prev is not None and "EQUAL" in expected and tok.type in ("_NL", "RBRACE", "$END") and \
            _starts_statement(source, prev):  # `oops` on a line of its own (QA pass: "unmatched `}`" after it)
        return named(f"`{prev_value}` alone is not a statement", hint=f"assign it (`{prev_value} = ...`), return it, "
                     "or remove it", where=token_span(prev, file))
    if tok.type == "RBRACE" and tok.start_pos in state.stray_braces:  # (the layout pass has popped a matched one)
        return named("unmatched `}`", hint="remove it, or add the `{` it closes")
    if tok.type == "STRING" and value.startswith('"""') and "_NL" in expected:
        return named(f"unexpected {_describe_token(tok)}",
                     hint="a docstring goes right after `ttcl 1` or first in a strategy body")
    if "_NL" in expected and not at_eof and tok.type != "_NL":
        return named(f"unexpected {_describe_token(tok)}", hint="put one statement per line, or separate them with `;`")
    return named(f"unexpected {_describe_token(tok)}")
