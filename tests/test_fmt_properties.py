"""Property tests over random programs (tests/gen_programs.py).

The parser reads back any layout of a random AST; fmt is idempotent, round-trip
safe and independent of layout; mutated and truncated programs give a
`SyntaxDiagnosticError` with a position and nothing else. The default runs
are small so the file stays fast; `pytest -m slow` runs the long sweep.
"""

from __future__ import annotations

import random

import pytest
from gen_programs import layouts, modules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttcl.compiler import ast
from ttcl.compiler.diagnostics import SyntaxDiagnosticError
from ttcl.compiler.fmt import format_module, format_source
from ttcl.compiler.parse import parse

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
SLOW = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
TOKENS = ["{", "}", "(", ")", '"', '"""', "\n", ";", "=", "==", "if", "else", "#", "\x00", "\xff", "8x", "1e999",
          " ", "..", "[", "]", ",", "\\", "{{", "repeat", "strategy"]


def _shape(m: ast.Module) -> dict:
    data = m.without_spans()
    data.pop("comments")
    data.pop("path")
    return data


def _comments(m: ast.Module) -> list[str]:
    return sorted(c.text for c in m.comments)


def check_layout_parses_back(data: st.DataObject) -> None:
    module = data.draw(modules())
    assert _shape(parse(format_module(module))) == _shape(module)
    assert _shape(parse(data.draw(layouts(module)))) == _shape(module)


def check_fmt(data: st.DataObject) -> None:
    module = data.draw(modules())
    source = data.draw(layouts(module))
    once = format_source(source)
    assert format_source(once) == once
    before, after = parse(source), parse(once)
    assert _shape(after) == _shape(before)
    assert _comments(after) == _comments(before)
    bare = data.draw(layouts(module, comments=False))
    assert [x for x in format_source(bare).splitlines() if x] == [x for x in format_module(module).splitlines() if x]


def mutate(source: str, rng: random.Random) -> str:
    """Delete, insert, truncate, duplicate or swap a few small pieces."""
    s = source
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(s) + 1)
        j = min(len(s), i + rng.randint(0, 5))
        op = rng.randrange(5)
        if op == 0:
            s = s[:i] + s[j:]
        elif op == 1:
            s = s[:i] + rng.choice(TOKENS) + s[i:]
        elif op == 2:
            s = s[:i]
        elif op == 3:
            s = s[:i] + s[i:j] * 2 + s[j:]
        else:
            s = s[:i] + s[j : j + 3] + s[i:j] + s[j + 3 :]
    return s


def check_mutations(data: st.DataObject) -> None:
    source = data.draw(layouts(data.draw(modules())))
    rng = data.draw(st.randoms(use_true_random=False))
    for _ in range(10):
        broken = mutate(source, rng)
        try:
            module = parse(broken)
        except SyntaxDiagnosticError as e:
            span = e.diagnostics[0].span
            assert span.line >= 1 and span.column >= 1
            assert str(e).startswith(f"<input>:{span.line}:{span.column}: error: ")
            continue
        once = format_source(broken)
        assert format_source(once) == once
        assert _shape(parse(once)) == _shape(module)


@FAST
@given(st.data())
def test_any_layout_parses_back_to_the_same_ast(data: st.DataObject) -> None:
    check_layout_parses_back(data)


@FAST
@given(st.data())
def test_fmt_is_idempotent_round_trip_safe_and_layout_independent(data: st.DataObject) -> None:
    check_fmt(data)


@FAST
@given(st.data())
def test_mutated_programs_give_diagnostics_or_format_cleanly(data: st.DataObject) -> None:
    check_mutations(data)


@pytest.mark.slow
@SLOW
@given(st.data())
def test_long_sweep(data: st.DataObject) -> None:
    check_layout_parses_back(data)
    check_fmt(data)
    check_mutations(data)
