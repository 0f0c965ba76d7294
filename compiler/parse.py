"""Front end: .ttc source text -> typed AST (`ttcl.compiler.ast.Module`).

`parse(source, file)` is the one entry point; every failure on bad input is a
`SyntaxDiagnosticError` (worded by `parse_errors`), never another exception.

Lark compiles `grammar/ttcl.lark` into LALR(1) tables once (and caches them
on disk). The tables are then driven here, with one reduce callback per rule
that builds the AST node directly and computes its span from the first and
last token of the rule. That is Lark's own algorithm without the generic
parse tree, position propagation and transformer pass, which cost four
times as much as the parse itself and would break the 100 ms budget for
checking a 500-node program (see bench/).

Syntax only: names, types and budgets are checked by later passes. The few
words that are keywords in one place only (`per item`, budget units, type
names) are validated here, since the grammar reads them as names.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lark import Lark
from lark.parsers.lalr_analysis import Shift

from ttcl.compiler import ast
from ttcl.compiler.diagnostics import Diagnostic, DiagnosticError, SyntaxDiagnosticError
from ttcl.compiler.parse_build import Builder, Part
from ttcl.compiler.parse_lex import BadCharacter, Lexer, LexicalError, ParseState, Tok, layout


class ParseFailure(Exception):
    """The token `tok` does not fit after `prev`.

    `states` is the parser's state stack as it was when `tok` arrived, before
    any reduction it caused: LALR merges lookaheads, so only this stack tells
    exactly which terminals would have fitted (`parse_errors.expected_after`).
    """

    def __init__(self, tok: Tok, prev: Tok | None, states: list[int]):
        super().__init__(f"unexpected {tok.type}")
        self.tok = tok
        self.prev = prev
        self.states = states


@dataclass
class Tables:
    """Everything the driver needs from Lark, built once per process."""

    # state -> {terminal: action, nonterminal: goto state}. An action is the state to shift
    # to (an int) or a reduction (size, goto, mode, arg, flatten): how many stack values the
    # rule takes, the nonterminal it reduces to, and what it does with them. mode 0: hand up
    # child `arg` (a `?rule` with one meaningful child); 1: hand up the list (an inlined
    # `_rule`, flattened into its parent); 2: call the builder's handler named `arg`.
    actions: dict[int, dict[str, Any]]
    start: int
    end: int
    handler_names: frozenset[str]
    lexer: Lexer
    literals: dict[str, str]  # terminal name -> its literal text, for error messages
    # (state below, top state, lookahead) -> top state after a run of unit reductions; filled as met.
    unit_chains: dict[tuple[int, int, str], int] = field(default_factory=dict)


class _Keep:
    """A stand-in post-lexer so Lark keeps the layout terminals that no rule mentions."""

    always_accept = ("_NL", "SEMICOLON", "COMMENT")

    def process(self, stream: Iterator[Any]) -> Iterator[Any]:
        return stream


@functools.cache
def tables() -> Tables:
    """Grammar -> LALR tables, lexer and reduce plan; built once per process."""
    grammar = (importlib.resources.files("ttcl.grammar") / "ttcl.lark").read_text(encoding="utf-8")
    lark = Lark(grammar, parser="lalr", lexer="basic", postlex=_Keep(), maybe_placeholders=False, cache=True)
    table = lark.parser.parser.parser.parse_table
    plan: dict[Any, tuple[int, str, int, Any, bool]] = {}
    for rule in lark.rules:
        origin = rule.origin.name
        flatten = any(not s.is_term and s.name.startswith("_") for s in rule.expansion)
        index = _pass_index(rule)
        if index >= 0:
            mode, arg = 0, index
        elif origin.startswith("_") and not rule.alias:
            mode, arg = 1, None
        else:
            mode, arg = 2, rule.alias or origin
        plan[rule] = (len(rule.expansion), origin, mode, arg, flatten)
    terminals = [(t.name, t.pattern.to_regexp() if t.pattern.type == "re" else t.pattern.value, t.pattern.type == "str")
                 for t in lark.terminals]
    literals = {t.name: t.pattern.value for t in lark.terminals if t.pattern.type == "str"}
    actions = {
        state: {sym: (arg if what is Shift else plan[arg]) for sym, (what, arg) in row.items()}
        for state, row in table.states.items()
    }
    return Tables(
        actions=actions, start=table.start_states["start"], end=table.end_states["start"],
        handler_names=frozenset(p[3] for p in plan.values() if p[2] == 2),
        lexer=Lexer(terminals, lark.lexer_conf.ignore), literals=literals,
    )


def _pass_index(rule: Any) -> int:
    """Where the one kept child of a `?rule` alternative sits, as Lark's tree builder would see it."""
    if not rule.options.expand1 or rule.alias:
        return -1
    kept = [i for i, s in enumerate(rule.expansion)
            if not s.is_term or not (s.filter_out or s.name.startswith("_"))]
    return kept[0] if len(kept) == 1 else -1


def reserved_words() -> frozenset[str]:
    """Words that can never be a name: the quoted words of the grammar."""
    return frozenset(tables().lexer.keywords)


def _drive(tokens: Iterator[Tok], builder: Builder, t: Tables) -> Any:
    """The LALR(1) loop: shift tokens, reduce rules through the builder's handlers."""
    actions, end, chains = t.actions, t.end, t.unit_chains
    handlers = {name: getattr(builder, name) for name in t.handler_names}
    state_stack = [t.start]
    values: list[Any] = []
    last: Tok | None = None
    while True:
        try:
            tok = next(tokens, None)
        except BadCharacter as e:
            e.states = state_stack[:]
            raise
        if tok is None:
            pos = last.end_pos if last else 0
            line, col = (last.end_line, last.end_column) if last else (1, 1)
            tok = Tok("$END", "", pos, pos, line, col, line, col)
        kind = tok.type
        before = None
        while True:
            action = actions[state_stack[-1]].get(kind)
            if type(action) is int:
                state_stack.append(action)
                values.append(tok)
                break
            if action is None:
                raise ParseFailure(tok, last, before or state_stack)
            if before is None:
                before = state_stack[:]
            size, goto, mode, arg, flatten = action
            if mode == 0 and size == 1:
                # A unit rule of the precedence chain (`sum: product`): only the top state
                # changes, and the whole chain depends on (state below, top state, token).
                key = (state_stack[-2], state_stack[-1], kind)
                top = chains.get(key)
                if top is None:
                    below = key[0]
                    while True:
                        top = actions[below][goto]
                        nxt = actions[top].get(kind)
                        if nxt is None or type(nxt) is int or not (nxt[2] == 0 and nxt[0] == 1):
                            break
                        goto = nxt[1]
                    chains[key] = top
                state_stack[-1] = top
            else:
                if size:
                    children = values[-size:]
                    del values[-size:]
                    del state_stack[-size:]
                else:
                    children = []
                if flatten:
                    # A left-recursive list rule (`stmts: stmts _NL stmt`) gets its own list back
                    # first: grow it in place, or every statement would copy all the ones before it.
                    first = children[0] if mode == 1 and children else None
                    flat: list[Any] = first if type(first) is list else []
                    for child in children[1:] if flat is first else children:
                        if type(child) is list:
                            flat.extend(child)
                        else:
                            flat.append(child)
                    children = flat
                if mode == 0:
                    value = children[arg]
                elif mode == 1:
                    value = children
                else:
                    value = handlers[arg](children)
                state_stack.append(actions[state_stack[-1]][goto])
                values.append(value)
            if kind == "$END" and state_stack[-1] == end:
                return values[-1]
        last = tok


def parse(source: str, file: str = "<input>") -> ast.Module:
    """Parse one module. Raises `SyntaxDiagnosticError` (and nothing else) for bad input."""
    from ttcl.compiler import parse_errors

    t = tables()
    state = ParseState(file=file)
    builder = Builder(file)
    try:
        if not isinstance(source, str):
            raise TypeError(f"parse() takes the source text as str, not {type(source).__name__}")
        # a file saved with Windows line endings means what it means with Unix ones: no `\r` reaches a
        # prompt (a multi-line string kept it, changing the bound and the answers) or `ttcl fmt`'s output
        source = source.replace("\r\n", "\n")
        module = _drive(layout(t.lexer.lex(source), state), builder, t)
    except ParseFailure as e:
        raise parse_errors.unexpected_token(e, source, state) from None
    except BadCharacter as e:
        raise parse_errors.bad_character(e, source, state) from None
    except LexicalError as e:
        raise SyntaxDiagnosticError(
            [Diagnostic(span=e.span, message=e.message, expected=e.expected, hint=e.hint, code="E001")],
            {file: parse_errors.display_source(source)},
        ) from None
    except RecursionError:
        span = ast.Span(file=file, line=1, column=1, end_line=1, end_column=1)
        raise SyntaxDiagnosticError(
            [Diagnostic(span=span, message="program nested too deeply to parse", code="E001")],
            {file: parse_errors.display_source(source)},
        ) from None
    comments = [ast.Comment.model_construct(span=builder.span(c, c), text=c.value.rstrip()) for c in state.comments]
    return module.model_copy(update={"comments": comments})


def read_source(path: str | Path) -> str:
    """Read a .ttc file as `ttcl check` reads it (loader.read_program): the same checks, positions and messages.

    Raises SyntaxDiagnosticError at 1:1 for a file that cannot be read, or at the first byte that is not UTF-8.
    """
    from ttcl.compiler.loader import read_program

    try:
        return read_program(path)
    except DiagnosticError as e:
        raise SyntaxDiagnosticError(e.diagnostics, e.sources) from None


def parse_file(path: str | Path) -> ast.Module:
    """Read and parse a .ttc file; the file name in every span is `str(path)`."""
    return parse(read_source(path), file=str(path))


__all__ = ["parse", "parse_file", "read_source", "reserved_words", "tables", "ParseFailure", "Part"]
