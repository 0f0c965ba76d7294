"""The checker protocol every task verifier implements.

A checker is the exact, programmatic verifier a strategy names with
`check("NAME")`. It computes the right answer from the question itself, so
it needs no gold label, and it never raises on malformed model output: bad
text scores 0.0.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Checker(Protocol):
    """An exact outcome and step verifier for one task."""

    name: str

    def extract(self, completion: str) -> str | None:
        """The final answer string after the answer marker, or None when there is none."""
        ...

    def outcome(self, question: str, completion: str) -> float:
        """1.0 when the completion's final answer is the exact answer to `question`, else 0.0."""
        ...

    def steps(self, question: str, completion: str) -> list[float]:
        """One score per step of `split_steps(completion)`: 1.0 up to the first wrong step, 0.0 from it on."""
        ...

    def split_steps(self, completion: str) -> list[str]:
        """How the completion divides into steps."""
        ...


def text_after_marker(completion: object, marker: str) -> str | None:
    """Text after the first `marker`, up to the end of its line; None if missing, empty, or not text."""
    if not isinstance(completion, str):
        return None
    at = completion.find(marker)
    if at < 0:
        return None
    rest = completion[at + len(marker) :].split("\n", 1)[0].strip()
    return rest or None


def cycle_problems(generate: Callable[[int, random.Random], Any], n: int, steps: int | Iterable[int],
                   seed: int) -> list[Any]:
    """`n` problems from `generate(steps, rng)`, deterministic in `seed`, with difficulties cycling
    evenly over `steps`."""
    return list(iter_cycle_problems(generate, n, steps, seed))


def iter_cycle_problems(generate: Callable[[int, random.Random], Any], n: int, steps: int | Iterable[int],
                        seed: int) -> Iterator[Any]:
    """`cycle_problems`, one at a time (`ttcl data` writes the first line before drawing the rest)."""
    levels = [steps] if isinstance(steps, int) else list(steps)
    if not levels:
        raise ValueError("no difficulty levels given")
    if seed < 0:  # CPython seeds with |seed|: -7 would draw seed 7's items, a held-out set twice (QA pass)
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = random.Random(seed)
    return (generate(levels[i % len(levels)], rng) for i in range(n))


def jsonl_lines(problems: Iterable[Any]) -> Iterator[str]:
    """GSM8K-style JSONL lines, one `problem.to_json()` each."""
    for p in problems:
        yield json.dumps(p.to_json())
