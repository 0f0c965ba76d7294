"""A hypothesis strategy for random well-formed programs whose bound depends on int params.

Each program declares int params `p0..pk` (range 1..6) and uses them, alone
or in small static arithmetic, for `n`, `max_tokens`, `k`, `rounds` and
repeat counts, across samples, extends, verifies, revisions, concatenations,
the search built-ins (`balance`, `backup`, `filter` on `finished`), branches
and loops (`until all_finished(...)` among the exits). New variables are introduced only at the top level and
only re-bound inside blocks, so every use is defined on every path.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

HEADER = """ttcl 1
model policy = "/nonexistent/policy" (params = 1M, n_layer = 2, d_model = 64)
model rm = "/nonexistent/rm" (params = 200k, n_layer = 1, d_model = 32)
verifier orm = reward(rm)
verifier ok = check("arith")
"""

PARAM_HIGH = 6


@dataclass
class GenProgram:
    """Source text and the names of its int params (with their declared ranges)."""

    source: str
    params: list[str]
    low: int = 1
    high: int = PARAM_HIGH


@st.composite
def static_expr(draw: st.DrawFn, params: list[str]) -> str:
    p = draw(st.sampled_from(params))
    return draw(st.sampled_from([str(draw(st.integers(1, 4))), p, f"{p} + 1", f"2 * {p}"]))


@st.composite
def _value(draw: st.DrawFn, params: list[str], cands: list[str]) -> str:
    """A candidates-valued expression over the existing variables."""
    e = lambda: draw(static_expr(params))  # noqa: E731
    src = draw(st.sampled_from(cands))
    kind = draw(st.sampled_from(["sample", "sample_t", "extend", "verify", "top", "concat", "revise",
                                 "balance", "backup", "filter"]))
    if kind == "sample":
        return f"sample(policy, question, n = {e()}, max_tokens = {e()})"
    if kind == "sample_t":
        return f'sample(policy, "Q: {{question}} A:", n = {e()}, max_tokens = {e()})'
    if kind == "extend":
        return f"extend(policy, top({src}, k = {e()}), n = {e()}, max_tokens = {e()})"
    if kind == "verify":
        return f"verify({draw(st.sampled_from(['orm', 'ok']))}, {src})"
    if kind == "top":
        return f"top({src}, k = {e()})"
    if kind == "concat":
        return f"{src} + {draw(st.sampled_from(cands))}"
    if kind == "balance":
        total = draw(st.sampled_from(["", f", total = count({draw(st.sampled_from(cands))})", f", total = {e()}"]))
        return f"balance({src}, n = {e()}{total}, temperature = {draw(st.sampled_from(['0.0', '0.5', '2']))})"
    if kind == "backup":
        return f"backup({src}, {draw(st.sampled_from(cands))})"
    if kind == "filter":
        return f"filter({src}, {draw(st.sampled_from(['finished', 'not finished', 'finished or score > 0.5']))})"
    return f"revise(policy, top({src}, k = 2), rounds = {e()}, max_tokens = {e()})"


@st.composite
def _block(draw: st.DrawFn, params: list[str], cands: list[str], depth: int, indent: str) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 2))):
        target = draw(st.sampled_from(cands))
        choice = draw(st.sampled_from(["assign", "assign", "if", "repeat"] if depth < 2 else ["assign"]))
        if choice == "assign":
            lines.append(f"{indent}{target} = {draw(_value(params, cands))}")
        elif choice == "if":
            lines.append(f"{indent}if agreement({target}) > 0.5 {{")
            lines.extend(draw(_block(params, cands, depth + 1, indent + "    ")))
            if draw(st.booleans()):  # an early exit with no else: what follows runs on the other arm only
                lines.append(f"{indent}    return vote({target})")
            else:
                lines.append(f"{indent}}} else {{")
                lines.extend(draw(_block(params, cands, depth + 1, indent + "    ")))
            lines.append(f"{indent}}}")
        else:
            count = draw(static_expr(params))
            lines.append(f"{indent}repeat {count} {{")
            lines.extend(draw(_block(params, cands, depth + 1, indent + "    ")))
            leave = draw(st.sampled_from(["", "break", f"return vote({target})"]))
            if leave:
                lines.append(f"{indent}    if best_score({target}) > 0.9 {{")
                lines.append(f"{indent}        {leave}")
                lines.append(f"{indent}    }}")
            until = draw(st.sampled_from(["", f" until mean_score({target}) > 0.5", f" until all_finished({target})"]))
            lines.append(f"{indent}}}{until}")
    return lines


@st.composite
def budget_programs(draw: st.DrawFn, budget: str = "", auto: bool = False) -> GenProgram:
    """A program over params p0..p{k-1}; with `auto`, p0 is declared `auto`."""
    k = draw(st.integers(1, 3))
    params = [f"p{i}" for i in range(k)]
    decls = []
    for i, p in enumerate(params):
        default = "auto" if auto and i == 0 else str(draw(st.integers(1, PARAM_HIGH)))
        decls.append(f"param {p}: int = {default} in 1..{PARAM_HIGH}")
    body = [f"    c0 = sample(policy, question, n = {draw(static_expr(params))}, max_tokens = {draw(static_expr(params))})"]
    cands = ["c0"]
    for i in range(1, draw(st.integers(1, 3)) + 1):
        body.append(f"    c{i} = {draw(_value(params, cands))}")
        cands.append(f"c{i}")
    body.extend(draw(_block(params, cands, 0, "    ")))
    body.append(f"    return vote({cands[-1]})")
    source = HEADER + "\n".join(decls) + "\n" + budget + "\nstrategy main(question: text[<=20]) -> answer {\n" + "\n".join(body) + "\n}\n"
    return GenProgram(source=source, params=params)
