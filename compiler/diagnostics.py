"""Diagnostics: every problem a user sees, with its place in the source.

Rendered as `file:line:col: error: message`, the source line, a caret under
the span, then what was expected and a fix hint (STYLE.md). Passes collect
diagnostics and raise once (`DiagnosticError`), so `ttcl check` reports every
problem, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ttcl.compiler.ast import Span
from ttcl.errors import TtclBudgetError, TtclError, TtclSemanticError, TtclSyntaxError

MAX_RENDERED = 100  # diagnostics printed; the rest are counted (JSON output keeps them all)
MAX_SUGGESTION_POOL = 256  # names a "did you mean" hint compares against

Severity = Literal["error", "warning", "note"]


class Diagnostic(BaseModel):
    """One problem at one place."""

    model_config = ConfigDict(frozen=True)

    span: Span
    message: str
    expected: str | None = None
    hint: str | None = None
    severity: Severity = "error"
    code: str = "E"

    def render(self, source: str | None = None) -> str:
        """`file:line:col: severity: message`, the source line with a caret, then expected/hint lines."""
        s = self.span
        out = [f"{s.file}:{s.line}:{s.column}: {self.severity}: {self.message}"]
        line_text = _source_line(source, s.line)
        if line_text is not None:
            gutter = f"{s.line:>4} | "
            column = s.column
            width = 1
            if s.end_line == s.line and s.end_column > s.column:
                width = s.end_column - s.column
            if len(line_text) > _WIDE:  # a window of the line around the caret, not thousands of characters
                start = max(0, min(column - 1 - _WIDE // 2, len(line_text) - _WIDE))
                shown = line_text[start:start + _WIDE]
                line_text = ("..." if start else "") + shown + ("..." if start + _WIDE < len(line_text) else "")
                column = column - start + (3 if start else 0)
                width = min(width, len(shown) - (column - 1 - (3 if start else 0)))
            out.append(gutter + line_text)
            width = max(1, min(width, len(line_text) - column + 1))
            out.append(" " * (len(gutter) + max(column - 1, 0)) + "^" * width)
        if self.expected:
            out.append(f"  expected: {self.expected}")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


_WIDE = 120  # a source line longer than this is shown as a window of this many characters around the caret


@lru_cache(maxsize=8)
def _lines(source: str) -> list[str]:
    return source.splitlines()  # split once per source, not once per diagnostic


def _source_line(source: str | None, line: int) -> str | None:
    if source is None or line < 1:
        return None
    lines = _lines(source)
    if line > len(lines):
        return "" if line == len(lines) + 1 else None
    return lines[line - 1].expandtabs(1)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A fix hint naming the closest known name, if any is close."""
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The known name closest to `name`, if any is close."""
    pool = set(candidates)
    if len(pool) > MAX_SUGGESTION_POOL:  # keep each hint cheap however many names are in scope
        pool = set(sorted(pool, key=lambda c: (abs(len(c) - len(name)), c[:1].lower() != name[:1].lower(), c))[:MAX_SUGGESTION_POOL])
    match = get_close_matches(name, sorted(pool), n=1, cutoff=0.6)
    return match[0] if match else None


class DiagnosticError(TtclError):
    """Raised once by a stage with every diagnostic it collected.

    `sources` maps file names to their text so each diagnostic can show its line.
    """

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span.file, d.span.line, d.span.column))
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.diagnostics[:MAX_RENDERED]
        parts = [d.render(self.sources.get(d.span.file)) for d in shown]
        if len(self.diagnostics) > len(shown):
            parts.append(f"... and {len(self.diagnostics) - len(shown):,} more (the first {MAX_RENDERED} are shown)")
            parts.extend(d.render() for d in self.diagnostics[MAX_RENDERED:] if d.severity == "note")
        errors = sum(1 for d in self.diagnostics if d.severity == "error")
        if errors > 1:
            parts.append(f"{errors} errors")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


class SyntaxDiagnosticError(DiagnosticError, TtclSyntaxError):
    """The program does not parse (exit 2)."""


class SemanticDiagnosticError(DiagnosticError, TtclSemanticError):
    """The program parses but is invalid (exit 2)."""


class BudgetDiagnosticError(DiagnosticError, TtclBudgetError):
    """The worst case is over budget (exit 1)."""
