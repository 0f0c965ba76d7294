"""The regex engine of `extract "..."`: RE2, which runs in time linear in the text.

Python's `re` backtracks, so a pattern such as `(a|a)*b` takes time
exponential in the length of a sampled text and would hang `ttcl run` with
no limit. RE2 (Cox 2010, "Regular Expression Matching in the Wild") never
backtracks; the price is that backreferences and lookaround are not
supported, which `ttcl check` reports. The compiler and the runtime both
compile patterns here, so what `check` accepts is exactly what `run` runs.
"""

from __future__ import annotations

from typing import Any

import re2

MAX_PATTERN_CHARS = 4096
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print its own copy of every error on stderr
_OPTIONS.max_mem = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile; `reason` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern, or PatternError."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern is {len(pattern):,} characters, more than {MAX_PATTERN_CHARS:,}")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        detail = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        return _unsupported(pattern, detail)
    except (TypeError, ValueError, UnicodeError) as e:
        raise PatternError(str(e)) from None


def _unsupported(pattern: str, detail: str) -> Any:
    if any(s in pattern for s in ("(?=", "(?!", "(?<=", "(?<!")) or "escape sequence: \\" in detail:
        detail += " (ttcl matches with RE2, which runs in linear time: no backreferences or lookaround)"
    raise PatternError(detail)
