"""Params: declarations, `--set` parsing and typing, range checks, nested overrides, static values."""

from __future__ import annotations

import pytest

from ttcl.compiler.ast import (
    Auto,
    BinOp,
    Bool,
    Module,
    Name,
    Number,
    ParamDecl,
    Span,
    String,
    TemplateText,
    UnaryOp,
)
from ttcl.compiler.diagnostics import SemanticDiagnosticError
from ttcl.compiler.params import (
    AUTO,
    SetOptionError,
    StaticEvalError,
    check_param_decl,
    parse_number,
    parse_set_overrides,
    resolve_params,
    split_overrides,
    static_value,
)


def num(text: str) -> Number:
    value = parse_number(text)
    assert value is not None
    return Number(value=float(value), text=text, is_int=isinstance(value, int))


def span(line: int) -> Span:
    return Span(file="p.ttc", line=line, column=1, end_line=line, end_column=10)


def decl(name: str, ptype: str, default, low=None, high=None, line: int = 3) -> ParamDecl:  # noqa: ANN001
    return ParamDecl(name=name, type=ptype, default=default, low=low, high=high, span=span(line))


N = decl("n", "int", num("16"), num("1"), num("1024"), line=3)
TEMP = decl("temperature", "float", num("0.8"), num("0.0"), num("2.0"), line=4)
GREEDY = decl("greedy", "bool", Bool(value=False), line=5)
LABEL = decl("label", "text", String(parts=[TemplateText(text="hi")]), line=6)
K = decl("k", "int", Auto(), num("1"), num("64"), line=7)
MODULE = Module(path="p.ttc", params=[N, TEMP, GREEDY, LABEL, K])


def test_parse_set_overrides() -> None:
    assert parse_set_overrides(["n=64", " bon.n = 8 ", "label=a=b"]) == {"n": "64", "bon.n": "8", "label": "a=b"}


@pytest.mark.parametrize("item", ["n", "=3", "1n=3", "a..b=1", "n x=1"])
def test_parse_set_overrides_rejects_malformed(item: str) -> None:
    with pytest.raises(SetOptionError, match="expected NAME=VALUE"):
        parse_set_overrides([item])


def test_parse_set_overrides_rejects_duplicates() -> None:
    with pytest.raises(SetOptionError, match="--set n is given twice"):
        parse_set_overrides(["n=1", "n=2"])


def test_split_overrides() -> None:
    assert split_overrides({"n": "1", "bon.n": "2", "bon.inner.k": "3"}) == ({"n": "1"}, {"bon": {"n": "2", "inner.k": "3"}})


@pytest.mark.parametrize(
    ("text", "value"),
    [("16", 16), ("8k", 8000), ("2.5M", 2_500_000), ("1e3", 1000.0), ("0.8", 0.8), ("-3", -3), ("2e12", 2e12), ("1.5k", 1500)],
)
def test_parse_number(text: str, value: float) -> None:
    got = parse_number(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["", "abc", "8kb", "1..2", "0x10", "\u0663", "1\u0660", "\uff18"])  # Arabic-Indic, full-width digits
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


def test_resolve_defaults() -> None:
    assert resolve_params(MODULE) == {"n": 16, "temperature": 0.8, "greedy": False, "label": "hi", "k": AUTO}


def test_resolve_typed_overrides() -> None:
    got = resolve_params(MODULE, {"n": "64", "temperature": "1", "greedy": "true", "label": "x y", "k": "8"})
    assert got == {"n": 64, "temperature": 1.0, "greedy": True, "label": "x y", "k": 8}
    assert type(got["temperature"]) is float


def test_resolve_auto_override() -> None:
    assert resolve_params(MODULE, {"k": "auto"})["k"] == AUTO


def _messages(overrides: dict[str, str]) -> list[str]:
    diags = []
    resolve_params(MODULE, overrides, diagnostics=diags)
    return [d.render() for d in diags]


def test_override_out_of_range_points_at_declaration() -> None:
    assert _messages({"n": "2000"}) == [
        "p.ttc:3:1: error: `--set n=2000`: 2000 is outside the range 1..1024 of param `n`\n"
        "  expected: an int in 1..1024\n"
        "  hint: param `n` is declared here"
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n": "abc"}, "`--set n=abc`: `abc` is not an int"),
        ({"n": "2.5"}, "`--set n=2.5`: `2.5` is not a whole number"),
        ({"n": "2e1"}, "`--set n=2e1`: `2e1` is written as a float; give an int such as `20`"),
        ({"temperature": "auto"}, "`--set temperature=auto`: `auto` is only allowed on an int param with a range"),
        ({"greedy": "yes"}, "`--set greedy=yes`: `yes` is not a bool"),
        ({"temperature": "3"}, "`--set temperature=3`: 3.0 is outside the range 0.0..2.0 of param `temperature`"),
        ({"temperature": "nan"}, "`--set temperature=nan`: `nan` is not a finite number; a param takes a finite value"),
        ({"n": "-inf"}, "`--set n=-inf`: `-inf` is not a finite number; a param takes a finite value"),
    ],
)
def test_override_type_errors(override: dict[str, str], message: str) -> None:
    (rendered,) = _messages(override)
    assert rendered.splitlines()[0].split(": error: ")[1] == message


def test_unknown_override_suggests() -> None:
    (rendered,) = _messages({"nn": "3"})
    assert rendered == (
        "p.ttc:3:1: error: `--set nn=3`: no param `nn` in p.ttc\n"
        "  expected: one of: n, temperature, greedy, label, k\n"
        "  hint: did you mean `n`?"
    )


def test_unknown_override_far_from_every_name_says_what_the_caret_shows() -> None:
    """The caret sits on the first param; with no close name the hint said nothing, so the caret looked like
    it blamed an unrelated param (left alone in session 37)."""
    (rendered,) = _messages({"zzz": "3"})
    assert rendered.endswith("  hint: the line shown is where the params are declared"), rendered


def test_resolve_raises_without_sink() -> None:
    with pytest.raises(SemanticDiagnosticError, match="no param `nn`"):
        resolve_params(MODULE, {"nn": "1"})


def _decl_messages(d: ParamDecl) -> list[str]:
    return [x.message for x in check_param_decl(d)]


def test_declarations() -> None:
    assert _decl_messages(N) == []
    assert _decl_messages(K) == []
    assert _decl_messages(decl("n", "int", num("2000"), num("1"), num("1024"))) == ["default 2000 of param `n` is outside its range 1..1024"]
    assert _decl_messages(decl("t", "float", Auto(), num("0.0"), num("1.0"))) == [
        "`auto` is only allowed on an int param with a range; `t` is float"
    ]
    assert _decl_messages(decl("k", "int", Auto())) == ["`auto` is only allowed on an int param with a range; `k` is int without a range"]
    assert _decl_messages(decl("w", "int", num("2.5"))) == ["param `w` is int but its default 2.5 is not a whole number"]
    assert _decl_messages(decl("w", "int", num("2e3"))) == [
        "param `w` is int but its default is written as a float (2000); write it as an int literal: `2000` or `2k`"]
    assert _decl_messages(decl("w", "int", num("3E+2"))) == [  # it said "`300` or `300`" (QA pass)
        "param `w` is int but its default is written as a float (300); write it as an int literal: `300`"]
    assert _decl_messages(decl("g", "bool", num("1"))) == ["param `g` is bool but its default is a number"]
    assert _decl_messages(decl("s", "int", num("4"), num("10"), num("1"))) == ["empty range 10..1 for param `s`"]
    assert _decl_messages(decl("x", "text", String(parts=[]), num("1"), num("2"))) == ["param `x` is text; only int and float params take a range"]
    assert _decl_messages(decl("neg", "int", UnaryOp(op="-", operand=num("3")), UnaryOp(op="-", operand=num("5")), num("0"))) == []
    assert _decl_messages(decl("f", "float", num("1"))) == []
    assert _decl_messages(decl("e", "int", Name(id="n"))) == ["the default of param `e` must be a literal"]


def test_static_value() -> None:
    params = {"n": 16, "t": 0.5, "k": AUTO, "flag": True}
    n, k = Name(id="n"), Name(id="k")
    assert static_value(num("4"), params) == 4
    assert static_value(BinOp(op="*", left=n, right=num("2")), params) == 32
    assert static_value(BinOp(op="/", left=n, right=num("4")), params) == 4
    assert static_value(BinOp(op="/", left=n, right=num("3")), params) == pytest.approx(16 / 3)
    assert static_value(BinOp(op="-", left=n, right=num("1")), params) == 15
    assert static_value(UnaryOp(op="-", operand=n), params) == -16
    assert static_value(BinOp(op="+", left=k, right=num("1")), params) == AUTO
    assert static_value(Name(id="t"), params) == 0.5
    with pytest.raises(StaticEvalError) as e:
        static_value(Name(id="drafts"), params)
    assert e.value.not_static
    with pytest.raises(StaticEvalError) as e:
        static_value(BinOp(op="/", left=n, right=num("0")), params)
    assert not e.value.not_static and e.value.message == "division by zero"
    with pytest.raises(StaticEvalError, match="not a number"):
        static_value(Name(id="flag"), params)
