"""The bundled strategy programs, findable by name after any install.

`ttcl:weighted_best_of_n` names `weighted_best_of_n.ttc` in this package,
wherever pip put it: `ttcl check/graph/run/eval/fmt` and `ttcl.run` accept
that form wherever they take a program path, and `ttcl programs` lists them.
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from pathlib import Path

from ttcl.errors import TtclSemanticError

BUNDLED_DIR = Path(__file__).resolve().parent
PREFIX = "ttcl:"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


class ProgramNameError(TtclSemanticError):
    """A `ttcl:NAME` that names no bundled program (exit 2)."""


def bundled_names() -> list[str]:
    """Names of the bundled programs, sorted."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.ttc"))


def summary(name: str) -> str:
    """What a bundled program is: its docstring up to the first citation or full stop."""
    text = (BUNDLED_DIR / f"{name}.ttc").read_text(encoding="utf-8")
    start = text.find('"""')
    if start < 0:
        return ""
    end = text.find('"""', start + 3)
    doc = " ".join(text[start + 3: end if end > 0 else None].split())
    while (bare := re.sub(r" ?\([^()]*\)", "", doc)) != doc:  # citations and asides, however nested
        doc = bare
    # a full stop ends the summary, except the one in "et al." / "e.g." / "i.e." / "vs."
    return re.split(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)[.:;] ", doc + " ", maxsplit=1)[0].rstrip(".:; ")


def is_bundled_ref(program: str | Path) -> bool:
    return str(program).startswith(PREFIX)


def resolve_program(program: str | Path) -> Path:
    """`ttcl:NAME` -> the bundled file; anything else is returned as a path, unchanged."""
    text = str(program)
    if not text.startswith(PREFIX):
        return Path(program)
    name = text[len(PREFIX):].removesuffix(".ttc")
    names = bundled_names()
    if _NAME.fullmatch(name) and name in names:
        return BUNDLED_DIR / f"{name}.ttc"
    close = get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean `{PREFIX}{close[0]}`?" if close else "`ttcl programs` lists the bundled programs"
    raise ProgramNameError(
        f"{text}: error: no bundled program named {name!r} (bundled: {', '.join(names)})\n  hint: {hint}"
    )


__all__ = ["BUNDLED_DIR", "ProgramNameError", "bundled_names", "is_bundled_ref", "resolve_program", "summary"]
