"""One exception root for everything ttcl raises on purpose.

The CLI catches `TtclError` and prints it; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


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
