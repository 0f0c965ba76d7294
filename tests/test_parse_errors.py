"""Syntax errors: the exact diagnostic text for common mistakes, and no traceback for any input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ttcl.compiler.diagnostics import SyntaxDiagnosticError
from ttcl.compiler.parse import parse, parse_file, read_source

CASES = [
    ('missing_header', 'model p = "x"\n',
     'prog.ttc:1:1: error: missing version header `ttcl 1`\n   1 | model p = "x"\n       ^^^^^\n  expected: `ttcl 1` as the first line\n  hint: start the file with the line `ttcl 1`'),
    ('assign_in_condition', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if count(q) = 3 {\n        return q\n    }\n}\n',
     'prog.ttc:3:17: error: `=` assigns a name; a comparison uses `==`\n   3 |     if count(q) = 3 {\n                       ^\n  expected: an operator, `(`, `.` or `{`\n  hint: write `==` to compare'),
    ('missing_open_brace', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if x > 3\n        return q\n    }\n}\n',
     'prog.ttc:3:13: error: missing `{` to open a block\n   3 |     if x > 3\n                   ^\n  expected: an operator, `(`, `.` or `{`\n  hint: write the block as `{ ... }`'),
    ('unclosed_string', 'ttcl 1\nstrategy main(q: text) -> answer {\n    x = "abc\n    return x\n}\n',
     'prog.ttc:3:9: error: unclosed string\n   3 |     x = "abc\n               ^^^^\n  expected: `"` before the end of the line\n  hint: close the string on the same line; use `"""..."""` for text over several lines or `\\n` for a newline'),
    ('unclosed_docstring', 'ttcl 1\n"""abc\n',
     'prog.ttc:2:1: error: unclosed string\n   2 | """abc\n       ^^^\n  expected: `"""` to close the string\n  hint: a `"""` string ends with `"""`'),
    ('repeat_without_count', 'ttcl 1\nstrategy main(q: text) -> answer {\n    repeat {\n        break\n    }\n}\n',
     'prog.ttc:3:12: error: `repeat` needs a count\n   3 |     repeat {\n                  ^\n  expected: a count, as in `repeat 3 {` or `repeat n {`\n  hint: a loop needs a bound known before the run: a literal, a param, or arithmetic on those'),
    # QA pass: a name alone on a line was reported as "unmatched `}`" at the block's (matched) closing brace
    ('name_alone', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return q\n    oops\n}\n',
     'prog.ttc:4:5: error: `oops` alone is not a statement\n   4 |     oops\n           ^^^^\n  expected: `=`\n  hint: assign it (`oops = ...`), return it, or remove it'),
    ('stray_brace', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return q\n}\n}\n',
     'prog.ttc:5:1: error: unmatched `}`\n   5 | }\n       ^\n  expected: end of statement (newline or `;`) or end of file\n  hint: remove it, or add the `{` it closes'),
    ('keyword_as_name', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if = 3\n}\n',
     'prog.ttc:3:5: error: `if` is a reserved word and cannot be used as a name\n   3 |     if = 3\n           ^^\n  expected: an expression\n  hint: choose another name, such as `if_`'),
    ('keyword_as_strategy_name', 'ttcl 1\nstrategy if(q: text) -> answer {}\n',
     'prog.ttc:2:10: error: `if` is a reserved word and cannot be used as a name\n   2 | strategy if(q: text) -> answer {}\n                ^^\n  expected: a name\n  hint: choose another name, such as `if_`'),
    ('true_as_name', 'ttcl 1\nstrategy main(q: text) -> answer {\n    true = 3\n}\n',
     'prog.ttc:3:5: error: `true` is a reserved word and cannot be used as a name\n   3 |     true = 3\n           ^^^^\n'
     '  expected: a name, a string, `break`, `if`, `repeat`, `return` or `}`\n  hint: choose another name, such as `true_`'),
    ('budget_as_param_name', 'ttcl 1\nparam budget: int = 1\n',
     'prog.ttc:2:7: error: `budget` is a reserved word and cannot be used as a name\n   2 | param budget: int = 1\n             ^^^^^^\n'
     '  expected: a name\n  hint: choose another name, such as `budget_`'),
    ('missing_close_brace', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if x {\n        return q\n',
     'prog.ttc:3:10: error: missing `}`: this block is not closed before the end of the file\n   3 |     if x {\n                ^\n  expected: `}`\n  hint: add `}` to close the block'),
    ('python_def', 'ttcl 1\ndef main(q):\n    return q\n',
     'prog.ttc:2:1: error: ttcl has no `def`\n   2 | def main(q):\n       ^^^\n  expected: a declaration (`import`, `model`, `verifier`, `param`, `extract`, `budget`, `strategy`)\n  hint: declare a strategy with `strategy name(input: text) -> answer { ... }`'),
    ('python_colon', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if x > 3:\n        return q\n}\n',
     'prog.ttc:3:13: error: blocks are written in braces, not with `:`\n   3 |     if x > 3:\n                   ^\n  expected: `{`\n  hint: write `if cond { ... }`; indentation has no meaning in ttcl'),
    ('bad_suffix', 'ttcl 1\nbudget per item { calls <= 8x }\n',
     'prog.ttc:2:28: error: bad number suffix `x` in `8x`\n   2 | budget per item { calls <= 8x }\n                                  ^^\n  expected: a number such as `16`, `0.8`, `2e12`, or one with a suffix k, M, G or T (`8k`, `2.5M`)\n  hint: the suffixes are k (1e3), M (1e6), G (1e9) and T (1e12), case-sensitive'),
    ('huge_number', 'ttcl 1\nparam n: int = 1e999\n',
     'prog.ttc:2:16: error: number `1e999` is too large\n   2 | param n: int = 1e999\n                      ^^^^^\n  hint: numbers must fit a 64-bit float (below about 1.8e308)'),
    ('huge_suffixed_number', 'ttcl 1\nparam n: int = 9e999999k\n',  # past Decimal's own exponent range
     'prog.ttc:2:16: error: number `9e999999k` is too large\n   2 | param n: int = 9e999999k\n                      ^^^^^^^^^\n  hint: numbers must fit a 64-bit float (below about 1.8e308)'),
    # QA pass: `flops <= 1e-400` was read as 0 without a word
    ('tiny_number', 'ttcl 1\nbudget per item { flops <= 1e-400 }\n',
     'prog.ttc:2:28: error: number `1e-400` is too small: a 64-bit float reads it as 0\n   2 | budget per item { flops <= 1e-400 }\n                                  ^^^^^^\n  hint: write 0 if 0 is meant; a nonzero number must be at least about 5e-324'),
    ('nul_byte', 'ttcl 1\nmodel p = \x00\n',
     'prog.ttc:2:11: error: unexpected character `\\x00`\n   2 | model p = �\n                 ^\n  expected: a string'),
    ('unclosed_paren', 'ttcl 1\nstrategy main(q: text) -> answer {\n    x = f(a, (b)\n}\n',
     'prog.ttc:3:10: error: unclosed `(`\n   3 |     x = f(a, (b)\n                ^\n  expected: `)`\n  hint: add `)` to close it'),
    ('paren_open_at_next_line', 'ttcl 1\nstrategy main(q: text) -> answer {\n    d = sample(p, q, n = 4, max_tokens = 64\n    return d\n}\n',
     'prog.ttc:4:5: error: unexpected `return` while the `(` at 3:15 is still open\n   4 |     return d\n           ^^^^^^\n'
     '  expected: an operator, `(`, `)`, `,` or `.`\n  hint: add `)` to close the `(` at 3:15, or a `,` before this line if the list goes on'),
    ('bracket_open_at_next_line', 'ttcl 1\nstrategy main(q: text) -> answer {\n    x = [q,\n    return x\n}\n',
     'prog.ttc:4:5: error: unexpected `return` while the `[` at 3:9 is still open\n   4 |     return x\n           ^^^^^^\n'
     '  expected: an expression or `]`\n  hint: add `]` to close the `[` at 3:9'),
    ('unknown_unit', 'ttcl 1\nbudget per item { gen_token <= 8k }\n',
     'prog.ttc:2:19: error: unknown budget unit `gen_token`\n   2 | budget per item { gen_token <= 8k }\n                         ^^^^^^^^^\n  expected: `calls`, `prompt_tokens`, `gen_tokens`, `tokens`, `flops` or `seconds`\n  hint: did you mean `gen_tokens`?'),
    ('unknown_type', 'ttcl 1\nstrategy m(q: txt) -> answer { return q }\n',
     'prog.ttc:2:15: error: unknown type `txt`\n   2 | strategy m(q: txt) -> answer { return q }\n                     ^^^\n  expected: `text`, `candidates`, `number`, `answer` or `bool`\n  hint: did you mean `text`?'),
    ('bad_template', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return "a {b c} d"\n}\n',
     'prog.ttc:3:15: error: bad template field in string\n   3 |     return "a {b c} d"\n                     ^^^^^\n  expected: a field such as `{question}` or `{c.text}`\n  hint: write `{{` and `}}` for literal braces'),
    ('two_statements', 'ttcl 1\nstrategy main(q: text) -> answer {\n    x = 1 y = 2\n}\n',
     'prog.ttc:3:11: error: unexpected `y`\n   3 |     x = 1 y = 2\n                 ^\n  expected: end of statement (newline or `;`), an operator, `(`, `.` or `}`\n  hint: put one statement per line, or separate them with `;`'),
    ('elif', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if x { } elif y { }\n}\n',
     'prog.ttc:3:14: error: ttcl has no `elif`\n   3 |     if x { } elif y { }\n                    ^^^^\n  hint: write `else if cond { ... }`'),
    ('single_quotes', "ttcl 1\nstrategy main(q: text) -> answer {\n    x = 'a'\n}\n",
     'prog.ttc:3:9: error: unexpected character `\'`\n   3 |     x = \'a\'\n               ^\n  expected: an expression\n  hint: strings use double quotes: "..."'),
    ('version_2', 'ttcl 2\n',
     'prog.ttc:1:6: error: unsupported language version `2`\n   1 | ttcl 2\n            ^\n  expected: `ttcl 1`\n  hint: this ttcl reads version 1 programs'),
    ('positional_after_keyword', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return f(a = 1, b)\n}\n',
     'prog.ttc:3:21: error: positional argument after a keyword argument\n   3 |     return f(a = 1, b)\n                           ^\n  hint: put positional arguments first, or name this one (`name = value`)'),
    ('chained_comparison', 'ttcl 1\nstrategy main(q: text) -> answer {\n    if 0 < a < 5 { }\n}\n',
     'prog.ttc:3:14: error: unexpected `<`: comparisons do not chain\n   3 |     if 0 < a < 5 { }\n                    ^\n'
     '  expected: an operator, `(`, `.` or `{`\n  hint: write `a < b and b < c`'),
    ('misspelled_return', 'ttcl 1\nstrategy main(q: text) -> answer {\n    retrun vote(d)\n}\n',
     'prog.ttc:3:5: error: unexpected `vote` after `retrun`\n   3 |     retrun vote(d)\n           ^^^^^^\n'
     '  expected: `=`\n  hint: did you mean `return`?'),
    ('misspelled_repeat', 'ttcl 1\nstrategy main(q: text) -> answer { x = 1; repet 3 { } }\n',
     'prog.ttc:2:43: error: unexpected `3` after `repet`\n   2 | strategy main(q: text) -> answer { x = 1; repet 3 { } }\n'
     '                                                 ^^^^^\n  expected: `=`\n  hint: did you mean `repeat`?'),
    ('misspelled_declaration', 'ttcl 1\nstratgy main(q: text) -> answer { }\n',
     'prog.ttc:2:1: error: unexpected `stratgy`\n   2 | stratgy main(q: text) -> answer { }\n       ^^^^^^^\n'
     '  expected: a declaration (`import`, `model`, `verifier`, `param`, `extract`, `budget`, `strategy`) or a string\n'
     '  hint: did you mean `strategy`?'),
    # QA pass: a Python f-string, and a field with a space, got no hint that said so
    ('python_f_string', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return f"{q}\\n"\n}\n',
     'prog.ttc:3:12: error: ttcl strings have no `f` prefix\n   3 |     return f"{q}\\n"\n                  ^\n'
     '  hint: write the string without it: every string is a template, `"{question}\\n"` fills in `question`'),
    ('spaced_field', 'ttcl 1\nstrategy main(q: text) -> answer {\n    return "{q }"\n}\n',
     'prog.ttc:3:13: error: bad template field in string\n   3 |     return "{q }"\n                   ^^^^\n'
     '  expected: a field such as `{question}` or `{c.text}`\n  hint: a field has no spaces: write `{q}`'),
    ('unmatched_close', 'ttcl 1\n}\n',
     'prog.ttc:2:1: error: unmatched `}`\n   2 | }\n       ^\n  expected: end of statement (newline or `;`) or end of file\n  hint: remove it, or add the `{` it closes'),
]


@pytest.mark.parametrize(("name", "source", "expected"), CASES, ids=[c[0] for c in CASES])
def test_syntax_error_text(name: str, source: str, expected: str) -> None:
    with pytest.raises(SyntaxDiagnosticError) as info:
        parse(source, "prog.ttc")
    assert str(info.value) == expected
    assert len(info.value.diagnostics) == 1


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.ttc"
    path.write_bytes(b"ttcl 1\nmodel p = \"caf\xe9\"\n")
    with pytest.raises(SyntaxDiagnosticError) as info:
        parse_file(path)
    assert str(info.value) == (
        f"{path}:2:15: error: `{path}` is not UTF-8 text (byte 0xe9 at line 2, column 15)\n"
        "  hint: save the file as UTF-8"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SyntaxDiagnosticError) as info:
        read_source(tmp_path / "nope.ttc")
    assert str(info.value) == f"{tmp_path / 'nope.ttc'}:1:1: error: no such file `{tmp_path / 'nope.ttc'}`"


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "win.ttc"
    path.write_bytes(b"\xef\xbb\xbfttcl 1\r\nmodel p = \"x\"\r\n")
    module = parse_file(path)
    assert module.models[0].ref == "x"
    assert module.models[0].span.line == 2


def test_bare_carriage_return_line_ends_are_named(tmp_path: Path) -> None:
    """Classic Mac line ends (CR alone) read as one long line: "unexpected `model`" said nothing of why (QA pass)."""
    path = tmp_path / "mac.ttc"
    path.write_bytes(b'ttcl 1\rmodel p = "x"\r')
    with pytest.raises(SyntaxDiagnosticError) as info:
        parse_file(path)
    diagnostic = info.value.diagnostics[0]
    assert diagnostic.message.startswith("unexpected `model`: this file's lines end with a bare carriage return")
    assert "LF or CRLF" in (diagnostic.hint or "")
    # a CRLF file with an unrelated mistake keeps the usual words
    path.write_bytes(b'ttcl 1\r\nmodel p = "x" y\r\n')
    with pytest.raises(SyntaxDiagnosticError) as info:
        parse_file(path)
    assert "carriage return" not in str(info.value)


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_give_a_positioned_diagnostic(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        text = data.decode("utf-8", errors="replace")
        for source in (text, "ttcl 1\n" + text, "ttcl 1\nstrategy m() -> answer {\n" + text):
            try:
                parse(source)
            except SyntaxDiagnosticError as e:
                span = e.diagnostics[0].span
                assert span.line >= 1 and span.column >= 1
                assert str(e).startswith(f"<input>:{span.line}:{span.column}: error: ")


@pytest.mark.parametrize(
    "source",
    [
        "ttcl 1\nstrategy m() -> answer {\n    return " + "(" * 5000 + "x" + ")" * 5000 + "\n}\n",
        "ttcl 1\nstrategy m() -> answer {\n    return " + " + ".join(["x"] * 5000) + "\n}\n",
        "ttcl 1\nstrategy m() -> answer {\n    return " + "-" * 5000 + "x\n}\n",
        "ttcl 1\nstrategy m() -> answer {\n" + "if x {\n" * 3000 + "}\n" * 3000 + "}\n",
        "ttcl 1\nparam n: int = " + "9" * 5000 + "\n",
        "ttcl 1\nstrategy m() -> answer {\n" + "{" * 3000,
    ],
    ids=["parens", "long_sum", "unary_chain", "deep_ifs", "huge_int", "open_braces"],
)
def test_pathological_input_gives_a_diagnostic(source: str) -> None:
    with pytest.raises(SyntaxDiagnosticError) as info:
        parse(source)
    assert info.value.diagnostics[0].span.line >= 1


def test_truncations_of_a_program_parse_or_fail_cleanly() -> None:
    source = (Path(__file__).parent / "golden" / "parse" / "everything.ttc").read_text()
    for end in range(0, len(source), 17):
        try:
            parse(source[:end])
        except SyntaxDiagnosticError as e:
            assert e.diagnostics[0].span.line >= 1


@pytest.mark.parametrize(("text", "expected"), [
    ("9e999999k", (float("inf"), False)), ("1e999999999T", (float("inf"), False)),  # beyond Decimal's Emax
    ("1e-999999999k", (0.0, False)), ("5e-999999k", (0.0, False)),  # below its Emin: zero, and not whole
    ("2.5k", (2500.0, True)), ("1.5e3k", (1500000.0, True)), ("2.5", (2.5, False)), ("16", (16.0, True)),
])
def test_number_value_of_extreme_exponents_never_raises(text: str, expected: tuple[float, bool]) -> None:
    """Found by the explore-mode fmt sweep: `9e999999k` raised decimal.Overflow out of the lexer."""
    from ttcl.compiler.parse_lex import number_value

    assert number_value(text) == expected


@pytest.mark.parametrize("src, what", [
    ("ttcl 1\nstrategy main(q: text[<=5]) -> answer { return " + " + ".join(["q"] * 60) + " + zz }\n", "zz"),
    ("ttcl 1\nparam n: int = " + "(" * 100 + "1" + ")" * 100 + "\n", "("),
    ("ttcl 1\nparam n: int = 1x" + " " * 300 + "\n", "1x"),
])
def test_a_long_source_line_is_shown_as_a_window_with_the_caret_on_the_culprit(src: str, what: str) -> None:
    """The 'nested more than 64 deep' error echoed a 4,000-character line (found by a QA pass)."""
    from ttcl.compiler.diagnostics import DiagnosticError
    from ttcl.compiler.pipeline import compile_program

    with pytest.raises(DiagnosticError) as e:
        compile_program(source=src, file="p.ttc")
    lines = e.value.render().splitlines()
    shown, caret = lines[1], lines[2]
    assert len(shown) <= 140 and shown.startswith("   2 | ")
    at = caret.index("^")
    assert shown[at:at + len(what)] == what, (shown, caret)
