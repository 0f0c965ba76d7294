"""The checker protocol every task verifier implements.

A checker is the exact, programmatic verifier a strategy names with
`check("NAME")`. It computes the right answer from the question itself, so
it needs no gold label, and it never raises on malformed model output: bad
text scores 0.0.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


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
