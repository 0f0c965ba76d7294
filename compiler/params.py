"""Params: their declarations, `--set` overrides and static values.

A param is the one place a strategy's configuration lives (`param n: int =
16 in 1..1024`), so the same file serves many runs. Three consumers need
the same rules: the checks (a declaration must be well-typed and its default
in range), the command line (`--set n=64`, typed by the declaration and
range-checked), and the budget stage (`n`, `max_tokens`, `k`, `rounds` and
repeat counts are static: literals, params and arithmetic on those, which
`static_value` evaluates).

Overrides for an imported module are written with its alias path:
`--set bon.n=8` sets `n` in the module imported `as bon`; `a.b.n=8` goes
two imports deep.

Errors point at the param's declaration and name the `--set` value that
caused them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

from ttcl.compiler.ast import (
    Auto,
    BinOp,
    Bool,
    Expr,
    Module,
    Name,
    Number,
    ParamDecl,
    Span,
    String,
    TemplateField,
    UnaryOp,
)
from ttcl.compiler.diagnostics import Diagnostic, SemanticDiagnosticError, did_you_mean
from ttcl.errors import TtclError

ParamValue = int | float | bool | str | Auto
StaticValue = int | float | Auto

AUTO = Auto()

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?([kMGT])?$", re.ASCII)  # `٣` is not 3
_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class SetOptionError(TtclError):
    """A malformed `--set` item (not `name=value`, or a name given twice)."""


def parse_set_overrides(items: list[str]) -> dict[str, str]:
    """`["n=64", "bon.n=8"]` -> `{"n": "64", "bon.n": "8"}`; values stay text until typed by their param."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise SetOptionError(
                f"--set {item!r}: expected NAME=VALUE (for example `--set n=64`, or `--set bon.n=8` for an imported module)"
            )
        if key in out:
            raise SetOptionError(f"--set {key} is given twice ({out[key]!r} and {value.strip()!r}); keep one")
        out[key] = value.strip()
    return out


def split_overrides(overrides: Mapping[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Own overrides (`n`) and, per import alias, the overrides meant for that module (`bon.n` -> `n`)."""
    own: dict[str, str] = {}
    nested: dict[str, dict[str, str]] = {}
    for key, value in overrides.items():
        alias, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(alias, {})[rest] = value
        else:
            own[key] = value
    return own, nested


def parse_number(text: str) -> int | float | None:
    """A number as the language spells it (`16`, `0.8`, `2e12`, `8k`); ints stay ints when whole."""
    m = _NUMBER_RE.match(text.strip())
    if m is None:
        return None
    body = text.strip()
    mult = 1
    if m.group(4):
        mult = _SUFFIX[m.group(4)]
        body = body[:-1]
    is_int_spelling = m.group(2) is None and m.group(3) is None and "." not in body
    if is_int_spelling:
        try:
            return int(body) * mult
        except ValueError:  # past Python's 4,300 digits, so far past a float: the caller says so (QA pass: exit 70)
            return float(body) * mult
    value = float(body) * mult
    return int(value) if m.group(4) and value.is_integer() else value


# ---------------------------------------------------------------- static values


class StaticEvalError(Exception):
    """An expression is not static (`not_static`), or its static value is invalid (division by zero)."""

    def __init__(self, node: Expr, message: str, *, not_static: bool = True):
        super().__init__(message)
        self.node = node
        self.message = message
        self.not_static = not_static


def static_value(expr: Expr, params: Mapping[str, ParamValue]) -> StaticValue:
    """The value of a static expression: number literals, numeric params and `+ - * /` on those.

    An `auto` param makes the result `Auto` (known once the budget stage solves it).
    `/` of two ints is an int when exact, a float otherwise. Raises StaticEvalError.
    """
    match expr:
        case Number():
            return int(expr.value) if expr.is_int else float(expr.value)
        case Name() if expr.id in params:
            value = params[expr.id]
            if isinstance(value, Auto):
                return AUTO
            if isinstance(value, bool) or isinstance(value, str):
                raise StaticEvalError(expr, f"param `{expr.id}` is not a number")
            return value
        case UnaryOp(op="-"):
            inner = static_value(expr.operand, params)
            return AUTO if isinstance(inner, Auto) else -inner
        case BinOp():
            left = static_value(expr.left, params)
            right = static_value(expr.right, params)
            if isinstance(left, Auto) or isinstance(right, Auto):
                return AUTO
            return _arith(expr, left, right)
    raise StaticEvalError(expr, "not a literal, a param, or arithmetic on those")


def _arith(expr: BinOp, left: int | float, right: int | float) -> int | float:
    match expr.op:
        case "+":
            return left + right
        case "-":
            return left - right
        case "*":
            return left * right
    if right == 0:
        raise StaticEvalError(expr, "division by zero", not_static=False)
    if isinstance(left, int) and isinstance(right, int) and left % right == 0:
        return left // right
    return left / right


# ---------------------------------------------------------------- declarations


def _literal(expr: Expr) -> int | float | bool | str | Auto | None:
    """The value of a literal default or bound (`16`, `-1`, `0.8`, `true`, `"x"`, `auto`); None if not a literal."""
    match expr:
        case Auto():
            return AUTO
        case Number():
            return int(expr.value) if expr.is_int else float(expr.value)
        case UnaryOp(op="-", operand=Number() as num):
            return -(int(num.value) if num.is_int else float(num.value))
        case Bool():
            return expr.value
        case String() if not expr.is_template:
            return "".join(p.text for p in expr.parts if not isinstance(p, TemplateField))
    return None


def param_range(decl: ParamDecl) -> tuple[int | float | None, int | float | None]:
    """The declared range's bounds, None where absent or not a number."""
    low = _literal(decl.low) if decl.low is not None else None
    high = _literal(decl.high) if decl.high is not None else None
    return (
        low if isinstance(low, int | float) and not isinstance(low, bool) else None,
        high if isinstance(high, int | float) and not isinstance(high, bool) else None,
    )


def _fmt(v: int | float) -> str:
    return str(v)


def _range_text(decl: ParamDecl) -> str:
    low, high = param_range(decl)
    return f"{_fmt(low)}..{_fmt(high)}" if low is not None and high is not None else ""


def _expected(decl: ParamDecl) -> str:
    article = "an" if decl.type == "int" else "a"
    rng = _range_text(decl)
    return f"{article} {decl.type} in {rng}" if rng else f"{article} {decl.type}"


def check_param_decl(decl: ParamDecl) -> list[Diagnostic]:
    """Diagnostics for one declaration: default type, range shape, default in range, `auto` placement."""
    out: list[Diagnostic] = []
    has_range = decl.low is not None or decl.high is not None
    if has_range and decl.type in ("bool", "text"):
        span = decl.low.span if decl.low is not None else decl.span
        out.append(Diagnostic(span=span, message=f"param `{decl.name}` is {decl.type}; only int and float params take a range",
                              hint="remove the `in LOW..HIGH` range"))
        has_range = False
    bad_range = False
    if has_range:
        bound_problems = _check_bounds(decl)
        bad_range = bool(bound_problems)
        out.extend(bound_problems)
    default = _literal(decl.default)
    if isinstance(decl.default, Auto):
        if decl.type != "int" or not has_range:
            out.append(Diagnostic(
                span=decl.default.span,
                message=f"`auto` is only allowed on an int param with a range; `{decl.name}` is {decl.type}" + ("" if has_range else " without a range"),
                expected="`param NAME: int = auto in LOW..HIGH`",
                hint="auto picks the largest value in the range that fits the budget"
                + ("; add a range such as `in 1..64`" if decl.type == "int" else "; declare the param as int"),
            ))
        return out
    problem = _default_problem(decl, default)
    if problem is not None:
        out.append(Diagnostic(span=decl.default.span, message=problem, expected=f"{'an' if decl.type == 'int' else 'a'} {decl.type} literal",
                              hint=_literal_hint(decl.type)))
        return out
    low, high = param_range(decl)
    if not bad_range and isinstance(default, int | float) and not isinstance(default, bool) and not _in_range(default, low, high):
        out.append(Diagnostic(
            span=decl.default.span,
            message=f"default {_fmt(default)} of param `{decl.name}` is outside its range {_range_text(decl)}",
            expected=_expected(decl),
            hint="change the default or widen the range",
        ))
    return out


def _literal_hint(ptype: str) -> str:
    return {"int": "write a whole number such as `16` (suffixes: `8k`)", "float": "write a number such as `0.8`",
            "bool": "write `true` or `false`", "text": 'write a plain string such as "..." (no `{fields}`)'}[ptype]


def _default_problem(decl: ParamDecl, value: object) -> str | None:
    if value is None:
        return f"the default of param `{decl.name}` must be a literal"
    ok = _type_ok(decl.type, value)
    if ok:
        return None
    if decl.type == "int" and isinstance(value, float):
        if value.is_integer():  # `2e3`: whole, but written as a float (an exponent makes a float literal)
            return (f"param `{decl.name}` is int but its default is written as a float ({value:g}); "
                    f"write it as an int literal: `{int(value)}`" + (
                        f" or `{_suffixed(int(value))}`" if _suffixed(int(value)) != str(int(value)) else ""))
        return f"param `{decl.name}` is int but its default {value!r} is not a whole number"
    return f"param `{decl.name}` is {decl.type} but its default is {_kind_of(value)}"


def _suffixed(n: int) -> str:
    """`2000` as `2k`, `3000000` as `3M`: the int spelling with a suffix, where one fits exactly."""
    for suffix, mult in sorted(_SUFFIX.items(), key=lambda kv: -kv[1]):
        if n and n % mult == 0:
            return f"{n // mult}{suffix}"
    return str(n)


def _kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int | float):
        return "a number"
    return "text"


def _type_ok(ptype: str, value: object) -> bool:
    match ptype:
        case "int":
            return isinstance(value, int) and not isinstance(value, bool)
        case "float":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "bool":
            return isinstance(value, bool)
        case "text":
            return isinstance(value, str)
    return False


def _check_bounds(decl: ParamDecl) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    values: list[int | float] = []
    for bound in (decl.low, decl.high):
        if bound is None:
            continue
        v = _literal(bound)
        if not isinstance(v, int | float) or isinstance(v, bool):
            out.append(Diagnostic(span=bound.span, message=f"the range of param `{decl.name}` must be number literals",
                                  expected=f"`in LOW..HIGH` with {decl.type} literals"))
        elif decl.type == "int" and not isinstance(v, int):
            out.append(Diagnostic(span=bound.span, message=f"param `{decl.name}` is int but its range bound {v!r} is not a whole number",
                                  expected="an int literal"))
        else:
            values.append(v)
    if len(values) == 2 and values[0] > values[1]:
        assert decl.low is not None
        out.append(Diagnostic(span=decl.low.span, message=f"empty range {_fmt(values[0])}..{_fmt(values[1])} for param `{decl.name}`",
                              hint=f"write the lower bound first: `in {_fmt(values[1])}..{_fmt(values[0])}`"))
    return out


def _in_range(v: int | float, low: int | float | None, high: int | float | None) -> bool:
    return (low is None or v >= low) and (high is None or v <= high)


def param_default(decl: ParamDecl) -> ParamValue | None:
    """The declared default, typed (floats for float params), or None when the declaration is invalid."""
    value = _literal(decl.default)
    if isinstance(value, Auto):
        return value
    if value is None or not _type_ok(decl.type, value):
        return None
    if decl.type == "float":
        return float(value)  # type: ignore[arg-type]
    return value


# ---------------------------------------------------------------- overrides


_FLOAT_MAX = sys.float_info.max


def _short(raw: str, limit: int = 40) -> str:
    """A `--set` value as a message shows it: at most `limit` characters."""
    raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate shown as `\udcff`: no stream
    return raw if len(raw) <= limit else f"{raw[:limit]}... ({len(raw)} characters)"  # can write it as it is


class ValueProblem(str):
    """Why a `--set` value was rejected; a distinct type, so it is never mistaken for a text value."""


def parse_param_value(decl: ParamDecl, raw: str) -> ParamValue | ValueProblem:
    """A `--set` value typed by its param's declared type (`auto` only for ranged ints)."""
    if decl.type == "text":
        try:  # undecodable command-line bytes reach Python as lone surrogates: budget.py's encode was exit 70 (QA)
            raw.encode("utf-8")
        except UnicodeEncodeError as e:
            return ValueProblem(f"the value is not valid Unicode: a lone surrogate U+{ord(raw[e.start]):04X} at "
                                f"character {e.start + 1} (undecodable bytes?)")
        return raw
    if decl.type == "bool":
        if raw in ("true", "false"):
            return raw == "true"
        return ValueProblem(f"`{raw}` is not a bool")
    if raw == "auto":
        if decl.type == "int" and decl.low is not None and decl.high is not None:
            return AUTO
        return ValueProblem("`auto` is only allowed on an int param with a range")
    value = parse_number(raw)
    if value is None and raw.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return ValueProblem(f"`{raw}` is not a finite number; a param takes a finite value")
    if value is None:
        return ValueProblem(f"`{_short(raw)}` is not {'an' if decl.type == 'int' else 'a'} {decl.type}")
    if not -_FLOAT_MAX <= value <= _FLOAT_MAX:  # exact for ints of any size; false for inf and nan
        return ValueProblem(f"`{_short(raw)}` is past the range of a 64-bit float")
    if value == 0 and re.search(r"[1-9]", re.split(r"[eE]", raw)[0]):  # `1e-400` read as 0 (QA pass)
        return ValueProblem(f"`{_short(raw)}` is too small: a 64-bit float reads it as 0; write 0 if 0 is meant")
    if decl.type == "int":
        if not isinstance(value, int):
            if value.is_integer():
                return ValueProblem(f"`{raw}` is written as a float; give an int such as `{int(value)}`")
            return ValueProblem(f"`{raw}` is not a whole number")
        return value
    return float(value)


def resolve_params(
    module: Module,
    overrides: Mapping[str, str] | None = None,
    *,
    diagnostics: list[Diagnostic] | None = None,
    prefix: str = "",
) -> dict[str, ParamValue]:
    """Every param of `module` with its value: the `--set` override (typed, range-checked) or the default.

    `overrides` holds this module's own names only (see `split_overrides`); `prefix` is the alias
    path used to name them in messages (`bon.`). With `diagnostics`, problems are appended and
    invalid params are left out; without it, they raise SemanticDiagnosticError.
    """
    sink: list[Diagnostic] = [] if diagnostics is None else diagnostics
    before = len(sink)
    decls = {d.name: d for d in module.params}
    values: dict[str, ParamValue] = {}
    for decl in module.params:
        default = param_default(decl)
        if default is not None:
            values[decl.name] = default
    for name, raw in (overrides or {}).items():
        decl = decls.get(name)
        if decl is None:
            sink.append(unknown_param_diagnostic(module, f"{prefix}{name}", name, raw))
            continue
        typed = parse_param_value(decl, raw)
        if isinstance(typed, ValueProblem):
            sink.append(Diagnostic(span=decl.span, message=f"`--set {prefix}{name}={_short(raw)}`: {typed}", expected=_expected(decl),
                                   hint=f"param `{name}` is declared here"))
            continue  # keep the default, so later checks do not report the same mistake again
        low, high = param_range(decl)
        if isinstance(typed, int | float) and not isinstance(typed, bool) and not _in_range(typed, low, high):
            sink.append(Diagnostic(span=decl.span, message=f"`--set {prefix}{name}={raw}`: {_fmt(typed)} is outside the range {_range_text(decl)} of param `{name}`",
                                   expected=_expected(decl), hint=f"param `{name}` is declared here"))
            continue
        values[name] = typed
    if diagnostics is None and len(sink) > before:
        raise SemanticDiagnosticError(sink)
    return values


def module_anchor(module: Module, kind: str) -> Span:
    """Where a diagnostic about a name that is not declared points: the first declaration of that kind, or line 1."""
    decls = module.params if kind == "param" else module.imports
    if decls:
        return decls[0].span
    return Span(file=module.path, line=1, column=1, end_line=1, end_column=1)


def unknown_param_diagnostic(module: Module, shown: str, name: str, raw: str) -> Diagnostic:
    names = [d.name for d in module.params]
    return Diagnostic(
        span=module_anchor(module, "param"),
        message=f"`--set {shown}={raw}`: no param `{name}` in {module.path}",
        expected=("one of: " + ", ".join(names)) if names else "no params are declared in this module",
        hint=_other_kind(module, shown, name) or did_you_mean(name, names)
        or ("the line shown is where the params are declared" if names else None),
    )


def _other_kind(module: Module, shown: str, name: str) -> str | None:
    """`--set orm=3` names a model or verifier, which `--model` binds (QA pass: told only "no param")."""
    if any(m.name == name for m in module.models):
        return f"`{name}` is a model, not a param: `--model {shown}=PATH` loads another model for it"
    v = next((v for v in module.verifiers if v.name == name), None)
    if v is None:
        return None
    if getattr(v.call.func, "id", None) == "check":
        return f"`{name}` is a verifier (an exact checker), not a param"
    return f"`{name}` is a verifier, not a param: `--model {shown}=PATH` loads another model for it"


def unknown_alias_diagnostic(module: Module, shown: str, alias: str) -> Diagnostic:
    aliases = [i.alias for i in module.imports]
    return Diagnostic(
        span=module_anchor(module, "import"),
        message=f"`--set {shown}`: no import `{alias}` in {module.path}",
        expected=("an import alias: " + ", ".join(aliases)) if aliases else "this module imports nothing",
        hint=did_you_mean(alias, aliases),
    )
