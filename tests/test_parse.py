"""The parser: AST shape, exact spans, numbers, strings and templates, layout rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ttcl.compiler import ast
from ttcl.compiler.parse import parse, reserved_words
from ttcl.compiler.parse_lex import MAX_DEPTH

H = "ttcl 1\n"


def body(src: str) -> list:
    return parse(H + "strategy m(q: text) -> answer {\n" + src + "\n}\n").strategies[0].body


def expr(src: str):
    return body("    x = " + src)[0].value


def show(e) -> str:
    """A compact prefix form of an expression tree, to assert precedence."""
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Number):
        return e.text
    if isinstance(e, (ast.BinOp, ast.Compare, ast.BoolOp)):
        return f"({e.op} {show(e.left)} {show(e.right)})"
    if isinstance(e, ast.UnaryOp):
        return f"({e.op} {show(e.operand)})"
    if isinstance(e, ast.Call):
        return f"(call {show(e.func)}" + "".join(" " + show(a) for a in e.args) + "".join(
            f" {k.name}={show(k.value)}" for k in e.keywords) + ")"
    if isinstance(e, ast.Attribute):
        return f"(. {show(e.value)} {e.attr})"
    if isinstance(e, ast.Bool):
        return str(e.value).lower()
    raise AssertionError(type(e))


def span(node) -> tuple[int, int, int, int, int, int]:
    s = node.span
    return s.line, s.column, s.end_line, s.end_column, s.start_pos, s.end_pos


def test_reserved_words_are_the_grammar_keywords() -> None:
    grammar = (Path(__file__).parent.parent / "grammar" / "ttcl.lark").read_text()
    quoted = {w for w in re.findall(r'"([a-z_]+)"', grammar)}
    assert reserved_words() == quoted
    assert reserved_words() == set(
        "ttcl import as model verifier param auto in extract budget strategy return if else repeat until break "
        "and or not true false".split()
    )


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("a or b and not c < d + e * -f.g(h)", "(or a (and b (not (< c (+ d (* e (- (call (. f g) h))))))))"),
        ("a - b - c", "(- (- a b) c)"),
        ("a - (b - c)", "(- a (- b c))"),
        ("a / b * c", "(* (/ a b) c)"),
        ("not not a == b", "(not (not (== a b)))"),
        ("(a or b) and c", "(and (or a b) c)"),
        ("-a.b", "(- (. a b))"),
        ("-2 * 3", "(* (- 2) 3)"),
        ("f(a)(b = 1)", "(call (call f a) b=1)"),
        ("budget.left.flops", "(. (. budget left) flops)"),
        ("bon.main(q, n = 2 * n)", "(call (. bon main) q n=(* 2 n))"),
        ("true and false", "(and true false)"),
    ],
)
def test_precedence_and_associativity(source: str, tree: str) -> None:
    assert show(expr(source)) == tree


@pytest.mark.parametrize(
    ("text", "value", "is_int"),
    [
        ("16", 16.0, True), ("0.8", 0.8, False), ("2e12", 2e12, False), ("1.5e-3", 0.0015, False),
        ("8k", 8000.0, True), ("2.5M", 2_500_000.0, True), ("7G", 7e9, True), ("1T", 1e12, True),
        ("0.3k", 300.0, True), ("1.0005k", 1000.5, False), ("3E+2", 300.0, False),
    ],
)
def test_numbers(text: str, value: float, is_int: bool) -> None:
    n = expr(text)
    assert (n.value, n.text, n.is_int) == (value, text, is_int)


def test_spans_are_exact() -> None:
    source = H + (
        'model policy = "ttcl:arith-s"\n'
        "strategy main(question: text[<=256]) -> answer {\n"
        '    drafts = sample(policy, "Q: {question}", n = 4)\n'
        "    if count(drafts) > 1 {\n"
        "        return vote(drafts)\n"
        "    } else {\n"
        "        break\n"
        "    }\n"
        "}\n"
    )
    m = parse(source, "p.ttc")
    assert m.span.file == "p.ttc"
    assert span(m) == (1, 1, 10, 2, 0, 227)
    model = m.models[0]
    assert span(model) == (2, 1, 2, 30, 7, 36)
    s = m.strategies[0]
    assert span(s) == (3, 1, 10, 2, 37, 227)
    assert span(s.inputs[0]) == (3, 15, 3, 36, 51, 72)
    assert span(s.inputs[0].type) == (3, 25, 3, 36, 61, 72)
    assert span(s.returns) == (3, 41, 3, 47, 77, 83)
    assign, branch = s.body
    assert span(assign) == (4, 5, 4, 52, 90, 137)
    call = assign.value
    assert span(call) == (4, 14, 4, 52, 99, 137)
    assert span(call.func) == (4, 14, 4, 20, 99, 105)
    prompt = call.args[1]
    assert span(prompt) == (4, 29, 4, 44, 114, 129)
    text, field = prompt.parts
    assert (text.text, span(text)) == ("Q: ", (4, 30, 4, 33, 115, 118))
    assert (field.path, span(field)) == (["question"], (4, 33, 4, 43, 118, 128))
    assert span(call.keywords[0]) == (4, 46, 4, 51, 131, 136)
    assert span(branch) == (5, 5, 9, 6, 142, 225)
    assert span(branch.cond) == (5, 8, 5, 25, 145, 162)
    assert span(branch.then[0]) == (6, 9, 6, 28, 173, 192)
    assert span(branch.orelse[0]) == (8, 9, 8, 14, 214, 219)
    for node in (model, s, assign, call, prompt, field, branch):
        assert source[node.span.start_pos : node.span.end_pos].splitlines()[0] in source.splitlines()[node.span.line - 1]


def test_spans_of_multiline_strings_and_comments() -> None:
    m = parse(H + 'strategy m() -> answer {\n    x = """a\nb {c}"""  # note\n}\n')
    string = m.strategies[0].body[0].value
    assert span(string) == (3, 9, 4, 9, 40, 53)
    assert [p.text if isinstance(p, ast.TemplateText) else p.path for p in string.parts] == ["a\nb ", ["c"]]
    assert span(string.parts[1]) == (4, 3, 4, 6, 47, 50)
    assert [(c.text, span(c)) for c in m.comments] == [("# note", (4, 11, 4, 17, 55, 61))]


def test_declarations() -> None:
    m = parse(H + (
        '"""Module doc."""\n'
        'import "lib/bon.ttc" as bon\n'
        'model big = "/m" (params = 8G, n_layer = 32)\n'
        'verifier prm = prm("ttcl:arith-prm", agg = "min")\n'
        "param n: int = auto in 1..64\n"
        "param t: float = 0.8\n"
        'extract "(\\d+)"\n'
        "budget pooled { tokens <= 1M; on_exhaust = stop }\n"
    ))
    assert m.docstring == "Module doc."
    assert (m.imports[0].path, m.imports[0].alias) == ("lib/bon.ttc", "bon")
    assert [(k.name, k.value.value) for k in m.models[0].options] == [("params", 8e9), ("n_layer", 32.0)]
    assert m.verifiers[0].call.func.id == "prm"
    n, t = m.params
    assert isinstance(n.default, ast.Auto) and (n.low.value, n.high.value) == (1.0, 64.0)
    assert (t.type, t.default.value, t.low, t.high) == ("float", 0.8, None, None)
    assert m.extract.pattern == "(\\d+)"
    (b,) = m.budgets
    assert (b.scope, b.on_exhaust, [(lim.unit, lim.value.value) for lim in b.limits]) == ("pooled", "stop", [("tokens", 1e6)])


def test_layout_rules() -> None:
    stmts = body(
        "    x = f(a,\n          b)  # inside brackets newlines are layout\n"
        "    if x\n    {\n        y = 1; z = 2;\n    }\n    else\n    {\n    }\n"
        "    repeat 2 {\n        break\n    }\n    until x\n"
    )
    assert [type(s).__name__ for s in stmts] == ["Assign", "If", "Repeat"]
    assert [type(s).__name__ for s in stmts[1].then] == ["Assign", "Assign"]
    assert stmts[1].orelse == [] and stmts[2].until.id == "x"


def test_strategy_docstring_and_else_if() -> None:
    s = parse(H + 'strategy m() -> answer {\n    "Doc."\n    if a { } else if b { } else { return c }\n}\n').strategies[0]
    assert s.docstring == "Doc."
    (branch,) = s.body
    (inner,) = branch.orelse
    assert inner.cond.id == "b" and inner.orelse[0].value.id == "c"


def test_strings_and_escapes() -> None:
    e = expr('"a\\tb\\"c\\\\d \\d {{x}} {c.text}"')
    assert [p.text if isinstance(p, ast.TemplateText) else p.path for p in e.parts] == [
        'a\tb"c\\d \\d {x} ', ["c", "text"]]
    assert expr('""').parts == []


def test_soft_keywords_are_names() -> None:
    stmts = body("    text = sample(policy, q, stop = item)\n    calls = per + pooled")
    assert stmts[0].target == "text" and stmts[0].value.keywords[0].name == "stop"
    assert show(stmts[1].value) == "(+ per pooled)"


def test_depth_limit() -> None:
    ok = "(" * (MAX_DEPTH - 8) + "x" + ")" * (MAX_DEPTH - 8)
    assert isinstance(expr(ok), ast.Name)


def test_same_source_same_tree() -> None:
    source = (Path(__file__).parent / "golden" / "parse" / "everything.ttc").read_text()
    assert parse(source) == parse(source)
    assert ast.same_shape(parse(source, "a.ttc"), parse("\n\n" + source, "a.ttc"))


def test_grammar_is_conflict_free_in_strict_mode() -> None:
    """Lark's strict mode rejects shift/reduce conflicts and colliding terminals (it needs `interegular`)."""
    pytest.importorskip("interegular")
    from lark import Lark

    from ttcl.compiler.parse import _Keep

    grammar = (Path(__file__).parent.parent / "grammar" / "ttcl.lark").read_text()
    Lark(grammar, parser="lalr", lexer="basic", strict=True, postlex=_Keep(), maybe_placeholders=False)


def test_windows_line_endings_mean_what_unix_ones_mean() -> None:
    """A CRLF file kept `\\r` inside a multi-line prompt: another bound and other answers (QA pass)."""
    from ttcl.compiler.fmt import format_source
    from ttcl.compiler.pipeline import compile_program

    unix = ('ttcl 1\n"""A docstring\nover two lines."""\nmodel policy = "/nonexistent/p" (params = 1M, n_layer = 2, '
            'd_model = 64)\nstrategy main(question: text[<=20]) -> answer {\n    drafts = sample(policy, """Solve:\n'
            '{question}\n""", n = 2, max_tokens = 10)\n    return vote(drafts)\n}\n')
    windows = unix.replace("\n", "\r\n")
    assert parse(windows, "a.ttc") == parse(unix, "a.ttc")
    assert compile_program(source=windows).report.total == compile_program(source=unix).report.total
    assert format_source(windows) == format_source(unix) and "\r" not in format_source(windows)
