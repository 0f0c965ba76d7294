"""Answer extraction: how a candidate's text becomes a comparable final answer.

A program names its format with `extract "..."` (`####`, `boxed`,
`last_number`, or a regex with one group); without one, the task checker's
own `extract` is used, and failing that `####` then the last number.
Answers are normalised (`1,234.0` -> `1234`) so votes over equal numbers
agree and accuracy compares like with like; a comma that does not separate
thousands is kept (`19,26`, a tuple of values, stays a tuple).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ttcl.compiler.budget import answer_len
from ttcl.compiler.regex_engine import PatternError, compile_pattern
from ttcl.errors import TtclRuntimeError

Extractor = Callable[[str], "str | None"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
# a number, with commas only as thousands separators (`1,234`): `19,26` is a tuple (expr's answer), kept as written
_NUMERIC = re.compile(r"^[-+]?\$?\s*(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)\s*%?\.?$")


class ExtractError(TtclRuntimeError):
    """An `extract` pattern that cannot be used (a bad regex, or not exactly one group)."""


def normalize_answer(text: str | None) -> str | None:
    """Canonical text of an answer: trimmed; numbers without commas, `$`, `%` or a trailing `.0`."""
    if text is None:
        return None
    s = text.strip().rstrip(".").strip()
    if not s:
        return None
    m = _NUMERIC.match(s)
    if m is None:
        return s
    sign = "-" if s.startswith("-") else ""
    digits = m.group(1).replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".") or "0"
    if digits.startswith("."):
        digits = "0" + digits
    if "." not in digits:
        digits = digits.lstrip("0") or "0"
    if digits == "0":
        sign = ""
    return sign + digits


def after_marker(text: str, marker: str = "####") -> str | None:
    """Text after the first `marker`, up to the end of its line."""
    at = text.find(marker)
    if at < 0:
        return None
    rest = text[at + len(marker) :].split("\n", 1)[0].strip()
    return rest or None


def boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}`, braces balanced."""
    at = text.rfind("\\boxed{")
    if at < 0:
        return None
    i = at + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip() or None
    return None


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def regex_extractor(pattern: str) -> Extractor:
    try:
        rx = compile_pattern(pattern)  # RE2: linear time, so no sampled text can hang a run
    except PatternError as e:
        raise ExtractError(f"extract pattern {pattern!r} is not a valid regex: {e.reason}") from e
    if rx.groups != 1:
        raise ExtractError(f"extract pattern {pattern!r} must have exactly one group, it has {rx.groups}")

    def run(text: str) -> str | None:
        found = rx.findall(text)
        return found[-1] if found else None

    return run


def make_extractor(pattern: str | None, checker_extract: Extractor | None = None) -> Extractor:
    """The extractor for a program: its `extract` declaration, else the task checker's, else `####`/last number."""
    if pattern is None:
        if checker_extract is not None:
            base = checker_extract
        else:

            def base(text: str) -> str | None:
                return after_marker(text) or last_number(text)

    elif pattern == "####":
        base = after_marker
    elif pattern == "boxed":
        base = boxed
    elif pattern == "last_number":
        base = last_number
    else:
        base = regex_extractor(pattern)

    def extract(text: str) -> str | None:
        if not isinstance(text, str):
            return None
        return _held_to_bound(normalize_answer(base(text)), text)

    return extract


def _held_to_bound(answer: str | None, text: str) -> str | None:
    """`ttcl check` bounds an answer by twice the text it was read from, plus one (`compiler.budget.answer_len`):
    every bundled extractor keeps to it (a substring; `.5` -> `0.5`; countdown's canonical form adds at most one
    pair of parentheses per operator); a plugin checker's extractor that writes more fails the item."""
    if answer is None or (len(answer) <= answer_len(len(text)) and len(answer.encode()) <= answer_len(len(text.encode()))):
        return answer
    raise ExtractError(f"the answer extractor returned {len(answer):,} characters from a text of {len(text):,}: "
                       "an answer may be at most twice the text it is read from, plus one (the bound `ttcl check` proves)")


def gold_answer(answer: str | int | float) -> str | None:
    """The gold answer of a dataset line: after `####` when present (GSM8K), else the whole field."""
    if isinstance(answer, bool):
        return normalize_answer(str(answer).lower())
    if isinstance(answer, int | float):
        return normalize_answer(repr(answer) if isinstance(answer, float) else str(answer))
    return normalize_answer(after_marker(answer) if "####" in answer else answer)
