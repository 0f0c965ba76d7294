"""One exception root for everything ttcl raises on purpose.

The CLI catches `TtclError` and prints it with its exit code; anything
else is a bug in ttcl, reported in one line with EXIT_INTERNAL (the
traceback only behind `--debug`), so CI can tell a crash from a verdict.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_OVER = 1  # a budget verdict: the worst case (or an `auto` param) does not fit
EXIT_INVALID = 2  # bad input: a program, option, dataset or model that ttcl cannot use
EXIT_INTERNAL = 70  # a bug in ttcl itself (sysexits' EX_SOFTWARE): never bad input, never a verdict
EXIT_IO = 74  # the output cannot be written (stdout on a full disk, or closed): sysexits' EX_IOERR
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_PIPE = 141  # stdout closed under us (`ttcl ... | head -1`): 128 + SIGPIPE, as a Unix tool killed by it
BUG_REPORT = "please report it on the ttcl issue tracker with the command you ran and the output of `ttcl --debug ...`"


class TtclError(Exception):
    """Root of every error ttcl reports to a user."""

    exit_code: int = 2


class TtclSyntaxError(TtclError):
    """The program text does not parse."""


class TtclSemanticError(TtclError):
    """The program parses but is not valid (names, types, params, imports)."""


class TtclBudgetError(TtclError):
    """The worst case does not fit the declared budget."""

    exit_code = 1


class TtclRuntimeError(TtclError):
    """Something failed while running a strategy (model loading, a bad dataset line, ...)."""


class BudgetExhausted(TtclRuntimeError):
    """The accountant refused an allowance: running the node would break the budget."""
