"""How a run decides that an item's answer is right: gold equality, or a registered exact checker.

By default an answer is right when it equals the dataset's gold answer
(both normalised by `runtime/extract.py`). That is the wrong test on a task
with several right answers: on `countdown` every right expression but the
gold one would count as wrong. `--judge NAME` judges with the checker
registered under NAME instead (`countdown`, `expr`, `arith`, or a user's
`--verifier NAME=module:function`): the answer is right when
`checker.outcome(question, "#### " + answer) == 1.0`. The checker reads the
question alone, so items without a gold answer are judged too, and an item
without an answer is wrong.

A checker that raises, or one whose `reads(question)` says it cannot read
the question (a bundled task's checker on another task's items, or on a
question edited out of its format), leaves its item ungraded (`correct: null`, the error
under `failures["judge"]`), never wrong: every accuracy, interval and paired
difference is computed over the graded items only, and `failure_line` is the
line `ttcl run` and `ttcl eval` print about it on stderr.

The same judge applies to the program's own answer (the scheduler), to every
candidate of a pool (`runtime/analysis/collect.py`), and to every baseline
`ttcl eval` runs; the trace header records its name, so a result always says
how it was judged and a trace is never resumed under another judge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ttcl.errors import TtclRuntimeError
from ttcl.runtime.tasks.base import Checker

GOLD = "gold"  # the default: equality with the dataset's gold answer
MARKER = "#### "  # what a checker's outcome reads the answer after


class JudgeError(TtclRuntimeError):
    """A judge that cannot be used (no checker under that name), or a user's checker that raised."""


def shown(question: str) -> str:
    """A question as an error quotes it: up to 40 characters."""
    return question if len(question) <= 40 else question[:37] + "..."


class Judge:
    """`judge(question, gold, answer)`: True (right), False (wrong), or None (cannot be judged: no gold).

    `read_gold` reads a gold answer as the run reads its answers, where that is not the plain
    normalisation: a program whose answers come from a task checker's extractor (countdown's are
    canonical expressions) compares them with the gold read by the same extractor. It must be
    idempotent: a trace records the gold as read, and a later judge reads it again."""

    def __init__(self, name: str = GOLD, checker: Checker | None = None,
                 read_gold: Callable[[str], str | None] | None = None) -> None:
        self.name, self.checker, self.read_gold = name, checker, read_gold

    def gold_of(self, gold: str | None) -> str | None:
        """The gold answer as this judge compares it (and as a result records it)."""
        if gold is None or self.read_gold is None:
            return gold
        return self.read_gold(gold) or gold

    def __call__(self, question: str, gold: str | None, answer: str | None) -> bool | None:
        if self.checker is None:
            return None if gold is None else answer == self.gold_of(gold)
        reads = getattr(self.checker, "reads", None)  # optional: a checker that can tell it cannot read the question
        try:  # `reads` too: one that raised ended the whole run, exit 70 (QA pass)
            if reads is not None and not reads(question):  # every answer, the gold one too, scored 0 (QA pass)
                raise JudgeError(f"--judge {self.name}: the question {shown(question)!r} is not one the "
                                 f"`{self.name}` checker reads")
            if answer is None:
                return False
            score = self.checker.outcome(question, MARKER + answer)
            # an outcome is a number in [0, 1]; NaN or one outside it is the checker's fault, not a wrong answer
            # (QA pass: NaN and 1.5 were counted wrong without a word, where None or a string failed the judge)
            if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
                raise JudgeError(f"--judge {self.name}: its checker returned {score!r} for an answer; an outcome "
                                 "is a number in [0, 1]")
            return score == 1.0
        except JudgeError:
            raise
        except Exception as e:  # a user's checker raised (FunctionChecker keeps it as the cause), or a plugin
            cause = e.__cause__ if isinstance(e, TtclRuntimeError) and e.__cause__ is not None else e
            what = str(e) if cause is e and isinstance(e, TtclRuntimeError) else f"{type(cause).__name__}: {cause}"
            raise JudgeError(f"--judge {self.name}: {what}") from None


def judge_failures(results: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(item, error) of every result (a run summary's `results`) that the judge failed on, in item order."""
    return sorted((r["item"], r["failures"]["judge"]) for r in results if "judge" in (r.get("failures") or {}))


def failure_line(name: str, failed: list[tuple[int, str]], total: int) -> str:
    """`judge `NAME` failed on N of M items (first: RuntimeError: boom on item K)`."""
    item, why = failed[0]
    return (f"judge `{name}` failed on {len(failed)} of {total} items (first: "
            f"{why.removeprefix(f'--judge {name}: ')} on item {item}); those items are ungraded, not wrong")


def make_judge(name: str | None) -> Judge:
    """The judge named `name` (None or "gold": gold equality); an unknown name is a JudgeError naming the known ones."""
    if name is None or name == GOLD:
        return Judge()
    import difflib

    from ttcl.runtime.tasks import available_checkers, get_checker

    known = [GOLD, *available_checkers()]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise JudgeError(f"--judge {name!r}: no checker of that name{hint} (known: {', '.join(known)}; "
                         "add your own with --verifier NAME=module:function)")
    return Judge(name, get_checker(name))


__all__ = ["GOLD", "Judge", "JudgeError", "failure_line", "judge_failures", "make_judge", "shown"]
