"""Command-line helpers shared by the bench scripts, so that bad input reads as `ttcl`'s own does.

- `positive_int`, `nonnegative_int`, `positive_int_list`, `temperature`: argparse `type=`s for counts, seeds
  and temperatures, which refuse
  nonsense at parse time (usage, then `argument --items: expected a positive integer, got -5`, exit 2)
  instead of running an empty job or crashing in the middle of one;
- `main_guarded(main)`: runs a script's `main` and ends it as the ttcl CLI ends (ttcl/cli.py): a
  `TtclError` (an unknown model, a server that does not answer, ...) is one line `error: MESSAGE` and
  its exit code (2 for bad input); Ctrl-C is the one word `interrupted` and exit 130; SIGTERM (and
  SIGHUP) end the same way with 143 (129), after the script's `finally` clauses have run, so that
  its temporary files and child processes go too. No traceback in any of these cases.

Not a script: the bench scripts import it as `cli` (their own folder is first on sys.path).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_PIPE = 141  # stdout closed under us (`... | head -1`), as ttcl/errors.py


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    """A count of 1 or more (items, repeats, runs, samples, ...)."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """A count where 0 means something (0: skip that part)."""
    return _int_at_least(text, 0, "a non-negative integer")


def temperature(text: str) -> float:
    """A sampling temperature: a finite number, 0 (greedy) or more (QA pass: -1 ran, and failed inside a model)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a temperature (a number, 0 or more), got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a temperature (a number, 0 or more), got {value:g}")
    return value


def positive_int_list(text: str) -> list[int]:
    """Comma-separated positive integers, such as difficulty levels `2,3,4`."""
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, e.g. 2,3,4, got {text!r}")
    return values


def main_guarded(main: Callable[[], int | None]) -> NoReturn:
    """Run `main` and exit with its code, turning bad input, Ctrl-C and SIGTERM into one line on stderr."""
    from ttcl.commands.interrupts import exit_code, terminating
    from ttcl.errors import TtclError

    try:
        with terminating():
            code = main()
    except TtclError as e:
        message = str(e)
        print(message if "error:" in message.split("\n", 1)[0] else f"error: {message}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        print("interrupted", file=sys.stderr)
        sys.exit(exit_code(e))
    except BrokenPipeError:  # the reader of stdout went away: end quietly, as ttcl does
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        sys.exit(EXIT_PIPE)
    sys.exit(code or 0)


if __name__ == "__main__":
    print("error: bench/cli.py is a library of the bench scripts, not a script", file=sys.stderr)
    sys.exit(2)
