"""`arith`: multi-step integer arithmetic with an exact outcome and step checker.

A question is a chain of operations applied left to right, written
`37 +12 *3 -5` (no operator precedence: each operation applies to the running
value). The chain-of-thought answer writes one operation per line and ends
with a GSM8K-style final-answer marker:

    37+12=49
    49*3=147
    147-5=142
    #### 142

The difficulty knob is `steps`, the number of operations; `value_max` (99 by
default, what the bundled models learn) bounds every running value, and a
larger one (e.g. 999) makes each step harder.
The checkers recompute everything from the question itself, so they need no
gold label and never raise on malformed text.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ttcl.runtime.tasks.base import iter_cycle_problems, text_after_marker

ANSWER_MARKER = "####"
PROMPT_SEPARATOR = "\n"  # the prompt is `question + PROMPT_SEPARATOR`
VALUE_MAX = 99  # default bound on every running value
MUL_MAX = 9  # largest factor of *


def add_max(value_max: int) -> int:
    """Largest operand of + and -: 19 at the default bound, a tenth of the bound above it."""
    return max(19, value_max // 10)

# What a checker reads, bounded (QA pass): Python refuses int() on more than 4,300 digits, which a model (or a
# dataset) can write, and a question of 100k operations kept every running value (gigabytes). A question has at
# most MAX_OPS operations and every running value stays under 10**MAX_DIGITS; a number of more digits in a
# completion is wrong, never an exception. `ttcl data arith --max-value` keeps to MAX_VALUE_DIGITS.
MAX_OPS = 1000  # `ttcl data arith --steps` goes to 1..1000
MAX_DIGITS = 4000
MAX_VALUE_DIGITS = 1000
_N = rf"\d{{1,{MAX_DIGITS}}}"
_QUESTION_RE = re.compile(rf"^\s*({_N})((?:\s*[+\-*]\s*{_N})+)\s*(?:=\s*)?$", re.ASCII)  # no `\s*=?\s*`: it
_OP_RE = re.compile(r"([+\-*])\s*(\d+)", re.ASCII)  # backtracked on a run of spaces (quadratic time)
_STEP_RE = re.compile(rf"^\s*(-?{_N})\s*([+\-*])\s*(-?{_N})\s*=\s*(-?{_N})\s*$", re.ASCII)
_INT_RE = re.compile(rf"^\s*([+-]?{_N})\s*$", re.ASCII)


def apply_op(value: int, op: str, operand: int) -> int:
    """One step of the chain."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Problem:
    """One arith problem: a start value and the operations applied to it in order."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def steps(self) -> int:
        return len(self.ops)

    @property
    def question(self) -> str:
        return " ".join([str(self.start), *(f"{op}{x}" for op, x in self.ops)])

    @property
    def prompt(self) -> str:
        return self.question + PROMPT_SEPARATOR

    @property
    def values(self) -> list[int]:
        """The running value before the first and after every step (len = steps + 1)."""
        out = [self.start]
        for op, x in self.ops:
            out.append(apply_op(out[-1], op, x))
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]

    def step_lines(self) -> list[str]:
        vals = self.values
        return [f"{vals[i]}{op}{x}={vals[i + 1]}" for i, (op, x) in enumerate(self.ops)]

    @property
    def solution(self) -> str:
        """The reference chain-of-thought completion (without end-of-sequence)."""
        return "\n".join([*self.step_lines(), f"{ANSWER_MARKER} {self.answer}"])

    def to_json(self) -> dict[str, object]:
        return {"question": self.question, "answer": self.solution, "steps": self.steps}


def _valid_ops(value: int, value_max: int) -> list[tuple[str, int, int]]:
    """(op, lowest operand, highest operand) choices that keep the value in 0..value_max."""
    out: list[tuple[str, int, int]] = []
    if value < value_max:
        out.append(("+", 1, min(add_max(value_max), value_max - value)))
    if value > 0:
        out.append(("-", 1, min(add_max(value_max), value)))
    if value > 0 and value_max // value >= 2:
        out.append(("*", 2, min(MUL_MAX, value_max // value)))
    return out


def generate(steps: int, rng: random.Random, value_max: int = VALUE_MAX) -> Problem:
    """One problem of `steps` operations drawn from `rng`."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if value_max < 9:
        raise ValueError("value_max must be >= 9")
    value = rng.randint(2, min(99, value_max))
    start = value
    ops: list[tuple[str, int]] = []
    for _ in range(steps):
        op, lo, hi = rng.choice(_valid_ops(value, value_max))
        x = rng.randint(lo, hi)
        ops.append((op, x))
        value = apply_op(value, op, x)
    return Problem(start, tuple(ops))


def make_problems(n: int, steps: int | Iterable[int], seed: int, value_max: int = VALUE_MAX) -> list[Problem]:
    """`n` problems, deterministic in `seed`, with difficulties cycling evenly over `steps`."""
    return list(iter_problems(n, steps, seed, value_max))


def iter_problems(n: int, steps: int | Iterable[int], seed: int, value_max: int = VALUE_MAX) -> Iterator[Problem]:
    """`make_problems`, one at a time (`ttcl data` writes the first line before drawing the rest)."""
    return iter_cycle_problems(lambda s, rng: generate(s, rng, value_max), n, steps, seed)


def iter_jsonl(problems: Iterable[Problem]) -> Iterator[str]:
    """GSM8K-style JSONL lines: question, answer (solution ending in `#### N`), steps."""
    for p in problems:
        yield json.dumps(p.to_json())


def parse_question(question: str) -> Problem | None:
    """The problem a question states, or None when the text is not an arith question."""
    if not isinstance(question, str) or question.count("*") + question.count("+") + question.count("-") > MAX_OPS:
        return None
    m = _QUESTION_RE.match(question.strip())
    if m is None:
        return None
    ops = tuple((op, int(x)) for op, x in _OP_RE.findall(m.group(2)))
    value, bound = int(m.group(1)), 10**MAX_DIGITS
    for op, x in ops:
        value = apply_op(value, op, x)
        if abs(value) >= bound:
            return None
    return Problem(int(m.group(1)), ops)


def parse_steps_spec(spec: str) -> list[int]:
    """`"3"` -> [3]; `"1..8"` -> [1, ..., 8]. Raises ValueError on anything else."""
    text = spec.strip()
    m = re.fullmatch(r"([0-9]+)\s*(?:\.\.\s*([0-9]+))?", text)  # ASCII digits, as every other option
    if m is None:
        raise ValueError(f"steps must be an integer N or a range A..B, got {spec!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise ValueError(f"a range A..B needs A <= B, got {spec!r}")
    if lo < 1:
        raise ValueError(f"steps must be 1 or more, got {spec!r}")
    return list(range(lo, hi + 1))


class ArithChecker:
    """Exact outcome and step checker for `arith` (the `check("arith")` verifier)."""

    name = "arith"
    answer_marker = ANSWER_MARKER
    step_separator = "\n"

    def solve(self, question: str) -> str | None:
        """The exact final answer, as a string, or None if the question does not parse."""
        p = parse_question(question)
        return None if p is None else str(p.answer)

    def reads(self, question: object) -> bool:
        """Whether `question` states a problem of this task (`--judge` leaves an item it cannot read ungraded)."""
        return parse_question(question) is not None

    def extract(self, completion: str) -> str | None:
        """Text after the first `####`, up to the end of its line; None if missing or empty."""
        return text_after_marker(completion, ANSWER_MARKER)

    def outcome(self, question: str, completion: str) -> float:
        p = parse_question(question)
        got = self.extract(completion)
        if p is None or got is None:
            return 0.0
        return 1.0 if _answer_value(got) == p.answer else 0.0

    def split_steps(self, completion: str) -> list[str]:
        """Non-empty lines, stripped. The `#### N` line is the last step."""
        if not isinstance(completion, str):
            return []
        return [line.strip() for line in completion.split("\n") if line.strip()]

    def steps(self, question: str, completion: str) -> list[float]:
        """Step i (0-based, i < steps) must be exactly `v_i op x_i = v_{i+1}`; step `steps`
        must be `#### answer`; any line after that is wrong. Scores are 1.0 up to the
        first wrong step and 0.0 from it on."""
        lines = self.split_steps(completion)
        p = parse_question(question)
        if p is None:
            return [0.0] * len(lines)
        vals = p.values
        scores: list[float] = []
        ok = True
        for i, line in enumerate(lines):
            ok = ok and self._line_ok(p, vals, i, line)
            scores.append(1.0 if ok else 0.0)
        return scores

    def first_error(self, question: str, completion: str) -> int | None:
        """Index of the first wrong step, or None when every step is right."""
        scores = self.steps(question, completion)
        return scores.index(0.0) if 0.0 in scores else None

    @staticmethod
    def _line_ok(p: Problem, vals: list[int], i: int, line: str) -> bool:
        if i < p.steps:
            m = _STEP_RE.match(line)
            if m is None:
                return False
            op, x = p.ops[i]
            got = (int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))
            return got == (vals[i], op, x, vals[i + 1])
        if i == p.steps:  # read as `outcome` reads it (`#### +98` was right there, wrong here: QA pass)
            return line.startswith(ANSWER_MARKER) and _answer_value(line[len(ANSWER_MARKER):]) == p.answer
        return False


def _answer_value(text: str) -> int | None:
    """The integer an answer states (`142`, `+142`, `-3`, spaces around it), or None."""
    m = _INT_RE.match(text.strip())
    return None if m is None else int(m.group(1))


checker = ArithChecker()
