"""`countdown`: reach a target from a handful of numbers; checking is much easier than solving.

A question lists three to six numbers and a target, `3 7 5 2 -> 22`. A
solution combines some of the numbers with `+ - * /`, each number used at most
once (as in the TV game), every intermediate value a positive integer of at
most VALUE_MAX (division only where exact), and stops once the target is made. The chain of thought writes one combination per line,
with the numbers still available after it in brackets (the state is written
down, as a scratchpad, not remembered), and ends with the whole expression
after a GSM8K-style marker:

    7-3=4 [5 2 4]
    4*5=20 [2 20]
    20+2=22 [22]
    #### (7-3)*5+2

Any two available numbers may be combined at each step, so a question has
many valid derivations and, usually, several right expressions; most
derivations reach a dead end. Solving is a search; checking a proposed
expression is one evaluation (`outcome`), which is where sampling many
candidates and keeping a checked one pays. The difficulty knob is `steps`,
the count of numbers minus one (2..5): the target is the value of a random
derivation over all the numbers, though a shorter solution may exist.

The step checker is also an exact value function: a derivation line is right
when it is valid arithmetic on available numbers *and* the target is still
reachable from what remains (`reachable`, exhaustive over sub-multisets), so
`check("countdown", agg = "last")` scores partial solutions exactly, as an
oracle process scorer for step-level search. The checkers need no gold label
and never raise on malformed text. `extract` writes the answer canonically
(`countdown_answers.canonical`), so that one computation written in another
order is one answer to a vote.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from ttcl.runtime.tasks.base import (
    cycle_problems,
    iter_cycle_problems,
    jsonl_lines,
    text_after_marker,
)

ANSWER_MARKER = "####"
PROMPT_SEPARATOR = "\n"
TARGET_SEPARATOR = " -> "
DEAD_MARK = " x"  # ends a search trace's failed attempt (countdown_search.py): its last number is not the target
VALUE_MAX = 99  # every intermediate value of a derivation lies in 1..VALUE_MAX
NUMBER_MIN, NUMBER_MAX = 1, 10  # the given numbers
MIN_STEPS, MAX_STEPS = 2, 5  # combinations: three to six numbers
OPS = "+-*/"
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}

# ASCII: `\d` would otherwise match any Unicode digit, and int() reads those too.
_QUESTION_RE = re.compile(r"^\s*(\d{1,3}(?: \d{1,3}){2,5}) -> (\d{1,3})\s*$", re.ASCII)
_STEP_RE = re.compile(r"^\s*(\d{1,4})\s*([+\-*/])\s*(\d{1,4})\s*=\s*(-?\d{1,6})\s*(?:\[([\d ]{0,40})\])?"
                      r"(?:\s*->\s*(\d{1,4}))?\s*$", re.ASCII)  # `-> T`: a search trace restates the target
_TOKEN_RE = re.compile(r"\s*(?:(\d{1,6})|([+\-*/()]))", re.ASCII)


def combine(a: int, op: str, b: int) -> int | None:
    """The value of `a op b` under the rules (a positive integer <= VALUE_MAX, exact division), or None."""
    if op == "+":
        v = a + b
    elif op == "-":
        v = a - b
    elif op == "*":
        v = a * b
    elif op == "/":
        if b == 0 or a % b:
            return None
        v = a // b
    else:
        return None
    return v if 1 <= v <= VALUE_MAX else None


@lru_cache(maxsize=65536)
def _values(pool: tuple[int, ...]) -> frozenset[int]:
    """Every value an expression using each number of the sorted `pool` exactly once can take,
    with every intermediate value within the rules."""
    if len(pool) == 1:
        return frozenset(pool) if 1 <= pool[0] <= VALUE_MAX else frozenset()
    out: set[int] = set()
    n = len(pool)
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for mask in range(1, (1 << n) - 1):
        if not mask & 1:  # each split once: the left side holds the first number
            continue
        left = tuple(pool[i] for i in range(n) if mask >> i & 1)
        right = tuple(pool[i] for i in range(n) if not mask >> i & 1)
        if (left, right) in seen:
            continue
        seen.add((left, right))
        for a in _values(left):
            for b in _values(right):
                for x, y in ((a, b), (b, a)):
                    for op in OPS:
                        v = combine(x, op, y)
                        if v is not None:
                            out.add(v)
    return frozenset(out)


@lru_cache(maxsize=65536)
def _values_any(pool: tuple[int, ...]) -> frozenset[int]:
    """Every value an expression over some of the sorted `pool`'s numbers, each at most once, can take."""
    n = len(pool)
    out: set[int] = set()
    for sub in {tuple(pool[i] for i in range(n) if mask >> i & 1) for mask in range(1, 1 << n)}:
        out |= _values(sub)
    return frozenset(out)


def reachable(pool: Iterable[int], target: int) -> bool:
    """Whether some of the numbers in `pool`, each used at most once, can still make `target`."""
    key = tuple(sorted(pool))
    if not key or len(key) > MAX_STEPS + 1:
        return False
    return target in _values_any(key)


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class Expr:
    """A derivation's expression tree: a number (`op` None) or `left op right`."""

    value: int
    op: str | None = None
    left: Expr | None = None
    right: Expr | None = None

    def text(self) -> str:
        """Infix with the fewest parentheses that parse back to this tree."""
        if self.op is None:
            return str(self.value)
        assert self.left is not None and self.right is not None
        p = _PREC[self.op]
        lt, rt = self.left.text(), self.right.text()
        if self.left.op is not None and _PREC[self.left.op] < p:
            lt = f"({lt})"
        if self.right.op is not None and _PREC[self.right.op] <= p:
            rt = f"({rt})"
        return f"{lt}{self.op}{rt}"


@dataclass(frozen=True)
class Problem:
    """One countdown problem: the numbers, in the order the question gives them, and the target."""

    numbers: tuple[int, ...]
    target: int
    made_by: tuple[tuple[int, str, int, int], ...] = field(default=(), compare=False, repr=False)
    """The derivation the generator drew the target with (empty for a parsed question)."""

    @property
    def steps(self) -> int:
        return len(self.numbers) - 1

    @property
    def question(self) -> str:
        return " ".join(map(str, self.numbers)) + TARGET_SEPARATOR + str(self.target)

    @property
    def prompt(self) -> str:
        return self.question + PROMPT_SEPARATOR

    def derivation(self, rng: random.Random | None = None) -> list[tuple[int, str, int, int]] | None:
        """A derivation reaching the target, as (a, op, b, value) lines, drawn at random (every step
        keeps the target reachable, so it never backtracks); the first one found without `rng`."""
        pool = list(self.numbers)
        lines: list[tuple[int, str, int, int]] = []
        while not lines or lines[-1][3] != self.target:  # until the target is made
            found = self._live_moves(pool)
            if rng is None:  # the first live move: no need to test the others
                move = next(found, None)
            else:
                moves = list(found)
                move = rng.choice(moves) if moves else None
            if move is None:
                return None
            i, j, op, v = move
            lines.append((pool[i], op, pool[j], v))
            pool = [x for k, x in enumerate(pool) if k not in (i, j)] + [v]
        return lines

    def _live_moves(self, pool: list[int]) -> Iterator[tuple[int, int, str, int]]:
        """Every (i, j, op, value) combining pool[i] op pool[j] after which the target is still reachable."""
        for i in range(len(pool)):
            for j in range(len(pool)):
                if i == j:
                    continue
                for op in OPS:
                    v = combine(pool[i], op, pool[j])
                    if v is None:
                        continue
                    rest = [x for k, x in enumerate(pool) if k not in (i, j)] + [v]
                    if reachable(rest, self.target):
                        yield i, j, op, v

    def solution(self, rng: random.Random | None = None, style: str = "path") -> str:
        """A chain-of-thought completion (without end-of-sequence), then its expression: the
        derivation the generator drew (a random one) unless `rng` asks for a fresh random search;
        with `style="search"` (and `rng`), a search trace (`search_trace`) ending in the expression
        of its last, successful attempt."""
        if style in ("search", "search-target", "search-retry"):
            if rng is None:
                raise ValueError("a search trace needs an rng")
            from ttcl.runtime.tasks.countdown_search import search_solution

            return search_solution(self, rng, style)
        if style != "path":
            raise ValueError(f"countdown has no chain style {style!r} (path | search | search-target | search-retry)")
        lines = list(self.made_by) if self.made_by and rng is None else self.derivation(rng)
        if lines is None:
            raise ValueError(f"unsolvable: {self.question}")
        return "\n".join([*step_lines(self.numbers, lines), f"{ANSWER_MARKER} {expression_of(self.numbers, lines)}"])

    def to_json(self) -> dict[str, object]:
        return {"question": self.question, "answer": self.solution(), "steps": self.steps}


def step_lines(numbers: Iterable[int], lines: list[tuple[int, str, int, int]], target: int | None = None) -> list[str]:
    """Derivation lines with the numbers still available after each: `7-3=4 [5 2 4]` (the
    question's order, each new value appended), so the state is written down, not remembered;
    with `target`, each state is followed by it, as the question writes it (`[5 2 4] -> 22`)."""
    pool, out = list(numbers), []
    tail = "" if target is None else f"{TARGET_SEPARATOR}{target}"
    for a, op, b, v in lines:
        pool.remove(a)
        pool.remove(b)
        pool.append(v)
        out.append(f"{a}{op}{b}={v} [{' '.join(map(str, pool))}]{tail}")
    return out


def expression_of(numbers: Iterable[int], lines: list[tuple[int, str, int, int]]) -> str:
    """The expression a derivation builds (its last line's tree)."""
    pool = [Expr(n) for n in numbers]
    for a, op, b, v in lines:
        i = next(k for k, e in enumerate(pool) if e.value == a)
        left = pool.pop(i)
        j = next(k for k, e in enumerate(pool) if e.value == b)
        right = pool.pop(j)
        pool.append(Expr(v, op, left, right))
    return pool[-1].text()


def generate(steps: int, rng: random.Random) -> Problem:
    """A problem with `steps` + 1 numbers in NUMBER_MIN..NUMBER_MAX and a target made by a random
    derivation over all of them (so it is solvable), every value within the rules. The recorded
    derivation (`made_by`, the training data's solution) stops where it first makes the target."""
    if not MIN_STEPS <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in {MIN_STEPS}..{MAX_STEPS}")
    while True:
        numbers = [rng.randint(NUMBER_MIN, NUMBER_MAX) for _ in range(steps + 1)]
        pool = list(numbers)
        lines: list[tuple[int, str, int, int]] = []
        while len(pool) > 1:
            i, j = rng.sample(range(len(pool)), 2)
            ops = [op for op in OPS if combine(pool[i], op, pool[j]) is not None]
            if not ops:
                break
            op = rng.choice(ops)
            v = combine(pool[i], op, pool[j])
            assert v is not None
            lines.append((pool[i], op, pool[j], v))
            pool = [x for k, x in enumerate(pool) if k not in (i, j)] + [v]
        if len(pool) == 1 and pool[0] not in numbers:  # a target that is one of the numbers is too easy
            target = pool[0]
            first = next(k for k, line in enumerate(lines) if line[3] == target)
            return Problem(tuple(numbers), target, tuple(lines[: first + 1]))  # it stops once the target is made


def make_problems(n: int, steps: int | Iterable[int], seed: int) -> list[Problem]:
    """`n` problems, deterministic in `seed`, with difficulties cycling evenly over `steps`."""
    return cycle_problems(generate, n, steps, seed)


def iter_problems(n: int, steps: int | Iterable[int], seed: int) -> Iterator[Problem]:
    """`make_problems`, one at a time."""
    return iter_cycle_problems(generate, n, steps, seed)


def iter_jsonl(problems: Iterable[Problem]) -> Iterator[str]:
    """GSM8K-style JSONL lines: question, answer (a solution ending in `#### EXPR`), steps."""
    return jsonl_lines(problems)


def parse_question(question: object) -> Problem | None:
    """The problem a question states (`N N N [N ...] -> T`), or None when it is not one."""
    if not isinstance(question, str):
        return None
    m = _QUESTION_RE.match(question)
    if m is None:
        return None
    return Problem(tuple(int(x) for x in m.group(1).split()), int(m.group(2)))


# ---------------------------------------------------------------- answer expressions


class Tokens:
    """An expression's tokens (numbers, `+ - * /`, brackets), read left to right by a parser."""

    MAX = 64  # longer than any expression over six numbers: not read

    def __init__(self, toks: list[str]) -> None:
        self.toks, self.i = toks, 0

    @classmethod
    def of(cls, text: str) -> Tokens | None:
        """None when `text` is not made of tokens, is empty, or is longer than MAX tokens."""
        toks: list[str] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos or len(toks) >= cls.MAX:
                return None
            toks.append(m.group(1) or m.group(2))
            pos = m.end()
        return cls(toks) if toks else None

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        if self.i >= len(self.toks):
            raise ValueError("end")
        self.i += 1
        return self.toks[self.i - 1]

    def done(self) -> bool:
        return self.i == len(self.toks)


def evaluate(text: str, rules: bool = False) -> tuple[Fraction, list[int]] | None:
    """(exact value, the numbers it uses) of an expression over integers with `+ - * /` and
    parentheses; None when it does not parse or divides by zero, and with `rules` also when
    any operation's value is not a positive integer of at most VALUE_MAX (what a derivation
    line may write: `10*10-1`, `2-5+10` and `8/(3-8/3)` break the rules)."""
    tk = Tokens.of(text)
    if tk is None:
        return None
    peek, take = tk.peek, tk.take
    used: list[int] = []

    def ruled(v: Fraction) -> Fraction:
        if rules and not (v.denominator == 1 and 1 <= v <= VALUE_MAX):
            raise ValueError("outside the rules")
        return v

    def expr(depth: int) -> Fraction:
        v = term(depth)
        while peek() in ("+", "-"):
            v = ruled(v + term(depth) if take() == "+" else v - term(depth))
        return v

    def term(depth: int) -> Fraction:
        v = atom(depth)
        while peek() in ("*", "/"):
            op, w = take(), atom(depth)
            if op == "/" and w == 0:
                raise ValueError("division by zero")
            v = ruled(v * w if op == "*" else v / w)
        return v

    def atom(depth: int) -> Fraction:
        t = take()
        if t == "(":
            if depth > 8:
                raise ValueError("deep")
            v = expr(depth + 1)
            if take() != ")":
                raise ValueError(")")
            return v
        if t.isdigit():
            used.append(int(t))
            return Fraction(int(t))
        raise ValueError(t)

    try:
        value = expr(0)
    except ValueError:
        return None
    if not tk.done():
        return None
    return value, used


# ---------------------------------------------------------------- checker


class CountdownChecker:
    """Exact outcome, step and process checker for `countdown` (the `check("countdown")` verifier).

    `outcome`: the expression after `####` evaluates exactly to the target, uses given
    numbers only, each at most once, and keeps every operation's value within the rules (a
    positive integer of at most VALUE_MAX, so division only where exact). A step is one
    non-empty line. A derivation line `a op b = v` (optionally followed by `[numbers left]`)
    is right when every earlier step is right, a and b are among the numbers still
    available, v is the value under the rules, the bracket, if written, holds exactly the
    numbers left, and the target is still reachable from
    what remains (so a dead end is a wrong step, even with correct arithmetic). The answer
    line is right when the outcome is and the derivation's last line made the target (a
    complete chain of thought); anything after it is wrong. Step scores are 1.0 up
    to the first wrong step and 0.0 from it on.

    A search trace (chain style `search`) abandons an attempt with a line that ends in
    DEAD_MARK; that line is right when it is valid, does not make the target, and leaves one
    number or none from which the target is reachable. The next line starts again from the
    question's numbers, and the lines of the abandoned attempt that left the target out of reach
    count as right (a search may try a dead end if it notices)."""

    name = "countdown"
    answer_marker = ANSWER_MARKER
    # `extract` writes answers canonically (countdown_answers); a trace records it, so that a run never
    # resumes one whose answers were read as written (before 2026-12-06)
    answer_reading = "canonical 1"
    step_separator = "\n"

    def solve(self, question: str) -> str | None:
        p = parse_question(question)
        if p is None or not reachable(p.numbers, p.target):
            return None
        return p.solution().rsplit(ANSWER_MARKER, 1)[1].strip()

    def reads(self, question: object) -> bool:
        """Whether `question` states a problem of this task (`--judge` leaves an item it cannot read ungraded)."""
        return parse_question(question) is not None

    def extract(self, completion: object) -> str | None:
        """The expression after `####`, in its canonical text (`countdown_answers.canonical`), so that one
        computation written in another order is one answer to a vote."""
        from ttcl.runtime.tasks.countdown_answers import canonical

        got = text_after_marker(completion, ANSWER_MARKER)
        return None if got is None else canonical(got)

    def outcome(self, question: object, completion: object) -> float:
        p = parse_question(question)
        got = self.extract(completion)
        if p is None or got is None:
            return 0.0
        ev = evaluate(got, rules=True)
        if ev is None:
            return 0.0
        value, used = ev
        return 1.0 if value == p.target and not Counter(used) - Counter(p.numbers) else 0.0

    def split_steps(self, completion: object) -> list[str]:
        if not isinstance(completion, str):
            return []
        return [line.strip() for line in completion.split("\n") if line.strip()]

    def steps(self, question: object, completion: object) -> list[float]:
        return self._scores(question, completion, live=True)

    def local_steps(self, question: object, completion: object) -> list[float]:
        """Like `steps`, but a derivation line needs only be valid (available numbers, right value,
        right bracket), not keep the target reachable: step correctness as a reader checks it line
        by line (PRM800K-style labels), without the search `steps` does."""
        return self._scores(question, completion, live=False)

    def _scores(self, question: object, completion: object, live: bool) -> list[float]:
        lines = self.split_steps(completion)
        p = parse_question(question)
        if p is None:
            return [0.0] * len(lines)
        pool = list(p.numbers)
        ok, finished, made, scores = True, False, False, []
        pending: list[int] = []  # this attempt's lines after which the target is out of reach
        for line in lines:
            if ok:
                if finished:
                    ok = False
                elif line.startswith(ANSWER_MARKER):  # right once the derivation has made the target
                    ok = made and self.outcome(p.question, line) == 1.0
                    finished = True
                elif line.endswith(DEAD_MARK):  # a search trace abandons this attempt: right if it is dead
                    ok = _apply_step(line[: -len(DEAD_MARK)], pool, p.target) and pool[-1] != p.target and (
                        len(pool) == 1 or not reachable(pool, p.target))
                    if ok:
                        for i in pending:
                            scores[i] = 1.0
                        pending, pool, made = [], list(p.numbers), False
                else:
                    ok = _apply_step(line, pool, p.target)
                    made = ok and pool[-1] == p.target
                    if ok and live and not reachable(pool, p.target):
                        pending.append(len(scores))  # wrong unless the attempt is marked dead
                        scores.append(0.0)
                        continue
            scores.append(1.0 if ok and not pending else 0.0)
        return scores

    def strict(self, question: object, completion: object) -> bool:
        """Right answer with every step right (and at least one derivation line)."""
        s = self.steps(question, completion)
        return self.outcome(question, completion) == 1.0 and len(s) > 1 and min(s) == 1.0

    def first_error(self, question: object, completion: object) -> int | None:
        scores = self.steps(question, completion)
        return scores.index(0.0) if 0.0 in scores else None


def _apply_step(line: str, pool: list[int], target: int) -> bool:
    """Check one derivation line against the available numbers (a restated target `-> T` must be
    `target`; whether it stays reachable is the caller's to ask); on success, update `pool`."""
    m = _STEP_RE.match(line)
    if m is None:
        return False
    a, op, b, v = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    rest = list(pool)
    for x in (a, b):
        if x not in rest:
            return False
        rest.remove(x)
    if combine(a, op, b) != v:
        return False
    rest.append(v)
    if m.group(5) is not None and Counter(int(x) for x in m.group(5).split()) != Counter(rest):
        return False  # the written state must be the numbers left
    if m.group(6) is not None and int(m.group(6)) != target:
        return False  # a restated target must be the question's
    pool[:] = rest
    return True


checker = CountdownChecker()
