"""Search traces for `countdown` (chain styles `search` and `search-target`).

A search trace writes a search for the target as attempts, one derivation line per
combination, in the plain style's format: an attempt goes on until it makes the target or one
number is left; a failed attempt's last line ends with DEAD_MARK, and the next attempt starts
again from the question's numbers, repeating the failed one's longest prefix from which the
target is still reachable before going its own way. Trained on such traces, a policy learns to
notice a failure and try again in one context (Gandhi et al. 2024, "Stream of Search"); the
checker (`countdown.CountdownChecker`) reads them line by line.

    7-3=4 [5 2 4]
    4+5=9 [2 9]
    9*2=18 [18] x
    7-3=4 [5 2 4]
    4*5=20 [2 20]
    20+2=22 [22]
    #### (7-3)*5+2

Style `search-target` restates the target after every state (`[5 2 4] -> 22`, as the question
writes it), so that comparing a line's value with the target reads the line above, and draws
traces with more failed attempts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from ttcl.runtime.tasks.countdown import (
    ANSWER_MARKER,
    DEAD_MARK,
    OPS,
    Problem,
    combine,
    expression_of,
    reachable,
    step_lines,
)

SEARCH_MAX_CHARS = 440  # a search trace's derivation lines, at most (they fit a 512-token context)
SEARCH_TARGET_MAX_CHARS = 560  # styles search-target and search-retry (a 640-token context)


def _moves(pool: list[int]) -> list[tuple[int, int, str, int]]:
    """Every (i, j, op, value) that combines pool[i] op pool[j] under the rules."""
    return [(i, j, op, v) for i in range(len(pool)) for j in range(len(pool)) if i != j
            for op in OPS if (v := combine(pool[i], op, pool[j])) is not None]


def _key(line: tuple[int, str, int, int]) -> tuple[int, str, int]:
    """A move as tried: `a+b` and `b+a` (and `a*b`, `b*a`) are one."""
    a, op, b, _ = line
    return (min(a, b), op, max(a, b)) if op in "+*" else (a, op, b)


def _pool_after(numbers: Iterable[int], lines: list[tuple[int, str, int, int]]) -> list[int]:
    """The numbers left after a derivation's lines."""
    pool = list(numbers)
    for a, _, b, v in lines:
        pool.remove(a)
        pool.remove(b)
        pool.append(v)
    return pool


def _exhausted(p: Problem, prefix: list[tuple[int, str, int, int]], failed: dict[tuple, set]) -> bool:
    """Whether every move from the numbers `prefix` leaves has failed (as `failed` records them)."""
    pool = _pool_after(p.numbers, prefix)
    done = failed.get(tuple(prefix), set())
    return all(_key((pool[i], op, pool[j], v)) in done for i, j, op, v in _moves(pool))


def search_trace(p: Problem, rng: random.Random, guide: float | None = None,
                 max_chars: int = SEARCH_MAX_CHARS, guide_range: tuple[float, float] = (0.3, 1.0),
                 target: int | None = None, retry: float | None = None) -> list[list[tuple[int, str, int, int]]]:
    """A search for `p`'s target written as attempts (chain style `search`): each attempt is a
    derivation from the question's numbers that goes on until it makes the target or one number
    is left; a failed attempt is followed by another that repeats the failed one's longest prefix
    from which the target is still reachable, then goes its own way. Each move keeps the target
    reachable with probability `guide` (drawn uniformly from `guide_range` per trace when None) and
    is otherwise any move; the last attempt succeeds. Redrawn while the lines (with `target`
    restated on each) exceed `max_chars`.

    With `retry` (style `search-retry`), no oracle picks the prefix: with probability `retry` the
    next attempt keeps every line but the failed last one (another move from the same numbers),
    otherwise a random shorter prefix (none included); a move that failed as an attempt's last
    line is not tried again from the same prefix while another is left, and a prefix from which
    every move failed is given up (its last move counts as failed from the shorter prefix)."""
    while True:
        g = rng.uniform(*guide_range) if guide is None else guide
        attempts: list[list[tuple[int, str, int, int]]] = []
        prefix: list[tuple[int, str, int, int]] = []
        failed: dict[tuple, set[tuple[int, str, int]]] = {}  # prefix -> last moves that failed from it
        chars = 0
        while True:
            lines, pool = list(prefix), _pool_after(p.numbers, prefix)
            while not (lines and lines[-1][3] == p.target) and len(pool) > 1:
                live = list(p._live_moves(pool))
                moves = _moves(pool)
                if retry is not None:
                    done = failed.get(tuple(lines), set())
                    moves = [m for m in moves if _key((pool[m[0]], m[2], pool[m[1]], m[3])) not in done] or moves
                pick = live if live and rng.random() < g else moves
                if not pick:
                    break
                i, j, op, v = rng.choice(pick)
                lines.append((pool[i], op, pool[j], v))
                pool = [x for k, x in enumerate(pool) if k not in (i, j)] + [v]
            attempts.append(lines)
            chars += sum(len(t) + 1 for t in step_lines(p.numbers, lines, target)) + len(DEAD_MARK)
            if lines and lines[-1][3] == p.target:
                break
            if chars > max_chars or not lines:
                break
            failed.setdefault(tuple(lines[:-1]), set()).add(_key(lines[-1]))
            if retry is not None:
                keep = len(lines) - 1
                while keep and _exhausted(p, lines[:keep], failed):  # every move from there failed
                    failed.setdefault(tuple(lines[: keep - 1]), set()).add(_key(lines[keep - 1]))
                    keep -= 1
                if keep and rng.random() >= retry:
                    keep = rng.randrange(keep)
                prefix = lines[:keep]
                g = g if len(attempts) < 12 else 1.0
                continue
            keep, pool = 0, list(p.numbers)  # the longest prefix from which the target stays reachable
            for k, (a, _, b, v) in enumerate(lines):
                pool.remove(a)
                pool.remove(b)
                pool.append(v)
                if not reachable(pool, p.target):
                    break
                keep = k + 1
            prefix = lines[:keep]
            g = g if len(attempts) < 8 else 1.0
        if attempts[-1] and attempts[-1][-1][3] == p.target and chars <= max_chars:
            return attempts


def search_lines(numbers: Iterable[int], attempts: list[list[tuple[int, str, int, int]]],
                 target: int | None = None) -> list[str]:
    """A search trace's lines: each attempt's derivation lines, a failed one's last marked DEAD_MARK
    (each state followed by `target` when given)."""
    out: list[str] = []
    for k, lines in enumerate(attempts):
        text = step_lines(numbers, lines, target)
        if k < len(attempts) - 1:
            text[-1] += DEAD_MARK
        out.extend(text)
    return out


def search_solution(p: Problem, rng: random.Random, style: str = "search") -> str:
    """A search trace's completion (without end-of-sequence), ending in the expression of its last,
    successful attempt, in chain style `search`, `search-target` or `search-retry`."""
    restate = style == "search-target"
    if style == "search-retry":
        attempts = search_trace(p, rng, guide_range=(0.0, 0.7), max_chars=SEARCH_TARGET_MAX_CHARS, retry=0.7)
    else:
        attempts = search_trace(p, rng, guide_range=(0.2, 0.9) if restate else (0.3, 1.0),
                                max_chars=SEARCH_TARGET_MAX_CHARS if restate else SEARCH_MAX_CHARS,
                                target=p.target if restate else None)
    return "\n".join([*search_lines(p.numbers, attempts, p.target if restate else None),
                      f"{ANSWER_MARKER} {expression_of(p.numbers, attempts[-1])}"])
