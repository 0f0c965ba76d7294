"""`expr`: small systems of integer expressions with precedence and parentheses,
reduced one operation per line.

A question is two or three expressions separated by `; `, each over
non-negative integers with `+`, `-`, `*` and parentheses under the usual
precedence (`*` before `+`/`-`, left to right within a level), e.g.
`(12+7)*3; 45-8-9; 6*(9+4)`. The answer is the list of their values, in order.
The chain-of-thought answer reduces one operation per line,
`left op right = value`, and ends with a GSM8K-style final-answer marker:

    12+7=19
    45-8=37
    19*3=57
    9+4=13
    37-9=28
    6*13=78
    #### 57,28,78

Independent operations (in different expressions, or in different
parentheses of one) may be reduced in any order: any line that reduces an
operation whose operands are both known (literals or earlier results) is a
valid step, so a question has many valid chains, and the training data shows
them in random valid orders.

That is chain style `ops`. Style `state` writes, instead, the question with
the reduced operation replaced by its value (`19*3-(30-4); 45-8-9; 6*(9+4)`),
and style `trace` writes both (`12+7=19 -> 19*3-(30-4); 45-8-9; 6*(9+4)`), so
that where each result goes is written down rather than remembered. The
checker accepts every style, line by line. Style `subst` writes an operation whose
operands are not both literals as the sub-expression it reduces, that sub-expression with its
operands' values substituted, and the value (`(12+7)*3-(30-4)=57-26=31`; `12+7=19` as in `ops`):
each earlier result is found by the text that produced it, not by where it was written.

Every value, intermediate and final, lies in 0..99, which is what a model of
~100k parameters learns to compute on a CPU in minutes; the answer space is
still wide, because the answer is the tuple of values (about 100^k
possibilities), so a question-blind guesser cannot cover it
(`guess_pass_bound`). The difficulty knob is `steps`, the number of operations
over all expressions. The checkers recompute everything from the question
itself, so they need no gold label and never raise on malformed text.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from ttcl.runtime.tasks.base import cycle_problems, iter_cycle_problems, text_after_marker

ANSWER_MARKER = "####"
PROMPT_SEPARATOR = "\n"
PART_SEPARATOR = "; "
VALUE_MAX = 99  # every value, intermediate and final, lies in 0..VALUE_MAX
LEAF_MIN, LEAF_MAX = 1, 60  # literals of + and -
MUL_MIN, MUL_MAX = 2, 9  # one side of every * is a single-digit literal
MAX_PARTS = 3
MIN_STEPS = 2  # one operation per expression, two expressions at least
MAX_STEPS = 12  # the parser refuses more operations than this (questions stay short)
_PREC = {"+": 1, "-": 1, "*": 2}
STYLES = ("ops", "state", "trace", "subst")  # how a chain of thought writes a reduction (Problem.solution)
TRACE_SEPARATOR = " -> "  # style `trace`: the operation, then the state it leaves

_TOKEN_RE = re.compile(r"\s*(?:(\d+)|([+\-*()]))", re.ASCII)
# numbers in a completion are read up to 1,000 digits (a question's values have far fewer): Python refuses int()
# on more than 4,300, which a model can write (QA pass: the checker raised, and the whole item failed)
_STEP_RE = re.compile(r"^\s*(\d{1,1000})\s*([+\-*])\s*(\d{1,1000})\s*=\s*(-?\d{1,1000})\s*$", re.ASCII)
_ANSWER_RE = re.compile(r"^\s*\+?\d{1,1000}(?:\s*,\s*\+?\d{1,1000})*\s*$", re.ASCII)


@dataclass(frozen=True)
class Node:
    """A literal (`op` is None, `value` set) or an operation on two sub-expressions."""

    op: str | None = None
    left: Node | None = None
    right: Node | None = None
    literal: int = 0

    @property
    def is_leaf(self) -> bool:
        return self.op is None

    @cached_property
    def value(self) -> int:
        if self.op is None:
            return self.literal
        assert self.left is not None and self.right is not None
        a, b = self.left.value, self.right.value
        return a + b if self.op == "+" else a - b if self.op == "-" else a * b

    def ops(self) -> list[Node]:
        """The operation nodes in post-order (children before parents)."""
        if self.op is None:
            return []
        assert self.left is not None and self.right is not None
        return [*self.left.ops(), *self.right.ops(), self]

    def text(self) -> str:
        """Infix with the fewest parentheses that parse back to this tree."""
        if self.op is None:
            return str(self.literal)
        assert self.left is not None and self.right is not None
        p = _PREC[self.op]
        lt, rt = self.left.text(), self.right.text()
        if self.left.op is not None and _PREC[self.left.op] < p:
            lt = f"({lt})"
        if self.right.op is not None and _PREC[self.right.op] <= p:
            rt = f"({rt})"
        return f"{lt}{self.op}{rt}"


def leaf(v: int) -> Node:
    return Node(literal=v)


def step_line(node: Node) -> str:
    assert node.left is not None and node.right is not None and node.op is not None
    return f"{node.left.value}{node.op}{node.right.value}={node.value}"


def subst_line(node: Node) -> str:
    """Style `subst`: `39-(12+4)=39-16=23`; an operation on two literals as in `ops`."""
    assert node.left is not None and node.right is not None
    if node.left.is_leaf and node.right.is_leaf:
        return step_line(node)
    return f"{node.text()}={step_line(node)}"


@dataclass(frozen=True)
class Problem:
    """One expr problem: its expressions (trees), in order."""

    parts: tuple[Node, ...]

    def ops(self) -> list[Node]:
        """Every operation node, part by part, each part in post-order."""
        return [n for part in self.parts for n in part.ops()]

    @property
    def steps(self) -> int:
        return len(self.ops())

    @property
    def question(self) -> str:
        return PART_SEPARATOR.join(part.text() for part in self.parts)

    @property
    def prompt(self) -> str:
        return self.question + PROMPT_SEPARATOR

    @property
    def answer(self) -> str:
        """The values of the expressions, comma-separated: what follows `####`."""
        return ",".join(str(part.value) for part in self.parts)

    def values(self) -> list[int]:
        """Every operation's value."""
        return [n.value for n in self.ops()]

    def chain(self, rng: random.Random | None = None) -> list[Node]:
        """A valid reduction order: the first ready operation at each step without `rng`
        (part by part, left to right), a uniformly random ready one with it."""
        nodes = self.ops()
        done: set[int] = set()
        out: list[Node] = []
        while len(out) < len(nodes):
            ready = [i for i, n in enumerate(nodes) if i not in done and _ready(n, nodes, done)]
            i = ready[0] if rng is None else rng.choice(ready)
            done.add(i)
            out.append(nodes[i])
        return out

    def solution(self, rng: random.Random | None = None, style: str = "ops") -> str:
        """A chain-of-thought completion (without end-of-sequence); see `chain` for the order.
        Style `ops` writes the operation reduced on each line (`12+7=19`); style `state`
        rewrites the whole question with that operation replaced by its value
        (`19*3-(30-4); 5*8`), so that where each result goes is written down, not remembered;
        style `trace` writes both (`12+7=19 -> 19*3-(30-4); 5*8`)."""
        _check_style(style)
        chain = self.chain(rng)
        if style == "ops":
            lines = [step_line(n) for n in chain]
        elif style == "subst":
            lines = [subst_line(n) for n in chain]
        else:
            done: set[int] = set()
            lines = []
            for n in chain:
                done.add(id(n))
                state = self.state_text(done)
                lines.append(state if style == "state" else step_line(n) + TRACE_SEPARATOR + state)
        return "\n".join([*lines, f"{ANSWER_MARKER} {self.answer}"])

    def state(self, done: set[int]) -> tuple[Node, ...]:
        """The expressions with every operation whose `id` is in `done` replaced by its value."""

        def sub(n: Node) -> Node:
            if n.op is None:
                return n
            if id(n) in done:
                return leaf(n.value)
            assert n.left is not None and n.right is not None
            return Node(n.op, sub(n.left), sub(n.right))

        return tuple(sub(part) for part in self.parts)

    def state_text(self, done: set[int]) -> str:
        return PART_SEPARATOR.join(part.text() for part in self.state(done))

    def n_chains(self) -> int:
        """How many distinct valid reduction orders there are (linear extensions of the forest)."""
        from math import comb

        def go(n: Node) -> tuple[int, int]:  # (ops in subtree, orders)
            if n.op is None:
                return 0, 1
            assert n.left is not None and n.right is not None
            a, x = go(n.left)
            b, y = go(n.right)
            return a + b + 1, x * y * comb(a + b, a)

        total, orders = 0, 1
        for part in self.parts:
            k, o = go(part)
            total += k
            orders *= o * comb(total, k)
        return orders

    def to_json(self, style: str = "ops") -> dict[str, object]:
        return {"question": self.question, "answer": self.solution(style=style), "steps": self.steps}


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"expr chain style must be one of {', '.join(STYLES)}, not {style!r}")


def _ready(n: Node, nodes: list[Node], done: frozenset[int] | set[int]) -> bool:
    def known(c: Node | None) -> bool:
        assert c is not None
        return c.op is None or any(nodes[j] is c for j in done)

    return known(n.left) and known(n.right)


# ---------------------------------------------------------------- generator


def _random_raw(n_ops: int, rng: random.Random) -> tuple[object, int, bool]:
    """(tree as nested tuples, its value, whether every value in it is in range), drawn from `rng`.
    Plain tuples: a training run draws a few hundred thousand trees."""
    if n_ops == 0:
        v = rng.randint(LEAF_MIN, LEAF_MAX)
        return v, v, True
    op = rng.choice("+-*")
    if op == "*":
        # one side is a single-digit factor; the other carries the remaining operations
        sub, sv, sok = _random_raw(n_ops - 1, rng)
        k = rng.randint(MUL_MIN, MUL_MAX)
        v = sv * k
        tree = ("*", sub, k) if rng.random() < 0.5 else ("*", k, sub)
        return tree, v, sok and 0 <= v <= VALUE_MAX
    # half the splits balanced, so that independent sub-expressions (several chains) are common
    k = rng.randint(0, n_ops - 1) if rng.random() < 0.5 else (n_ops - 1 + rng.randint(0, 1)) // 2
    lt, lv, lok = _random_raw(k, rng)
    rt, rv, rok = _random_raw(n_ops - 1 - k, rng)
    v = lv + rv if op == "+" else lv - rv
    return (op, lt, rt), v, lok and rok and 0 <= v <= VALUE_MAX


def _to_node(raw: object) -> Node:
    if isinstance(raw, int):
        return leaf(raw)
    assert isinstance(raw, tuple)
    return Node(raw[0], _to_node(raw[1]), _to_node(raw[2]))


def in_range(root: Node) -> bool:
    return all(0 <= n.value <= VALUE_MAX for n in root.ops())


def _random_part(n_ops: int, rng: random.Random) -> Node:
    while True:
        raw, _, ok = _random_raw(n_ops, rng)
        if ok:
            return _to_node(raw)


def generate(steps: int, rng: random.Random) -> Problem:
    """One problem with `steps` operations in all, over two or three expressions (three when
    there are at least four operations), every value in 0..VALUE_MAX."""
    if steps < MIN_STEPS:
        raise ValueError(f"steps must be >= {MIN_STEPS}")
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be <= {MAX_STEPS}")
    n_parts = MAX_PARTS if steps >= 4 else 2
    sizes = [1] * n_parts
    for _ in range(steps - n_parts):
        sizes[rng.randrange(n_parts)] += 1
    return Problem(tuple(_random_part(k, rng) for k in sizes))


def make_problems(n: int, steps: int | Iterable[int], seed: int) -> list[Problem]:
    """`n` problems, deterministic in `seed`, with difficulties cycling evenly over `steps`."""
    return cycle_problems(generate, n, steps, seed)


def iter_problems(n: int, steps: int | Iterable[int], seed: int) -> Iterator[Problem]:
    """`make_problems`, one at a time."""
    return iter_cycle_problems(generate, n, steps, seed)


def iter_jsonl(problems: Iterable[Problem], style: str = "ops") -> Iterator[str]:
    """GSM8K-style JSONL lines: question, answer (a solution in `style` ending in `#### N,N,...`),
    steps."""
    _check_style(style)
    for p in problems:
        yield json.dumps(p.to_json(style))


# ---------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over `expr := term (('+'|'-') term)*; term := atom ('*' atom)*;
    atom := INT | '(' expr ')'`. Raises ValueError on anything else."""

    def __init__(self, text: str) -> None:
        self.toks: list[str] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"unexpected character at {pos}")
            self.toks.append(m.group(1) or m.group(2))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        t = self.peek()
        if t is None:
            raise ValueError("unexpected end")
        self.i += 1
        return t

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = Node(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.atom()
        while self.peek() == "*":
            self.take()
            node = Node("*", node, self.atom())
        return node

    def atom(self) -> Node:
        t = self.take()
        if t == "(":
            self.depth += 1
            if self.depth > MAX_STEPS:
                raise ValueError("nested too deep")
            node = self.expr()
            if self.take() != ")":
                raise ValueError("missing )")
            self.depth -= 1
            return node
        if t.isdigit() and len(t) <= 6:
            return leaf(int(t))
        raise ValueError(f"unexpected {t!r}")


def _parse_part(text: str) -> Node:
    p = _Parser(text)
    root = p.expr()
    if p.peek() is not None:
        raise ValueError("trailing text")
    return root


def parse_question(question: object) -> Problem | None:
    """The problem a question states, or None when the text is not an expr question (one to
    MAX_PARTS expressions separated by `;`, MAX_STEPS operations at most, each expression with
    at least one, no value below 0: a step or an answer cannot write one, so `1-5; 2-3` was read
    and its right answer `-4,-1` scored 0, QA pass)."""
    if not isinstance(question, str) or len(question) > 400:
        return None
    texts = question.strip().split(";")
    if len(texts) > MAX_PARTS:
        return None
    try:
        parts = tuple(_parse_part(t) for t in texts)
    except ValueError:
        return None
    if any(part.op is None for part in parts) or sum(len(part.ops()) for part in parts) > MAX_STEPS:
        return None
    if any(n.value < 0 for part in parts for n in part.ops()):
        return None
    return Problem(parts)


# ---------------------------------------------------------------- checker


class ExprChecker:
    """Exact outcome, step and process checker for `expr` (the `check("expr")` verifier).

    A step is one non-empty line. Step i is right when every earlier step is right and
    either (a) some operations are still unreduced and the line is `a op b = v` for an
    operation whose operands are both known (literals or earlier results) and whose
    operand values are a and b, with v its exact value (style `ops`; style `state`: the
    question rewritten with exactly that operation replaced by v; style `trace`: both,
    joined by `->`, naming the same operation; style `subst`: `sub-expression = a op b = v`,
    the sub-expression being that operation's own), or (b) every operation is reduced
    and the line is `#### answer`. Anything after the answer line is wrong. Step scores
    are 1.0 up to the first wrong step and 0.0 from it on; on a partial solution they
    say whether the solution is right so far, which makes the checker an exact process
    scorer (an oracle PRM)."""

    name = "expr"
    answer_marker = ANSWER_MARKER
    step_separator = "\n"

    def __init__(self, bind_first: bool = False) -> None:
        # bind_first: a line two ready operations read alike is tied to the first of them, as the checker did when
        # the shipped expr verifiers' training labels were made (5 of their 64,000 samples' labels differ, all of
        # them valid orders scored wrong); the zoo's builds label with it so that they give the shipped weights back
        self.bind_first = bind_first

    def solve(self, question: str) -> str | None:
        p = parse_question(question)
        return None if p is None else str(p.answer)

    def reads(self, question: object) -> bool:
        """Whether `question` states a problem of this task (`--judge` leaves an item it cannot read ungraded)."""
        return parse_question(question) is not None

    def extract(self, completion: object) -> str | None:
        """Text after the first `####`, up to the end of its line; None if missing or empty."""
        return text_after_marker(completion, ANSWER_MARKER)

    def outcome(self, question: object, completion: object) -> float:
        p = parse_question(question)
        got = self.extract(completion)
        if p is None or got is None:
            return 0.0
        return 1.0 if _answer_values(got) == [part.value for part in p.parts] else 0.0

    def split_steps(self, completion: object) -> list[str]:
        if not isinstance(completion, str):
            return []
        return [line.strip() for line in completion.split("\n") if line.strip()]

    def steps(self, question: object, completion: object) -> list[float]:
        lines = self.split_steps(completion)
        p = parse_question(question)
        if p is None:
            return [0.0] * len(lines)
        nodes = p.ops()
        # the operations reduced so far, each way the lines can be read: a line `2+2=4` where two ready operations
        # read the same may reduce either, and only a later line may tell which (QA pass: the first was taken, and
        # a valid order that meant the other was scored wrong)
        states: set[frozenset[int]] = {frozenset()}
        reduced = 0
        finished = False
        scores: list[float] = []
        ok = True
        for line in lines:
            if ok:
                if finished:
                    ok = False
                elif reduced == len(nodes):
                    ok = line.startswith(ANSWER_MARKER) and _answer_values(
                        line[len(ANSWER_MARKER) :]) == [part.value for part in p.parts]
                    finished = True
                else:
                    states = {done | {i} for done in states
                              for i in _match_step(line, nodes, done, p, first=self.bind_first)}
                    ok = bool(states)
                    reduced += 1
            scores.append(1.0 if ok else 0.0)
        return scores

    def strict(self, question: object, completion: object) -> bool:
        """Right answer with every step right (and at least one step)."""
        s = self.steps(question, completion)
        return self.outcome(question, completion) == 1.0 and bool(s) and min(s) == 1.0

    def first_error(self, question: object, completion: object) -> int | None:
        scores = self.steps(question, completion)
        return scores.index(0.0) if 0.0 in scores else None


def _answer_values(text: str) -> list[int] | None:
    """`57, 28,78` -> [57, 28, 78]; None unless the text is integers separated by commas."""
    if _ANSWER_RE.match(text) is None:
        return None
    return [int(x) for x in text.split(",")]


def _match_step(line: str, nodes: list[Node], done: frozenset[int], p: Problem, first: bool = False) -> list[int]:
    """The indices of the operations a right step may reduce (none: the step is wrong): `a op b = v`
    (style `ops`), the question rewritten with one ready operation replaced by its value (style
    `state`), or both, joined by ` -> ` (style `trace`). `first`: the first of them only (bind_first)."""
    if TRACE_SEPARATOR.strip() in line:
        op_text, _, state_text = line.partition(TRACE_SEPARATOR.strip())
        m = _STEP_RE.match(op_text)
        states = _match_state(state_text, nodes, done, p)
        return [i for i in (states[:1] if first else states) if m is not None and _op_of(m) == _op_of(nodes[i])]
    m = _STEP_RE.match(line)
    if m is None and line.count("=") == 2:  # style `subst`: the sub-expression, then `a op b = v`
        hits = _match_subst(line, nodes, done)
    elif m is None:
        hits = _match_state(line, nodes, done, p)
    else:
        hits = [i for i, n in enumerate(nodes) if i not in done and _ready(n, nodes, done) and _op_of(n) == _op_of(m)]
    return hits[:1] if first else hits


def _match_subst(line: str, nodes: list[Node], done: frozenset[int]) -> list[int]:
    sub_text, _, op_text = line.partition("=")
    m = _STEP_RE.match(op_text)
    if m is None or len(sub_text) > 400:
        return []
    try:
        sub = _parse_part(sub_text)
    except ValueError:
        return []
    return [i for i, n in enumerate(nodes)
            if i not in done and n == sub and _ready(n, nodes, done) and _op_of(m) == _op_of(n)]


def _op_of(x: re.Match[str] | Node) -> tuple[int, str, int, int]:
    """(a, op, b, value) of a step line's match or of an operation node."""
    if isinstance(x, Node):
        assert x.left is not None and x.right is not None and x.op is not None
        return x.left.value, x.op, x.right.value, x.value
    return int(x.group(1)), x.group(2), int(x.group(3)), int(x.group(4))


def _match_state(line: str, nodes: list[Node], done: frozenset[int], p: Problem) -> list[int]:
    texts = line.split(";")
    if len(texts) != len(p.parts) or len(line) > 400:
        return []
    try:
        got = tuple(_parse_part(t) for t in texts)
    except ValueError:
        return []
    ids = {id(nodes[j]) for j in done}
    return [i for i, n in enumerate(nodes) if i not in done and _ready(n, nodes, done) and p.state(ids | {id(n)}) == got]


checker = ExprChecker()
labeller = ExprChecker(bind_first=True)  # what the zoo's builds label their training samples with (bind_first)


# ---------------------------------------------------------------- guessing baseline


def guess_pass_bound(reference: list[Problem], k: int) -> float:
    """An upper bound on pass@k of a question-blind guesser that draws k answers from the
    distribution q of correct answers (at one difficulty): pass@k = sum_a q_a (1 - (1 - q_a)^k)
    <= k * sum_a q_a^2, and sum_a q_a^2 (the chance that two draws collide) is estimated without
    bias by the share of equal pairs among the `reference` answers."""
    from collections import Counter

    n = len(reference)
    if n < 2:
        raise ValueError("need at least two reference problems")
    pairs = sum(c * (c - 1) // 2 for c in Counter(p.answer for p in reference).values())
    return min(1.0, k * pairs / (n * (n - 1) / 2))
